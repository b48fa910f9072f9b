"""The control socket (SPEC §6, fixed): newline-delimited JSON over a Unix stream socket.

Integrators drive the device from their own software through this socket (a kiosk button sends
`interrupt`, a scheduler sends `say`), so it must be impossible to hurt the daemon through it:
every request is one line of at most `max_line` bytes and gets exactly one reply line; malformed,
oversized, binary, half-sent or endless input gets an error reply or a disconnect; at most
`max_clients` connections are served at once (a few more may wait `queue_timeout` for a slot, so a
burst of one-shot CLI calls all succeed; beyond that a client is told to retry); a client that sends
nothing, or does not read its replies, is dropped after a timeout; a failing handler becomes `{"ok": false, "error": ...}` with
the API key redacted.

`subscribe` (SPEC §12) turns a connection into an event stream: after its `{"ok": true}` reply
every event arrives as one JSON line until the client closes the connection. A subscriber gives
its request slot back (it would otherwise hold one forever) and counts against its own limit,
`max_subscribers`; the bus bounds its backlog and drops it when it falls behind (events.py); on
shutdown its stream ends after the queued lines.

Permissions: the socket is 0600 (only the daemon's user). If `$VOICE_AGENT_CONTROL_GROUP` names a
group, it is 0660 and owned by that group, for an integrator's program running as another user;
the group must be one the daemon runs with (SupplementaryGroups= in the unit) and the socket's
directory must let the group in (RuntimeDirectoryMode=0750). The socket is created in a private
directory, given its mode, then renamed into place, so it is never reachable with the wrong mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

from agent.config import ConfigError, Settings
from agent.control_commands import ControlHandler, IntegrationHandler, Request, run_command
from agent.controlproto import (
    COMMANDS,
    MAX_LINE,
    MAX_TEXT,
    TEXT_COMMANDS,
    RequestError,
    parse_command,
    parse_request,
)
from agent.controlproto import error as _error
from agent.controlproto import reply as _reply
from agent.controlstream import until_closed
from agent.events import EventBus, Subscription
from agent.secrets import redact

__all__ = [
    "COMMANDS", "MAX_LINE", "MAX_TEXT", "TEXT_COMMANDS", "ControlHandler", "ControlServer",
    "IntegrationHandler", "RequestError", "parse_command", "parse_request", "resolve_socket_path",
]

log = logging.getLogger("voice-agent.control")

SOCKET_NAME = "control.sock"
GROUP_ENV = "VOICE_AGENT_CONTROL_GROUP"
MAX_CLIENTS = 16
MAX_SUBSCRIBERS = 32  # event streams, on top of MAX_CLIENTS request connections
STREAM_HIGH_WATER = 16 * 1024  # bytes an event stream's transport buffers before it waits
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
LISTEN_BACKLOG = 100  # asyncio's default


def resolve_socket_path(settings: Settings) -> Path:
    """SPEC §4: `control.socket`, else `$RUNTIME_DIRECTORY/control.sock`, else `<state_dir>/control.sock`."""
    if settings.control.socket:
        return Path(settings.control.socket).expanduser()
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / SOCKET_NAME
    from agent.statedir import resolve_state_dir

    return resolve_state_dir(settings)[0] / SOCKET_NAME


class ControlServer:
    """Serves the control socket for one handler; `async with ControlServer(...)` or start/close."""

    def __init__(
        self,
        handler: ControlHandler,
        path: str | os.PathLike[str],
        *,
        group: str | None = None,
        max_clients: int = MAX_CLIENTS,
        max_subscribers: int = MAX_SUBSCRIBERS,
        max_waiting: int = 4 * MAX_CLIENTS,
        queue_timeout: float = 2.0,
        max_line: int = MAX_LINE,
        max_text: int = MAX_TEXT,
        idle_timeout: float = 60.0,
        write_timeout: float = 5.0,
        handler_timeout: float = 30.0,
    ) -> None:
        """`group` defaults to `$VOICE_AGENT_CONTROL_GROUP`; `idle_timeout` is how long a
        connection may sit without completing a request line."""
        self.handler = handler
        self.path = Path(path)
        self.group = group if group is not None else (os.environ.get(GROUP_ENV) or None)
        self.max_clients = max_clients
        self.max_subscribers = max_subscribers
        self.max_waiting = max_waiting
        self.queue_timeout = queue_timeout
        self.max_line = max_line
        self.max_text = max_text
        self.idle_timeout = idle_timeout
        self.write_timeout = write_timeout
        self.handler_timeout = handler_timeout
        self._server: asyncio.AbstractServer | None = None
        self._inode: tuple[int, int] | None = None
        self._clients: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(max_clients)
        self._waiting = 0
        self._streams: dict[asyncio.Task[Any], Subscription] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket (replacing a stale one) and start serving.

        Raises ConfigError when the path cannot be used: it is not a socket, another daemon is
        listening on it, it is too long, or its directory is missing or not writable.
        """
        gid = self._group_id()
        await self._check_existing()
        sock = self._bind_in_place(gid)
        try:
            self._server = await asyncio.start_unix_server(
                self._on_client, sock=sock, limit=self.max_line + 1
            )
        except BaseException:
            sock.close()
            self._unlink_own()
            raise
        mode = "0660, group " + self.group if gid is not None else "0600"
        log.info("control socket listening at %s (mode %s)", self.path, mode)

    async def close(self) -> None:
        """Stop accepting, drop connected clients, and remove our socket file (not a successor's)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if self._streams:
            # End event streams cleanly: each gets its queued lines, then EOF.
            for sub in list(self._streams.values()):
                sub.close()
            await asyncio.wait(list(self._streams), timeout=1.0)
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)
        self._unlink_own()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- socket file -------------------------------------------------------------------------

    def _group_id(self) -> int | None:
        if not self.group:
            return None
        try:
            return int(self.group) if self.group.isdigit() else grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise ConfigError(f"${GROUP_ENV}: no such group {self.group!r}") from None

    async def _check_existing(self) -> None:
        """Refuse to clobber anything but a dead socket: a live one means another daemon runs."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as e:
            raise ConfigError(f"control socket {self.path}: {e.strerror or e}") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(
                f"control.socket: {self.path} exists and is not a socket; remove it or choose "
                "another control.socket path"
            )
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(self.path)), 2.0)
        except (ConnectionRefusedError, FileNotFoundError, TimeoutError, asyncio.TimeoutError):
            log.info("replacing stale control socket %s", self.path)
            return
        except OSError as e:
            raise ConfigError(f"control socket {self.path}: {e.strerror or e}") from None
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        raise ConfigError(
            f"control.socket: {self.path} is in use by a running process (another voice-agent?); "
            "stop it first or set control.socket to another path"
        )

    def _bind_in_place(self, gid: int | None) -> socket.socket:
        """Bind and listen in a fresh 0700 directory next to the target, set mode/group, then
        rename over.

        rename(2) is atomic, so clients see either the old (dead) socket or the new one with its
        final permissions, and a stale socket is replaced without an unlink/bind race.
        """
        parent = self.path.parent
        if len(os.fsencode(self.path)) > _SUN_PATH_MAX:
            raise ConfigError(
                f"control.socket: {self.path} is too long for a Unix socket "
                f"(max {_SUN_PATH_MAX} bytes); choose a shorter path"
            )
        try:
            tmpdir = tempfile.mkdtemp(prefix=".ctl", dir=parent)
        except FileNotFoundError:
            raise ConfigError(f"control.socket: directory {parent} does not exist") from None
        except OSError as e:
            raise ConfigError(f"control.socket: cannot create the socket in {parent}: {e.strerror or e}") from None
        tmp = os.path.join(tmpdir, "s")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            if len(os.fsencode(tmp)) > _SUN_PATH_MAX:
                raise ConfigError(
                    f"control.socket: {self.path} is too long for a Unix socket; choose a shorter path"
                )
            sock.bind(tmp)
            # Listen before the rename: the path must appear only once it accepts connections
            # (a client that waits for the file would otherwise be refused for a few ms).
            sock.listen(LISTEN_BACKLOG)
            if gid is not None:
                try:
                    os.chown(tmp, -1, gid)
                except PermissionError:
                    raise ConfigError(
                        f"${GROUP_ENV}: cannot give the control socket to group {self.group!r}: "
                        "the daemon must be a member (SupplementaryGroups= in the unit)"
                    ) from None
                os.chmod(tmp, 0o660)
            else:
                os.chmod(tmp, 0o600)
            os.rename(tmp, self.path)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise ConfigError(f"control.socket: cannot bind {self.path}: {e.strerror or e}") from None
        except BaseException:
            sock.close()
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            with contextlib.suppress(OSError):
                os.rmdir(tmpdir)
        return sock

    def _unlink_own(self) -> None:
        if self._inode is None:
            return
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        self._inode = None

    # --- clients -----------------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            if not await self._take_slot():
                await self._refuse(reader, writer)
                return
            try:
                subscribe = await self._serve(reader, writer)
            finally:
                self._slots.release()
            if subscribe:
                await self._stream(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            # close() cancels us; end normally: Python 3.11's stream server callback calls
            # task.exception() on its connection tasks, which raises for a cancelled one.
            pass
        except Exception:  # nothing a client does may escape into the loop
            log.exception("control connection failed")
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _take_slot(self) -> bool:
        """A serving slot, waiting up to `queue_timeout` behind at most `max_waiting` others."""
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        if self._waiting >= self.max_waiting:
            return False
        self._waiting += 1
        try:
            await asyncio.wait_for(self._slots.acquire(), self.queue_timeout)
            return True
        except (TimeoutError, asyncio.TimeoutError):
            return False
        finally:
            self._waiting -= 1

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Read what the client already sent first: closing a Unix socket with unread input
        # resets the peer, which would then lose our reply.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.read(self.max_line), 0.2)
        await self._send(writer, _error(f"too many clients (limit {self.max_clients}); retry"))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer request lines until the client leaves (False) or subscribes (True)."""
        buf = bytearray()
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > self.max_line:
                    await self._send(writer, _error(f"request line too long (limit {self.max_line} bytes)"))
                    return False
                try:
                    chunk = await asyncio.wait_for(reader.read(16384), self.idle_timeout)
                except (TimeoutError, asyncio.TimeoutError):
                    if buf:
                        await self._send(writer, _error("timed out waiting for the end of the request line"))
                    return False
                if not chunk:
                    if buf.strip():  # a last line without "\n" (e.g. `printf` without \n | nc -U)
                        if self._wants_stream(bytes(buf).rstrip(b"\r")):
                            return True
                        await self._send(writer, await self._dispatch(bytes(buf)))
                    return False
                buf += chunk
                continue
            line = bytes(buf[:nl]).rstrip(b"\r")
            del buf[: nl + 1]
            if len(line) > self.max_line:
                await self._send(writer, _error(f"request line too long (limit {self.max_line} bytes)"))
                return False
            if not line.strip():
                continue  # blank lines are keep-alives, not requests
            if self._wants_stream(line):
                return True
            await self._send(writer, await self._dispatch(line))

    def _wants_stream(self, line: bytes) -> bool:
        """A valid `subscribe` to a handler with an event bus (else `_dispatch` answers it)."""
        if b"subscribe" not in line or self._events() is None:
            return False
        try:
            return parse_command(line, self.max_text)[0] == "subscribe"
        except RequestError:
            return False

    def _events(self) -> EventBus | None:
        bus = getattr(self.handler, "events", None)
        return bus if isinstance(bus, EventBus) else None

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Send event lines until the client closes, falls behind, or the server closes."""
        bus = self._events()
        assert bus is not None
        if len(self._streams) >= self.max_subscribers:
            await self._send(writer, _error(f"too many subscribers (limit {self.max_subscribers}); retry"))
            return
        task = asyncio.current_task()
        assert task is not None
        sub = bus.subscribe()
        self._streams[task] = sub
        # Bound what the transport holds for a client that stops reading: past this, drain()
        # waits, the bus's backlog fills, and the bus drops the subscriber (events.py).
        writer.transport.set_write_buffer_limits(high=STREAM_HIGH_WATER)
        watcher = asyncio.create_task(until_closed(reader, writer, sub))
        log.info("control: subscribe (%d subscribers)", bus.subscribers)
        try:
            await self._send(writer, _reply(True))
            async for line in sub:
                await self._send(writer, line)
        finally:
            sub.close()
            watcher.cancel()
            del self._streams[task]

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if writer.is_closing():
            return
        writer.write(data)
        await asyncio.wait_for(writer.drain(), self.write_timeout)

    async def _dispatch(self, line: bytes) -> bytes:
        try:
            cmd, text, level = parse_command(line, self.max_text)
        except RequestError as e:
            return _error(str(e))
        try:
            return await asyncio.wait_for(self._call(cmd, text, level), self.handler_timeout)
        except (TimeoutError, asyncio.TimeoutError):
            log.warning("control: %s timed out after %g s", cmd, self.handler_timeout)
            return _error(f"{cmd} timed out after {self.handler_timeout:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("control: %s failed: %s", cmd, redact(f"{e.__class__.__name__}: {e}"))
            return _error(f"{cmd} failed: {e}" if str(e) else f"{cmd} failed: {e.__class__.__name__}")

    async def _call(self, cmd: str, text: str | None, level: int | None = None) -> bytes:
        return await run_command(self.handler, Request(cmd, text, level))
