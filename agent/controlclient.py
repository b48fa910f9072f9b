"""`voice-agent status|say|ask|interrupt|mute|unmute|volume|events`: talk to the running daemon.

The client is plain blocking sockets: it sends one line, reads one line, and exits, so it starts
fast and works from shell scripts. `events` is the one long-lived exchange: it subscribes and
prints each event line (SPEC §12) until interrupted or the daemon goes away. Finding the socket mirrors the daemon (SPEC §4), with one
addition: a shell has no `$RUNTIME_DIRECTORY`, so when neither `--socket` nor `control.socket`
is given the client also looks where the shipped units put it (`/run/voice-agent/control.sock`
for the system unit, `$XDG_RUNTIME_DIR/voice-agent/control.sock` for the user unit).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from agent.config import EX_CONFIG, ConfigError, Settings, load_settings
from agent.control import MAX_LINE, SOCKET_NAME, resolve_socket_path
from agent.secrets import redact

CONNECT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 40.0  # longer than the server's handler timeout, so its error reply arrives

_CONFIRM = {
    "say": "speaking",
    "ask": "asked",
    "interrupt": "interrupted",
    "mute": "microphone muted",
    "unmute": "microphone unmuted",
    "forget": "memory cleared",
    "listen": "listening",
}


class NotRunning(Exception):
    """No daemon behind the socket path."""


def candidate_socket_paths(settings: Settings) -> list[Path]:
    """Where the daemon's socket may be, most specific first (see the module docstring)."""
    first = resolve_socket_path(settings)
    if settings.control.socket:
        return [first]
    paths = [first]
    if not os.environ.get("RUNTIME_DIRECTORY"):
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg:
            paths.append(Path(xdg) / "voice-agent" / SOCKET_NAME)
        paths.append(Path("/run/voice-agent") / SOCKET_NAME)
    unique: list[Path] = []
    for p in paths:
        if p not in unique:
            unique.append(p)
    return unique


def find_socket(socket_path: str | None, settings_path: str | None) -> Path:
    """`--socket`, else the config's path, else the first candidate that exists."""
    if socket_path:
        return Path(socket_path).expanduser()
    settings = _load_settings(settings_path)
    candidates = candidate_socket_paths(settings)
    for p in candidates:
        if p.exists():
            return p
    return candidates[0]


def _load_settings(settings_path: str | None) -> Settings:
    """An explicit --config must load; the implicit default may be absent or root-only (the
    system config is often 0640) and then the defaults are enough to find the socket."""
    if settings_path:
        return load_settings(settings_path)
    try:
        return load_settings(None)
    except ConfigError:
        return Settings()


def request(path: Path, doc: dict[str, Any], timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
    """Send one request, return the decoded reply. Raises NotRunning, OSError or ValueError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
            raise NotRunning(str(path)) from e
        sock.settimeout(timeout)
        sock.sendall(json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n")
        buf = bytearray()
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > 16 * MAX_LINE:
                raise ValueError("reply too long")
    line = bytes(buf).split(b"\n", 1)[0]
    if not line:
        raise ValueError("the daemon closed the connection without a reply")
    reply = json.loads(line.decode("utf-8"))
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ValueError("unexpected reply from the daemon")
    return reply


def iter_events(path: Path, connect_timeout: float = CONNECT_TIMEOUT_S) -> Iterator[dict[str, Any]]:
    """Subscribe and yield each event (a dict, SPEC §12) until the daemon ends the stream.

    Raises NotRunning, OSError, or ValueError (the daemon refused: its error message). A last
    `error` event (the daemon dropped us for falling behind) is yielded like any other.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(connect_timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
            raise NotRunning(str(path)) from e
        sock.sendall(b'{"cmd": "subscribe"}\n')
        sock.settimeout(REPLY_TIMEOUT_S)
        lines = _lines(sock)
        first = next(lines, b"")
        reply = json.loads(first.decode("utf-8")) if first else {}
        if not reply.get("ok"):
            raise ValueError(str(reply.get("error") or "the daemon closed the connection"))
        sock.settimeout(None)  # events come when they come
        for line in lines:
            event = json.loads(line.decode("utf-8"))
            if isinstance(event, dict):
                yield event


def _lines(sock: socket.socket) -> Iterator[bytes]:
    buf = bytearray()
    while True:
        nl = buf.find(b"\n")
        if nl >= 0:
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            yield line
            continue
        if len(buf) > 16 * MAX_LINE:
            raise ValueError("event line too long")
        chunk = sock.recv(65536)
        if not chunk:
            return
        buf += chunk


def events_command(socket_path: str | None, settings_path: str | None, out: TextIO | None = None) -> int:
    """`voice-agent events`: print one JSON line per event until Ctrl-C or the daemon stops."""
    out = out or sys.stdout
    path = _socket_or_exit(socket_path, settings_path)
    if isinstance(path, int):
        return path
    try:
        for event in iter_events(path):
            out.write(json.dumps(event, ensure_ascii=False) + "\n")
            out.flush()
    except KeyboardInterrupt:
        return 0
    except (NotRunning, OSError, ValueError) as e:
        return _failure(path, e)
    return 0


def volume_command(level: int | None, socket_path: str | None, settings_path: str | None) -> int:
    """`voice-agent volume [LEVEL]`: print the (new) level, 0-100."""
    doc: dict[str, Any] = {"cmd": "volume"}
    if level is not None:
        doc["level"] = level
    reply = _exchange(doc, socket_path, settings_path)
    if isinstance(reply, int):
        return reply
    print(reply.get("volume"))
    return 0


def talk_command(action: str, socket_path: str | None, settings_path: str | None) -> int:
    """`voice-agent talk start|stop`: push-to-talk from a script or a button."""
    reply = _exchange({"cmd": "talk", "action": action}, socket_path, settings_path)
    if isinstance(reply, int):
        return reply
    print(f"voice-agent: talk {action}")
    return 0


def _socket_or_exit(socket_path: str | None, settings_path: str | None) -> Path | int:
    try:
        return find_socket(socket_path, settings_path)
    except ConfigError as e:
        print(f"voice-agent: configuration error: {redact(str(e))}", file=sys.stderr)
        return EX_CONFIG


def _failure(path: Path, e: BaseException) -> int:
    """One clear line on stderr for a failed exchange; exit code 1."""
    if isinstance(e, NotRunning):
        print(f"voice-agent is not running (no control socket at {path})", file=sys.stderr)
    elif isinstance(e, PermissionError):
        print(
            f"voice-agent: permission denied on {path}: run as the daemon's user, or as a member "
            "of its control group ($VOICE_AGENT_CONTROL_GROUP, see docs/service.md)",
            file=sys.stderr,
        )
    elif isinstance(e, TimeoutError):
        print(f"voice-agent: no reply from the daemon at {path} (timed out)", file=sys.stderr)
    else:
        print(f"voice-agent: control socket {path}: {redact(str(e))}", file=sys.stderr)
    return 1


def _exchange(doc: dict[str, Any], socket_path: str | None, settings_path: str | None) -> dict[str, Any] | int:
    """One request; the ok reply, or the exit code after printing why it failed."""
    path = _socket_or_exit(socket_path, settings_path)
    if isinstance(path, int):
        return path
    try:
        reply = request(path, doc)
    except (NotRunning, OSError, ValueError) as e:
        return _failure(path, e)
    if not reply.get("ok"):
        print(f"voice-agent: {redact(str(reply.get('error') or 'request failed'))}", file=sys.stderr)
        return 1
    return reply


def control_command(cmd: str, text: str | None, socket_path: str | None, settings_path: str | None) -> int:
    """Run one control command; print the result. Exit 0 ok, 1 error, 78 bad --config."""
    doc: dict[str, Any] = {"cmd": cmd}
    if text is not None:
        doc["text"] = text
    reply = _exchange(doc, socket_path, settings_path)
    if isinstance(reply, int):
        return reply
    if cmd == "status":
        print(json.dumps(reply.get("status", {}), indent=2, ensure_ascii=False))
    else:
        print(f"voice-agent: {_CONFIRM.get(cmd, 'ok')}")
    return 0
