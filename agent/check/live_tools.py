"""`check --live`'s function-calling row: does the configured model call a declared tool?

One cheap request per mode, with only the built-in `time` tool declared and a question that
names it: omni — a realtime session with the tool in `session.update`, a text item and
`response.create`, passed when a `function_call` for `time` arrives; pipeline — one generation
request with `tools`, passed when the stream ends with a `tool_calls` entry for `time`. The tool
is never run and no answer is spoken: the probe stops at the call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp

from agent.account import DashScopeAccount
from agent.check.result import CheckResult, failed, passed, skipped
from agent.config import Settings
from agent.llm import LLMClient
from agent.realtime import protocol as p
from agent.secrets import redact
from agent.tools.builtin import SPECS
from agent.tools.factory import model_takes_tools

NAME = "function calling"
QUESTION = "What time is it? Use the time tool."
FIX = ("the model did not call the declared tool: set tools.builtin: [] to run without tools, "
       "or report it with --record")


class ProbeSocket(Protocol):
    async def send(self, event: dict[str, Any]) -> None: ...
    async def recv(self, deadline: float) -> str | bytes: ...
    async def close(self) -> None: ...


async def probe_function_calling(
    settings: Settings, account: DashScopeAccount, http: aiohttp.ClientSession,
    open_realtime: Callable[[str], Awaitable[ProbeSocket]], timeout: float,
) -> CheckResult:
    t = settings.tools
    if not (t.builtin or t.mcp):
        return skipped(NAME, "no tools are configured")
    takes, why = model_takes_tools(settings)
    if not takes:
        return skipped(NAME, why)
    decl = SPECS["time"]
    try:
        if settings.mode == "pipeline":
            called = await _pipeline_call(settings, account, http, decl.as_chat(), timeout)
            model = settings.pipeline.llm_model
        else:
            called = await _omni_call(settings, open_realtime, decl.as_chat(), timeout)
            model = settings.omni.model
    except Exception as e:
        return failed(NAME, redact(f"{e.__class__.__name__}: {e}"), FIX)
    if called is None:
        return failed(NAME, f"{model}: answered without calling the declared tool", FIX)
    name, arguments = called
    if name != decl.name:
        return failed(NAME, f"{model}: called {name!r}, not the declared {decl.name!r}", FIX)
    return passed(NAME, f"{model}: called {name}({arguments or '{}'}) when asked {QUESTION!r}")


async def _pipeline_call(settings: Settings, account: DashScopeAccount, http: aiohttp.ClientSession,
                         tool: dict[str, Any], timeout: float) -> tuple[str, str] | None:
    client = LLMClient(account, settings.pipeline.llm_model, session=http, max_retries=0,
                       connect_timeout_s=timeout, read_timeout_s=2 * timeout)
    async with client.stream([{"role": "user", "content": QUESTION}], [tool]) as stream:
        async for _ in stream:
            pass
        calls = stream.tool_calls
    return (calls[0]["name"], calls[0]["arguments"]) if calls else None


async def _omni_call(settings: Settings, open_realtime: Callable[[str], Awaitable[ProbeSocket]],
                     tool: dict[str, Any], timeout: float) -> tuple[str, str] | None:
    sock = await open_realtime(settings.omni.model)
    try:
        deadline = time.monotonic() + 3 * timeout
        update = p.session_update(settings.omni, settings.voice.preset if settings.voice.family == "preset"
                                  else None, tools=[tool])
        await sock.send(update)
        await sock.send(p.user_text(QUESTION, p.new_event_id()))
        await sock.send(p.response_create())
        while True:
            frame = await sock.recv(deadline)
            if isinstance(frame, bytes):
                continue
            ev = p.parse_event(frame)
            if isinstance(ev, p.FunctionCall) and ev.complete:
                return ev.name or "", ev.arguments or ""
            if isinstance(ev, p.ResponseDone):
                return (ev.calls[0][1], ev.calls[0][2]) if ev.calls else None
            if isinstance(ev, p.ErrorEvent) and ev.fatal:
                raise RuntimeError(ev.message or ev.code or "error")
    finally:
        with contextlib.suppress(Exception):
            await sock.send(p.session_finish())
        await sock.close()
