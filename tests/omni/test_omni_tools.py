"""Omni function calling through the pure core: calls assembled, run once, answered once.

The first test replays the frames of a recorded live qwen3.5-omni-flash-realtime session with
two calls in one response (tests/omni/recording_text_tools.json) through the parser and the core.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.config import Settings
from agent.conversation import omni as c
from agent.realtime import protocol as p
from agent.status import AgentState
from agent.tools.builtin import SPECS

pytestmark = pytest.mark.unit

RECORDING = Path(__file__).with_name("recording_text_tools.json")


def asked(conv: c.OmniConversation, text: str, now: float) -> None:
    """A text turn the server confirmed (`conversation.item.created`), so its answer is asked for."""
    conv.ask(text, now, "ev_ask")
    conv.receive(ev({"type": "conversation.item.created", "item": {
        "id": "item_t", "type": "message", "role": "user", "status": "completed",
        "content": [{"type": "input_text", "text": text}]}}), now)


def ev(raw: dict[str, Any]) -> p.ServerEvent:
    return p.parse_event(json.dumps(raw))


def of(actions: list[c.Action], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def sent(actions: list[c.Action]) -> list[dict[str, Any]]:
    return [a.event for a in of(actions, c.Send)]


def conversation() -> c.OmniConversation:
    conv = c.OmniConversation()
    conv.session_opened(0.0, None)
    return conv


def created(rid: str) -> p.ServerEvent:
    return ev({"type": "response.created", "response": {"id": rid, "status": "in_progress"}})


def call_added(rid: str, call_id: str, name: str) -> p.ServerEvent:
    return ev({"type": "response.output_item.added", "response_id": rid, "output_index": 0,
               "item": {"id": "item_" + call_id, "type": "function_call", "status": "in_progress",
                        "call_id": call_id, "name": name, "arguments": ""}})


def args_delta(rid: str, call_id: str, delta: str) -> p.ServerEvent:
    return ev({"type": "response.function_call_arguments.delta", "response_id": rid,
               "call_id": call_id, "delta": delta})


def args_done(rid: str, call_id: str, name: str, arguments: str) -> p.ServerEvent:
    return ev({"type": "response.function_call_arguments.done", "response_id": rid,
               "call_id": call_id, "name": name, "arguments": arguments})


def done(rid: str, calls: tuple[tuple[str, str, str], ...] | list[tuple[str, str, str]] = (), status: str = "completed") -> p.ServerEvent:
    output = [{"type": "function_call", "call_id": cid, "name": n, "arguments": a} for cid, n, a in calls]
    return ev({"type": "response.done", "response": {"id": rid, "status": status, "output": output}})


def test_a_recorded_live_session_with_two_calls_replays_through_parser_and_core() -> None:
    """Both calls run once each with their arguments; the results go back as
    `function_call_output` items (the first exactly as the recorded client sent it) and ONE
    `response.create` follows, only after the response and both tools are done."""
    frames = json.loads(RECORDING.read_text(encoding="utf-8"))["frames"]
    conv = conversation()
    runs: list[c.RunTool] = []
    recorded_sends = [f["frame"] for f in frames if f["direction"] == "send"]
    for i, f in enumerate(frames):
        frame = f["frame"]
        if f["direction"] == "send":
            if frame["type"] == "conversation.item.create" and frame["item"]["type"] == "message":
                conv.ask(frame["item"]["content"][0]["text"], float(i), frame["event_id"])
            continue
        actions = conv.receive(p.parse_event(json.dumps(frame, ensure_ascii=False)), float(i))
        assert not of(actions, c.Fail) and not of(actions, c.Flush)
        runs += of(actions, c.RunTool)
        if frame["type"] == "response.done" and runs and frame["response"]["output"][0]["type"] == "function_call":
            assert sent(actions) == []  # nothing goes back before the tools answered
            break

    assert [(r.call_id, r.name, r.arguments) for r in runs] == [
        ("call_0a9e03efe5564d8f8ca954fc", "test_color", "{}"),
        ("call_0594ae59c3a4421aa7871d64", "test_shape", "{}")]
    assert conv.tool_calls.pending()

    first = conv.tool_result("call_0594ae59c3a4421aa7871d64", "方块")  # order of completion: any
    assert sent(first) == []
    answer = sent(conv.tool_result("call_0a9e03efe5564d8f8ca954fc", "蓝色"))
    recorded_output = next(f for f in recorded_sends if f["type"] == "conversation.item.create"
                           and f["item"]["type"] == "function_call_output")
    assert answer[0]["item"] == recorded_output["item"]  # call order, as the client sent it
    assert answer[1]["item"] == {"type": "function_call_output",
                                 "call_id": "call_0594ae59c3a4421aa7871d64", "output": "方块"}
    assert [e["type"] for e in answer[2:]] == ["response.create"]
    assert not conv.tool_calls.pending()


def test_a_call_is_assembled_from_deltas_and_runs_once_whichever_event_completes_it() -> None:
    conv = conversation()
    asked(conv, "set a timer", 1.0)
    conv.receive(created("r1"), 1.1)
    conv.receive(call_added("r1", "call_1", "timer"), 1.2)
    assert conv.receive(args_delta("r1", "call_1", '{"action": "set", '), 1.3) == []
    assert conv.receive(args_delta("r1", "call_1", '"seconds": 5}'), 1.3) == []
    # The item arrives done before the arguments' `.done` (or without it): the deltas count.
    item_done = ev({"type": "response.output_item.done", "response_id": "r1", "item": {
        "type": "function_call", "call_id": "call_1", "name": "timer", "arguments": ""}})
    actions = conv.receive(item_done, 1.4)
    assert of(actions, c.RunTool) == [c.RunTool("call_1", "timer", '{"action": "set", "seconds": 5}')]
    assert c.SetState(AgentState.THINKING, "calling timer") in actions
    assert of(conv.receive(args_done("r1", "call_1", "timer", '{"action": "set", "seconds": 5}'), 1.5),
              c.RunTool) == []
    assert of(conv.receive(done("r1", [("call_1", "timer", '{"action": "set", "seconds": 5}')]), 1.6),
              c.RunTool) == []


def test_calls_listed_only_in_response_done_still_run() -> None:
    conv = conversation()
    conv.receive(created("r1"), 1.0)
    actions = conv.receive(done("r1", [("call_9", "time", "{}")]), 1.1)
    assert of(actions, c.RunTool) == [c.RunTool("call_9", "time", "{}")]


def test_the_answer_to_the_results_finishes_the_same_turn() -> None:
    conv = conversation()
    asked(conv, "what time is it", 1.0)
    conv.receive(created("r1"), 1.1)
    conv.receive(args_done("r1", "call_1", "time", "{}"), 1.2)
    actions = conv.receive(done("r1"), 1.3)
    assert of(actions, c.FinishTurn) == [] and of(actions, c.CountTurn) == []  # not over yet
    assert sent(conv.tool_result("call_1", "It is 10:00.")) == [
        p.function_call_output("call_1", "It is 10:00."), p.response_create()]
    assert of(conv.receive(created("r2"), 1.5), c.Begin) == [c.Begin("r2")]
    conv.receive(ev({"type": "response.audio_transcript.delta", "response_id": "r2",
                     "delta": "It is ten."}), 1.6)
    finished = of(conv.receive(done("r2"), 2.0), c.FinishTurn)
    assert len(finished) == 1
    turn = finished[0].turn
    assert (turn.heard, turn.answered, turn.speech_end_at) == ("what time is it", "It is ten.", 1.0)


def test_barge_in_while_a_tool_runs_ends_the_turn_and_drops_the_late_result() -> None:
    conv = conversation()
    asked(conv, "set a timer for five seconds", 1.0)
    conv.receive(created("r1"), 1.1)
    conv.receive(args_done("r1", "call_1", "timer", '{"seconds": 5}'), 1.2)
    conv.receive(done("r1"), 1.3)
    actions = conv.receive(ev({"type": "input_audio_buffer.speech_started", "item_id": "u2"}), 1.4)
    assert of(actions, c.BargeIn) == [c.BargeIn()]
    finished = of(actions, c.FinishTurn)
    assert len(finished) == 1 and finished[0].turn.interrupted
    late = conv.tool_result("call_1", "The 5 second timer is set.")
    assert sent(late) == [] and of(late, c.Log)  # never sent, so never spoken


def test_barge_in_during_the_calling_response_cancels_it_and_its_calls() -> None:
    conv = conversation()
    asked(conv, "what time is it", 1.0)
    conv.receive(created("r1"), 1.1)
    conv.receive(call_added("r1", "call_1", "time"), 1.2)
    actions = conv.interrupt(output_busy=False)
    assert c.Flush() in actions
    assert p.response_cancel() in sent(conv.flushed(None))
    assert of(conv.receive(args_done("r1", "call_1", "time", "{}"), 1.3), c.RunTool) == []
    assert of(conv.receive(done("r1", [("call_1", "time", "{}")], status="cancelled"), 1.4),
              c.RunTool) == []
    assert not conv.tool_calls.pending()


def item_done(rid: str, call_id: str, name: str, arguments: str, status: str) -> p.ServerEvent:
    return ev({"type": "response.output_item.done", "response_id": rid, "item": {
        "type": "function_call", "status": status, "call_id": call_id, "name": name,
        "arguments": arguments}})


def failed(rid: str, calls: list[tuple[str, str, str]]) -> p.ServerEvent:
    output = [{"type": "function_call", "status": "incomplete", "call_id": cid, "name": n,
               "arguments": a} for cid, n, a in calls]
    return ev({"type": "response.done", "response": {"id": rid, "status": "failed", "output": output}})


def test_a_call_the_failed_response_left_incomplete_is_never_run_and_its_turn_fails_once() -> None:
    conv = conversation()
    asked(conv, "set a tea timer", 1.0)
    conv.receive(created("r1"), 1.1)
    conv.receive(call_added("r1", "call_1", "timer"), 1.2)
    conv.receive(args_delta("r1", "call_1", '{"action": "se'), 1.3)
    cut = conv.receive(item_done("r1", "call_1", "timer", '{"action": "se', "incomplete"), 1.4)
    assert of(cut, c.RunTool) == [], "half the arguments: not a call to make"
    actions = conv.receive(failed("r1", [("call_1", "timer", '{"action": "se')]), 1.5)
    assert of(actions, c.RunTool) == [] and sent(actions) == []
    assert of(actions, c.ErrorEarcon) == [c.ErrorEarcon()] and len(of(actions, c.Warn)) == 1
    (finish,) = of(actions, c.FinishTurn)
    assert finish.turn.error and finish.turn.interrupted
    assert not conv.tool_calls.pending() and not conv.response_in_progress


def test_a_call_started_before_its_response_failed_has_its_result_dropped_not_sent() -> None:
    # The arguments completed (the call ran at once), then the service failed the response.
    conv = conversation()
    asked(conv, "set a tea timer", 1.0)
    conv.receive(created("r1"), 1.1)
    ran = conv.receive(args_done("r1", "call_1", "timer", '{"action": "set", "seconds": 6}'), 1.2)
    assert of(ran, c.RunTool) == [c.RunTool("call_1", "timer", '{"action": "set", "seconds": 6}')]
    actions = conv.receive(failed("r1", [("call_1", "timer", '{"action": "set", "seconds": 6}')]), 1.3)
    assert of(actions, c.ErrorEarcon) == [c.ErrorEarcon()] and len(of(actions, c.FinishTurn)) == 1
    assert any("timer ran, its result will not be spoken" in a.message for a in of(actions, c.Log))
    late = conv.tool_result("call_1", "The tea timer is set for 6 seconds.")
    assert sent(late) == [], "nothing goes into the dead response, and no answer is asked for"
    assert of(late, c.ErrorEarcon) == [] and of(late, c.FinishTurn) == []
    assert conv.rotation_due(9.0, max_age_s=1.0, output_busy=False, output_quiet_since=0.0), (
        "no call is left waiting")


def test_a_new_session_forgets_the_calls_of_the_old_one() -> None:
    conv = conversation()
    conv.receive(created("r1"), 1.0)
    conv.receive(args_done("r1", "call_1", "time", "{}"), 1.1)
    conv.receive(done("r1"), 1.2)
    conv.session_opened(2.0, None)
    assert sent(conv.tool_result("call_1", "It is 10:00.")) == []


def test_session_update_declares_tools_in_the_shape_the_live_service_echoed() -> None:
    event = p.session_update(Settings().omni, "Tina", tools=[SPECS["time"].as_chat()])
    assert event["session"]["tools"] == [{"type": "function", "function": {
        "name": "time", "description": SPECS["time"].description,
        "parameters": {"type": "object", "properties": {}}}}]
    assert "tool_choice" not in event["session"]
    assert "tools" not in p.session_update(Settings().omni, "Tina")["session"]


def test_barge_in_drops_calls_even_of_a_response_no_turn_was_bound_to() -> None:
    conv = conversation()  # as in the recording: no response.created for the calling response
    conv.receive(args_done("r9", "call_1", "time", "{}"), 1.0)
    conv.receive(done("r9"), 1.1)
    actions = conv.interrupt(output_busy=False)
    assert of(actions, c.BargeIn) == [c.BargeIn()] and of(actions, c.FinishTurn) == []
    assert sent(conv.tool_result("call_1", "It is 10:00.")) == []
