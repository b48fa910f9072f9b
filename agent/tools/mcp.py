"""An MCP server as a tool source (SPEC §11): stdio servers the daemon supervises, HTTP servers.

`McpSource(entry)` is one `tools.mcp` entry. `start()` returns at once; a supervisor task
connects, lists the tools, and keeps the connection: a stdio server is started as a child
process (its stderr goes to our log, one line per record, prefixed with the server's name), an
HTTP server is reached over Streamable HTTP with `Authorization: Bearer <token_file's first
line>` (Home Assistant's `/api/mcp`). When the connection is lost (the child exits, the
periodic re-listing fails, a call finds the connection closed) the source is `down`, offers no
tools, and the supervisor reconnects with bounded exponential backoff; the tools are listed
again after every reconnect. A server that is down never blocks: `call` answers at once with an
error result, and every call is bounded by `timeout_s` (a timeout is an error result too, so the
model can say what went wrong).

The `mcp` package (major version `MCP_MAJOR`, pinned in pyproject's `mcp` extra) is imported
only here, when a source connects. Stdio children get the SDK's minimal environment (PATH,
HOME, USER, ...) plus the entry's `env`, never the daemon's secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.backoff import Backoff
from agent.tools.mcp_config import McpServerConfig, result_text, tool_name, tool_parameters
from agent.tools.spec import ToolResult, ToolSpec

log = logging.getLogger("voice-agent.mcp")

MAX_STDERR_LINE = 2000  # characters of one stderr line logged


@dataclass(frozen=True)
class McpTimings:
    """How patient the supervisor is (tests shorten these)."""

    connect_s: float = 20.0  # connect + initialize + first listing
    relist_s: float = 30.0  # how often a live connection is re-listed (and so checked)
    backoff_first_s: float = 1.0
    backoff_cap_s: float = 60.0


class McpDown(Exception):
    """The connection is gone; the message says why (no secrets)."""


class McpSource:
    """One MCP server; a `ToolSource` (agent.tools.spec)."""

    def __init__(self, entry: Any, *, timeout_s: float = 10.0, timings: McpTimings | None = None,
                 key: str = "tools.mcp") -> None:
        self.config = entry if isinstance(entry, McpServerConfig) else McpServerConfig.parse(entry, key)
        self.name = self.config.name
        self.timeout_s = timeout_s
        self.timings = timings or McpTimings()
        self.last_error: str | None = None
        self.connects = 0  # successful connections (the first one and every reconnect)
        self._client: Any = None
        self._specs: list[ToolSpec] = []
        self._names: dict[str, str] = {}  # offered name -> the server's name
        self._lost = asyncio.Event()
        self._attempted = asyncio.Event()  # the first connection attempt succeeded or failed
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._token: str | None = None
        self._errlog: Any = None  # our end of a stdio child's stderr pipe, until it has its own
        # Called when the server comes up or goes down (its tools appear or vanish): an open
        # realtime session is offered the new list (`ToolRegistry.on_change`).
        self.on_change: list[Callable[[], None]] = []
        self._unknown_allowed: list[str] = []  # allow-list names the server did not offer

    # --- ToolSource ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the supervisor and return at once (a down server must not delay the daemon)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._supervise(), name=f"mcp {self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def specs(self) -> list[ToolSpec]:
        return list(self._specs) if self._client is not None else []

    def status(self) -> str:
        return "up" if self._client is not None else "down"

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        client = self._client
        if client is None:
            why = f": {self.last_error}" if self.last_error else ""
            return ToolResult(f"the {self.name} tool server is not reachable right now{why}", True)
        original = self._names.get(name)
        if original is None:
            return ToolResult(f"{self.name} offers no tool named {name!r}", True)
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        try:
            result = await asyncio.wait_for(
                client.call_tool(original, arguments, read_timeout_seconds=self.timeout_s),
                self.timeout_s + 1.0)
        except (asyncio.TimeoutError, TimeoutError):
            return self._timed_out(name)
        except MCPError as e:
            if e.code == REQUEST_TIMEOUT:
                return self._timed_out(name)
            if e.code == CONNECTION_CLOSED:
                self._lost.set()
            return ToolResult(f"{name} failed: {self._safe(e.error.message)}", True)
        except Exception as e:  # a transport failure: the supervisor reconnects
            self._lost.set()
            return ToolResult(f"{name} failed: {self._safe(_describe(e))}", True)
        return ToolResult(result_text(result.content, result.structured_content), bool(result.is_error))

    def _timed_out(self, name: str) -> ToolResult:
        log.warning("mcp %s: %s timed out after %g s", self.name, name, self.timeout_s)
        return ToolResult(f"{name} timed out after {self.timeout_s:g} s", True)

    # --- waiting (tests, `voice-agent tools`) ---------------------------------------------------

    async def wait_status(self, status: str, timeout: float) -> None:
        """Until `status()` is `status` (TimeoutError after `timeout` seconds)."""
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.status() == status)

        await asyncio.wait_for(wait(), timeout)

    async def settled(self, timeout: float) -> str:
        """Wait (at most `timeout` s) for the first connection attempt; returns `status()`.

        For `voice-agent tools`: `start()` returns at once, so a caller that wants to show
        which servers answered waits here instead of sleeping a fixed time.
        """
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(self._attempted.wait(), timeout)
        return self.status()

    async def _set_client(self, client: Any) -> None:
        self._client = client
        async with self._changed:
            self._changed.notify_all()
        for hook in self.on_change:
            try:
                hook()
            except Exception:
                log.exception("mcp %s: a change listener failed", self.name)

    # --- the supervisor -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        t = self.timings
        backoff = Backoff(t.backoff_first_s, t.backoff_cap_s, stable_s=max(t.relist_s, 10.0))
        while True:
            try:
                await self._serve_once(backoff)
                why = "the connection ended"
            except asyncio.CancelledError:
                raise
            except BaseException as e:  # ExceptionGroups from the SDK's task groups included
                if not isinstance(e, Exception):
                    raise
                why = self._safe(_describe(e))
            if self._task is None:  # stopping: whatever the SDK raised while being cancelled
                return
            self.last_error = why
            self._attempted.set()
            delay = backoff.next_delay()
            log.warning("mcp %s: down (%s); retrying in %.1f s", self.name, why, delay)
            await asyncio.sleep(delay)

    async def _serve_once(self, backoff: Backoff) -> None:
        import anyio  # the SDK's: its cancel scopes must nest, entered and left in this task
        from mcp import Client

        # One scope around the connection: a deadline while connecting, none once up.
        with anyio.CancelScope(deadline=anyio.current_time() + self.timings.connect_s) as scope:
            await self._connect_and_serve(Client, scope, backoff)
        if scope.cancelled_caught:
            raise McpDown(f"no answer within {self.timings.connect_s:g} s")

    async def _connect_and_serve(self, client_cls: Any, scope: Any, backoff: Backoff) -> None:
        async with contextlib.AsyncExitStack() as stack:
            transport = await self._transport(stack)
            # The initialize handshake: every released server answers it (Home Assistant's
            # included); v2's default "auto" first probes the 2026-07-28 `server/discover`.
            client = client_cls(transport, client_info=_client_info(), mode="legacy")
            await stack.enter_async_context(client)
            self._close_child_stderr()
            await self._list(client)
            scope.deadline = float("inf")
            self._lost.clear()
            self.connects += 1
            self.last_error = None
            backoff.connected()
            await self._set_client(client)
            self._attempted.set()
            log.info("mcp %s: up (%s), %d tool(s): %s", self.name, self.config.kind,
                     len(self._specs), ", ".join(s.name for s in self._specs) or "none")
            try:
                await self._watch(client)
            except Exception as e:
                self.last_error = self._safe(_describe(e))
                raise
            finally:
                await self._set_client(None)

    async def _watch(self, client: Any) -> None:
        """Re-list now and then (a dead server fails it) until a call saw the connection go."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self.timings.relist_s)
            if self._lost.is_set():
                raise McpDown("the connection was lost")
            await self._list(client)

    async def _list(self, client: Any) -> None:
        tools: list[Any] = []
        cursor: str | None = None
        import anyio

        for _ in range(50):  # pages; a server that pages forever is cut off
            with anyio.fail_after(self.timings.connect_s):
                page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        allow = self.config.allow
        unknown = sorted(set(allow or ()) - {t.name for t in tools})
        if unknown and unknown != self._unknown_allowed:  # a typo in the allow-list, said once
            log.warning("mcp %s: allow lists %s, which the server does not offer",
                        self.name, ", ".join(unknown))
        self._unknown_allowed = unknown
        specs, names = [], {}
        for tool in tools:
            if allow is not None and tool.name not in allow:
                continue
            offered = tool_name(tool.name)
            if offered in names:
                continue  # two names that map to one: keep the first
            names[offered] = tool.name
            specs.append(ToolSpec(offered, tool.description or tool.title or "",
                                  tool_parameters(tool.input_schema)))
        self._specs, self._names = specs, names

    # --- transports ---------------------------------------------------------------------------

    async def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        if self.config.url:
            return await self._http(stack)
        return self._stdio(stack)

    def _stdio(self, stack: contextlib.AsyncExitStack) -> Any:
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        command, *args = self.config.command
        params = StdioServerParameters(command=command, args=args, env=dict(self.config.env) or None)
        read_fd, write_fd = os.pipe()
        self._errlog = os.fdopen(write_fd, "w")
        pump = asyncio.create_task(self._pump_stderr(read_fd), name=f"mcp {self.name} stderr")
        stack.push_async_callback(_finish, pump)  # runs last: after our end is closed, EOF comes
        stack.callback(self._close_child_stderr)
        return stdio_client(params, errlog=self._errlog)

    def _close_child_stderr(self) -> None:
        """Our copy of the child's stderr pipe: closed once the child has it (EOF when it exits)."""
        errlog = self._errlog
        if errlog is not None:
            self._errlog = None
            with contextlib.suppress(OSError):
                errlog.close()

    async def _pump_stderr(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 * 1024)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0))
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # a line over the limit: skip what is buffered
                    continue
                if not line:
                    return
                text = line.decode("utf-8", "replace").rstrip()
                if text:
                    log.info("mcp %s: %s", self.name, text[:MAX_STDERR_LINE])
        finally:
            transport.close()

    async def _http(self, stack: contextlib.AsyncExitStack) -> Any:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        headers = {}
        if self.config.token_file:
            self._token = _read_token(self.config.token_file)
            headers["Authorization"] = f"Bearer {self._token}"
        http = await stack.enter_async_context(httpx2.AsyncClient(
            headers=headers, timeout=httpx2.Timeout(self.timings.connect_s, read=300.0)))
        assert self.config.url is not None
        return streamable_http_client(self.config.url, http_client=http)

    def _safe(self, text: str) -> str:
        """`text` without the token (an error message must never carry it)."""
        if self._token:
            text = text.replace(self._token, "***")
        return text


def _read_token(path: str) -> str:
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise McpDown(f"token_file {path}: {e.__class__.__name__}: {e.strerror or e}") from None
    if not token or not token[0].strip():
        raise McpDown(f"token_file {path} is empty")
    return token[0].strip()


def _describe(e: BaseException) -> str:
    """One line for an exception, unwrapping the SDK's exception groups."""
    while getattr(e, "exceptions", None):  # an ExceptionGroup (no builtin name on 3.10)
        e = e.exceptions[0]  # type: ignore[attr-defined]
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{e.__class__.__name__}: {text}" if text else e.__class__.__name__


def _client_info() -> Any:
    from mcp import Implementation

    return Implementation(name="voice-agent", version="1")


async def _finish(task: asyncio.Task[None]) -> None:
    """Let the stderr pump drain after the child is gone, then stop it."""
    with contextlib.suppress(asyncio.TimeoutError, TimeoutError, asyncio.CancelledError, Exception):
        await asyncio.wait_for(asyncio.shield(task), 1.0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
