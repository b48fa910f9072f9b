"""The pipeline's tool rounds against the emulated text-generation stream (real loopback)."""

from __future__ import annotations

import datetime as dt

from agent.emulator.server import Emulator
from agent.llm import LLMClient
from agent.llm_tools import ToolAnswer
from agent.tools.builtin import BuiltinSource
from agent.tools.registry import ToolRegistry
from tests.support.emulator import account_for

NOON = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.timezone.utc)


def client(emulator: Emulator) -> LLMClient:
    return LLMClient(account_for(emulator), "qwen-plus")


async def test_a_called_tool_runs_and_the_follow_up_answer_reads_its_result(emulator: Emulator) -> None:
    llm = client(emulator)
    tools = ToolRegistry([BuiltinSource(["time", "timer"], now=lambda: NOON)])
    answer = ToolAnswer(llm, [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "What time is it?"}], tools)
    text = "".join([d async for d in answer])
    await llm.close()
    assert text == "It is 12:00 on Thursday, 3 December 2026 (UTC)."
    assert [s.finish_reason for s in answer.streams] == ["tool_calls", "stop"]
    (call,) = answer.calls
    assert (call["name"], call["arguments"]) == ("time", "{}") and call["id"].startswith("call_")
    assistant, result = answer.messages[-2:]
    assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["id"] == call["id"]
    assert result == {"role": "tool", "tool_call_id": call["id"], "name": "time", "content": text}
    assert tools.status()["calls"] == 1


async def test_an_answer_without_a_call_is_one_plain_stream(emulator: Emulator) -> None:
    llm = client(emulator)
    answer = ToolAnswer(llm, [{"role": "user", "content": "Tell me a joke."}],
                        ToolRegistry([BuiltinSource(["time"])]))
    text = "".join([d async for d in answer])
    await llm.close()
    assert text.startswith("Why did the microphone go to school?")
    assert len(answer.streams) == 1 and answer.calls == []
