"""A pipeline answer that may call tools on the way (SPEC §11, function-calling.md §5 (2)).

`ToolAnswer` looks like one `LLMStream` to the pipeline (async iteration of text deltas,
`aclose()` from any task, latency figures), but when a stream ends with `tool_calls` it runs
them through the `ToolRegistry`, appends the assistant's calls and one `tool` message per result
to the messages, and streams the follow-up answer — so text said before a call is spoken
first and the answer to the results follows in the same synthesis task. A barge-in closes
the current stream; a tool already running is allowed to finish (a light half switched is worse
than one switched late), but nobody waits for it and its result is never spoken.

`exchange` records the calls and their results for the conversation history (the next turns'
requests, `agent.llm_history`); the result of a call cut off that way is recorded when it comes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from agent.llm import LLMClient, LLMStream
from agent.llm_history import ToolCallRecord, ToolExchange
from agent.tools.registry import ToolRegistry

log = logging.getLogger("voice-agent.pipeline")

MAX_ROUNDS = 3  # tool rounds per answer; the last request offers no tools, so it must answer
_RUNNING: set[asyncio.Future[Any]] = set()  # calls outliving a cut-off answer (kept referenced)


class ToolAnswer:
    """Text deltas of an answer with tool rounds in between; see the module docstring."""

    def __init__(self, llm: LLMClient, messages: list[dict[str, Any]], tools: ToolRegistry) -> None:
        self.llm = llm
        self.messages = list(messages)
        self.tools = tools
        self.streams: list[LLMStream] = []
        self.calls: list[dict[str, str]] = []  # every call made, for logs and tests
        self.exchange = ToolExchange()  # the calls and results, for the history
        self._closed = False
        self._gen = self._run()

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.streams)

    @property
    def finished_at(self) -> float | None:
        return self.streams[-1].finished_at if self.streams else None

    @property
    def first_token_latency(self) -> float | None:
        for s in self.streams:
            if s.first_token_latency is not None:
                return s.first_token_latency
        return None

    def __aiter__(self) -> ToolAnswer:
        return self

    async def __anext__(self) -> str:
        if self._closed:
            raise StopAsyncIteration
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        self._closed = True
        for s in self.streams:
            await s.aclose()
        try:
            await self._gen.aclose()
        except RuntimeError:
            pass  # running in another task: closing the stream ends it

    async def _run(self) -> AsyncIterator[str]:
        specs = [spec.as_chat() for spec in self.tools.specs()]
        for round_ in range(MAX_ROUNDS + 1):
            stream = self.llm.stream(self.messages, specs if specs and round_ < MAX_ROUNDS else None)
            self.streams.append(stream)
            async for delta in stream:
                yield delta
            calls = stream.tool_calls
            if not calls or self._closed:
                return
            self.calls += calls
            self.messages.append({"role": "assistant", "content": stream.text, "tool_calls": [
                {"id": c["id"], "type": "function", "index": i,
                 "function": {"name": c["name"], "arguments": c["arguments"]}}
                for i, c in enumerate(calls)]})
            records = self.exchange.called(calls)
            running = asyncio.gather(*(self.tools.call(c["name"], c["arguments"]) for c in calls))
            _RUNNING.add(running)
            running.add_done_callback(_RUNNING.discard)
            running.add_done_callback(lambda f, kept=records: _settle(kept, f))
            results = await asyncio.shield(running)  # a barge-in cancels the wait, not the tools
            for record, result in zip(records, results, strict=False):
                record.settle(result.text)
            if self._closed:
                log.info("tool results of %s not spoken: the answer was cut off",
                         ", ".join(c["name"] for c in calls))
                return
            for c, result in zip(calls, results, strict=True):
                self.messages.append({"role": "tool", "tool_call_id": c["id"], "name": c["name"],
                                      "content": result.text})


def _settle(records: list[ToolCallRecord], done: asyncio.Future[Any]) -> None:
    """Results of calls that outlived their answer (a barge-in): into the history all the same."""
    if done.cancelled() or done.exception() is not None:
        return
    for record, result in zip(records, done.result(), strict=False):
        record.settle(result.text)
