"""The LLM history keeps each turn's tool exchange (pure: the core and the history messages).

A follow-up like "cancel that timer" needs what `timer` answered a turn ago, so the next request
carries the assistant's `tool_calls` message and one `tool` message per call, before the words
the user heard. The emulator's validator (the service's 400 rule) checks every history here.
"""

from __future__ import annotations

import pytest

from agent.conversation.pipeline import BYTES_PER_MS, NewTurn, PipelineConversation
from agent.emulator.errors import ApiError
from agent.emulator.textgen import _check_messages
from agent.llm_history import (
    MAX_HISTORY_CALLS,
    MAX_HISTORY_RESULT,
    NO_RESULT,
    Conversation,
    ToolExchange,
    clip_result,
)
from agent.status import AgentState

pytestmark = pytest.mark.unit


def exchange(*rounds: list[tuple[str, str, str, str | None]]) -> ToolExchange:
    """Rounds of (id, name, arguments, result or None while it runs)."""
    ex = ToolExchange()
    for calls in rounds:
        records = ex.called([{"id": i, "name": n, "arguments": a} for i, n, a, _ in calls])
        for record, (*_, result) in zip(records, calls, strict=False):
            if result is not None:
                record.settle(result)
    return ex


TIMER = exchange([("call_1", "timer", '{"action": "set", "seconds": 300}',
                   "The timer is set for 5 minutes.")])


def roles(messages: list[dict]) -> list[str]:
    return [m["role"] for m in messages]


def test_a_tool_turn_is_sent_as_calls_then_results_then_the_spoken_answer() -> None:
    conv = Conversation("be brief")
    conv.add("set a timer for five minutes", "The timer is set for 5 minutes.", TIMER)
    msgs = conv.messages("cancel that timer")
    assert roles(msgs) == ["system", "user", "assistant", "tool", "assistant", "user"]
    call, result, said = msgs[2:5]
    assert call == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "index": 0,
         "function": {"name": "timer", "arguments": '{"action": "set", "seconds": 300}'}}]}
    assert result == {"role": "tool", "tool_call_id": "call_1", "name": "timer",
                      "content": "The timer is set for 5 minutes."}
    assert said == {"role": "assistant", "content": "The timer is set for 5 minutes."}
    _check_messages(msgs)  # the service's pairing rule holds


def test_rounds_and_parallel_calls_keep_their_order_and_pairing() -> None:
    ex = exchange([("a", "weather", '{"city": "Paris"}', "Sunny, 21 C."),
                   ("b", "time", "{}", "It is noon.")],
                  [("c", "weather", '{"city": "Paris", "day": "tomorrow"}', "Rain, 15 C.")])
    conv = Conversation("")
    conv.add("weather and time in Paris", "Sunny, 21 C, and it is noon.", ex)
    msgs = conv.messages("and tomorrow?")
    assert roles(msgs) == ["user", "assistant", "tool", "tool", "assistant", "tool", "assistant",
                           "user"]
    assert [c["id"] for c in msgs[1]["tool_calls"]] == ["a", "b"]
    assert [m["tool_call_id"] for m in msgs if m["role"] == "tool"] == ["a", "b", "c"]
    _check_messages(msgs)


def test_a_long_result_is_truncated_with_a_marker() -> None:
    page = "x" * (MAX_HISTORY_RESULT + 500)
    conv = Conversation("")
    conv.add("read the page", "Done.", exchange([("p", "fetch", "{}", page)]))
    content = conv.messages("next")[2]["content"]
    assert content == clip_result(page)
    assert content.startswith("x" * MAX_HISTORY_RESULT)
    assert content.endswith(f"… [truncated: {MAX_HISTORY_RESULT} of {len(page)} characters kept]")
    assert clip_result("short") == "short"


def test_calls_beyond_the_bound_are_left_out_with_their_results() -> None:
    many = [(f"id{i}", "time", "{}", f"r{i}") for i in range(MAX_HISTORY_CALLS + 2)]
    conv = Conversation("")
    conv.add("lots", "Done.", exchange(many[:3], many[3:]))
    msgs = conv.messages("next")
    kept = [c["id"] for m in msgs if m.get("tool_calls") for c in m["tool_calls"]]
    assert kept == [f"id{i}" for i in range(MAX_HISTORY_CALLS)]
    _check_messages(msgs)


def test_the_turn_count_bound_still_applies() -> None:
    conv = Conversation("", history_turns=2)
    for i in range(3):
        conv.add(f"q{i}", f"a{i}", exchange([(f"c{i}", "time", "{}", f"r{i}")]))
    msgs = conv.messages("q3")
    assert [m["content"] for m in msgs if m["role"] == "user"] == ["q1", "q2", "q3"]
    assert [m["tool_call_id"] for m in msgs if m["role"] == "tool"] == ["c1", "c2"]


def test_a_result_still_running_is_answered_by_a_placeholder_until_it_comes() -> None:
    ex = exchange([("t", "time", "{}", None)])
    conv = Conversation("")
    conv.add("what time is it", "", ex)
    msgs = conv.messages("hello?")
    assert roles(msgs) == ["user", "assistant", "tool", "user"]  # nothing was said
    assert msgs[2]["content"] == NO_RESULT
    _check_messages(msgs)
    ex.rounds[0][0].settle("It is five past ten.")
    ex.rounds[0][0].settle("a second, late copy never overwrites")
    assert conv.messages("hello?")[2]["content"] == "It is five past ten."


# --- the core records it -------------------------------------------------------------------------


def core() -> PipelineConversation:
    return PipelineConversation("be brief", 8, idle_state=AgentState.LISTENING)


def ask(c: PipelineConversation, text: str, now: float) -> str:
    (new,) = [a for a in c.ask(text, now) if isinstance(a, NewTurn)]
    return new.rid


def test_a_barge_in_keeps_the_tool_exchange_and_the_heard_part() -> None:
    c = core()
    rid = ask(c, "set a timer for five minutes", 1.0)
    c.audio(rid, b"\0" * (2000 * BYTES_PER_MS))
    c.interrupt(2.0, playing=True)
    c.produced(rid, "cancelled", "The timer is set for five minutes, starting now.", TIMER)
    c.output_finished(rid, 2.1, flushed=True, heard_ms=1000.0)
    (turn,) = c.history.turns
    assert turn.tools is TIMER and turn.assistant.endswith("…")
    assert roles(c.history.messages("cancel it")) == ["system", "user", "assistant", "tool",
                                                      "assistant", "user"]


def test_a_turn_cut_off_before_any_speech_keeps_its_calls() -> None:
    c = core()
    rid = ask(c, "what time is it", 1.0)
    c.interrupt(1.5, playing=False)
    running = exchange([("t", "time", "{}", None)])
    c.produced(rid, "cancelled", "", running)
    c.output_finished(rid, 1.6, flushed=False)
    (turn,) = c.history.turns
    assert (turn.user, turn.assistant, turn.tools) == ("what time is it", "", running)


def test_a_turn_without_words_or_calls_is_still_left_out() -> None:
    c = core()
    rid = ask(c, "hello", 1.0)
    c.produced(rid, "failed", "", ToolExchange())
    c.output_finished(rid, 1.1, flushed=False)
    assert c.history.turns == ()


@pytest.mark.parametrize("bad, why", [
    ([{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "x", "content": "r"}],
     "a tool message with no call before it"),
    ([{"role": "user", "content": "q"},
      {"role": "assistant", "content": "", "tool_calls": [{"id": "a", "type": "function",
                                                           "function": {"name": "t"}}]},
      {"role": "user", "content": "again"}],
     "a call left unanswered"),
    ([{"role": "user", "content": "q"},
      {"role": "assistant", "content": "", "tool_calls": [{"id": "a", "type": "function",
                                                           "function": {"name": "t"}}]},
      {"role": "tool", "tool_call_id": "b", "content": "r"}],
     "an answer to another id"),
    ([{"role": "user", "content": "q"},
      {"role": "assistant", "content": "", "tool_calls": [{"id": "a", "type": "function",
                                                           "function": {"name": "t"}}]},
      {"role": "tool", "tool_call_id": "a", "content": "r"},
      {"role": "tool", "tool_call_id": "a", "content": "r"}],
     "two answers to one id"),
])
def test_the_emulator_rejects_a_history_the_service_rejects(bad: list[dict], why: str) -> None:
    with pytest.raises(ApiError) as e:
        _check_messages(bad)
    assert (e.value.status, e.value.code) == (400, "InvalidParameter"), why
    assert 'must be a response to a preceeding message with "tool_calls"' in e.value.message
