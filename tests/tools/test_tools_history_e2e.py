"""Pipeline mode, over loopback: the next turn's request carries the earlier turn's tool exchange.

Read where it arrives: every text-generation request body the emulator received (its
`on_received` hook). The emulator validates the history like the service does (a `tool` message
must answer a preceding `tool_calls` id, every id exactly once, else 400 InvalidParameter), so a
second turn that is answered proves the history we send is one the service accepts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.daemon import RunDaemon
from tests.support.emulator import LlmRequests
from tests.tools.test_tools_e2e import SLOW, TEXT, SlowClock, ask, cut_off_during_the_call, until

pytestmark = pytest.mark.parametrize("daemon_mode", ["pipeline"])


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SlowClock:
    """A `time` tool that takes 1.5 s, served through the registry's MCP seam (as SLOW names it)."""
    slow = SlowClock(1.5)
    monkeypatch.setattr("agent.tools.factory.mcp_sources", lambda entries, *_: [slow])
    return slow


def exchange_of(messages: list[dict[str, Any]], user: str) -> list[dict[str, Any]]:
    """The messages of the earlier turn that began with `user`, up to the next user message."""
    start = next(i for i, m in enumerate(messages) if m == {"role": "user", "content": user})
    end = next(i for i in range(start + 1, len(messages)) if messages[i]["role"] == "user")
    return messages[start + 1:end]


async def test_the_next_turn_sends_the_tool_calls_and_results_before_the_answer(
        daemon: RunDaemon) -> None:
    bodies = LlmRequests()
    async with daemon(**TEXT, emulator_options=bodies.hooks()) as run:
        first = await ask(run, "Set a tea timer for five minutes.")
        second = await ask(run, "Cancel the tea timer.")
    assert first.answered == "The tea timer is set for 5 minutes."
    assert second.answered == "The tea timer is cancelled.", "the emulator accepted the history"
    assert len(bodies.messages) == 4  # each turn: the call, then the answer to its result
    set_call = bodies.messages[0][-1]
    assert set_call == {"role": "user", "content": "Set a tea timer for five minutes."}
    call_id = [m for m in bodies.messages[1] if m.get("tool_calls")][0]["tool_calls"][0]["id"]

    turn2 = bodies.messages[2]
    assert turn2[-1] == {"role": "user", "content": "Cancel the tea timer."}
    calls, result, said = exchange_of(turn2, "Set a tea timer for five minutes.")
    assert calls["role"] == "assistant" and calls["tool_calls"] == [
        {"id": call_id, "type": "function", "index": 0,
         "function": {"name": "timer",
                      "arguments": json.dumps({"action": "set", "seconds": 300, "name": "tea"})}}]
    assert result == {"role": "tool", "tool_call_id": call_id, "name": "timer",
                      "content": "The tea timer is set for 5 minutes."}
    assert said == {"role": "assistant", "content": "The tea timer is set for 5 minutes."}
    # Memory (on by default) records the same turn from events; it must not add a second copy
    assert not any("[tools:" in str(m.get("content")) for m in turn2)
    assert sum(1 for m in turn2 if m.get("tool_calls")) == 1


async def test_a_call_cut_off_by_a_barge_in_is_sent_with_its_late_result(
        daemon: RunDaemon, clock: SlowClock) -> None:
    bodies = LlmRequests()
    async with daemon(**SLOW, emulator_options=bodies.hooks()) as run:
        cut = await cut_off_during_the_call(run, clock)
        history = (await run.serving()).conv
        # the tool has returned; its result reaches the history on the loop (under load, later
        # than any fixed sleep): wait for it, as a user's next question would come after it
        await until(lambda: all(r.result is not None for t in history.turns if t.tools
                                for rnd in t.tools.rounds for r in rnd),
                    what="the late result in the history")
        after = await ask(run, "Tell me a joke.")
    assert cut.interrupted and after.answered.startswith("Why did the microphone")
    assert len(bodies.messages) == 2, "no follow-up request for the cut-off turn"
    exchange = exchange_of(bodies.messages[1], "What time is it?")
    assert [m["role"] for m in exchange] == ["assistant", "tool"], "nothing of it was heard"
    assert exchange[1]["content"] == "It is five past ten."
    assert exchange[1]["tool_call_id"] == exchange[0]["tool_calls"][0]["id"]
