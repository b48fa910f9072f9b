"""Omni turns the service or the session ends (not the user): the rules for the error earcon.

The same rule as pipeline mode: a turn that fails plays the error earcon once, after whatever of
its answer was already queued; a barge-in, and an `ask` the service refused (its control reply
is `ok:false`), never do. Driven through the pure core, like tests/omni/test_omni_conversation.py.
"""

from __future__ import annotations

import pytest

from agent.conversation import omni as c
from agent.status import AgentState
from tests.omni.test_omni_conversation import (
    answering,
    conversation,
    created,
    done,
    ev,
    heard,
    item_created,
    of,
    speech_started,
    speech_stopped,
)
from tests.omni.test_omni_tools import args_done

pytestmark = pytest.mark.unit


def earcons(actions: list[c.Action]) -> int:
    return len(of(actions, c.ErrorEarcon))


def test_a_response_the_service_failed_ends_its_turn_with_the_error_earcon_after_its_audio() -> None:
    conv = conversation()
    answering(conv)
    actions = conv.receive(done("r1", status="failed"), 11.0)
    assert actions[0] == c.End("r1") and earcons(actions) == 1
    assert actions.index(c.End("r1")) < actions.index(c.ErrorEarcon())  # queued after the answer
    [finish] = of(actions, c.FinishTurn)
    assert finish.turn.interrupted and finish.turn.error == "the service failed the response"


def test_a_failed_response_says_why_in_the_status_until_an_answer_completes() -> None:
    conv = conversation()
    answering(conv)
    details = {"type": "failed", "error": {"type": "server_error", "code": "internal_error",
                                           "message": "Model overloaded."}}
    failed = conv.receive(ev({"type": "response.done", "response": {
        "id": "r1", "status": "failed", "status_details": details, "output": []}}), 11.0)
    why = "the service failed the response (server_error internal_error: Model overloaded.)"
    assert of(failed, c.Warn) == [c.Warn(why)]  # status `last_error`, and a WARNING line
    assert of(failed, c.FinishTurn)[0].turn.error == why
    assert of(failed, c.ClearErrorIf) == []
    answering(conv, "r2", 20.0)
    ok = conv.receive(done("r2"), 21.0)
    assert c.ClearErrorIf(why) in ok, "the next answer proves the service answers again"
    answering(conv, "r3", 30.0)
    assert of(conv.receive(done("r3"), 31.0), c.ClearErrorIf) == [c.ClearErrorIf(None)]


def test_unknown_status_details_still_fail_the_turn_plainly() -> None:
    for details in (None, "overloaded", {"error": "x"}, {"reason": 3}):
        conv = conversation()
        answering(conv)
        actions = conv.receive(ev({"type": "response.done", "response": {
            "id": "r1", "status": "failed", "status_details": details}}), 11.0)
        assert of(actions, c.Warn) == [c.Warn("the service failed the response")], details


def test_a_completed_or_cut_off_answer_plays_no_error_earcon() -> None:
    conv = conversation()
    answering(conv)
    assert earcons(conv.receive(done("r1"), 11.0)) == 0
    answering(conv, "r2", 20.0)
    barge = conv.receive(speech_started(), 21.0, output_busy=True)
    barge += conv.flushed("r2")
    barge += conv.receive(done("r2", status="cancelled"), 21.1)
    assert earcons(barge) == 0 and of(barge, c.BargeIn)


def test_a_session_lost_mid_answer_fails_the_turn_once() -> None:
    conv = conversation()
    answering(conv)
    lost = conv.session_lost()
    assert lost[0] == c.End("r1") and earcons(lost) == 1
    [finish] = of(lost, c.FinishTurn)
    assert finish.turn.heard == "What's the weather?" and finish.turn.interrupted
    assert of(lost, c.CountTurn) == [c.CountTurn()]
    assert conv.session_lost() == []  # reported again while reconnecting: nothing more to fail
    assert not conv.response_in_progress
    # It finishes while the status says "reconnecting", which it must not hide.
    shown = of(conv.output_finished(finish.turn, found=True), c.SetState)
    assert [s.only_from for s in shown] == [c.SERVING_STATES]
    assert AgentState.RECONNECTING not in c.SERVING_STATES and AgentState.ERROR not in c.SERVING_STATES


def test_a_session_lost_while_a_tool_runs_fails_the_turn_and_forgets_the_call() -> None:
    conv = conversation()
    answering(conv)
    conv.receive(args_done("r1", "call_1", "time", "{}"), 10.5)
    conv.receive(done("r1"), 10.6)  # the call runs; its turn waits for the answer to the result
    lost = conv.session_lost()
    assert earcons(lost) == 1 and len(of(lost, c.FinishTurn)) == 1
    assert not conv.tool_calls.pending()
    assert of(conv.tool_result("call_1", "It is ten."), c.Send) == []


def test_a_session_lost_after_an_ask_was_confirmed_fails_its_turn() -> None:
    conv = conversation()
    conv.ask("Tell me a joke", 11.0, "ev1")
    conv.receive(item_created(), 11.1)  # the answer is asked for; none began yet
    lost = conv.session_lost()
    assert earcons(lost) == 1 and [f.turn.heard for f in of(lost, c.FinishTurn)] == ["Tell me a joke"]


def test_an_ask_still_unconfirmed_when_the_session_is_lost_fails_its_reply_not_a_turn() -> None:
    conv = conversation()
    conv.ask("Tell me a joke", 11.0, "ev1")
    lost = conv.session_lost()
    assert of(lost, c.AskSettled) == [c.AskSettled("ev1", "the realtime session was lost")]
    assert earcons(lost) == 0 and of(lost, c.FinishTurn) == []


def test_a_session_lost_while_idle_or_before_the_server_answered_plays_nothing() -> None:
    conv = conversation()
    assert conv.session_lost() == []
    conv.receive(speech_started(), 1.0)
    conv.receive(speech_stopped(), 2.0)
    conv.receive(heard("mm"), 2.1)  # the server's VAD may never answer this (noise)
    assert earcons(conv.session_lost()) == 0


def test_a_session_is_not_rotated_while_a_tool_runs() -> None:
    conv = conversation()
    conv.receive(created("r1"), 1.0)
    conv.receive(args_done("r1", "call_1", "time", "{}"), 1.1)
    conv.receive(done("r1"), 1.2)
    assert not conv.rotation_due(900.0, max_age_s=600.0, output_busy=False, output_quiet_since=0.0)
    conv.tool_result("call_1", "It is ten.")
    conv.receive(created("r2"), 900.1)
    conv.receive(done("r2"), 900.2)
    assert conv.rotation_due(905.0, max_age_s=600.0, output_busy=False, output_quiet_since=900.0)


def test_an_answer_asked_for_and_refused_with_an_error_does_not_hold_off_rotation() -> None:
    conv = conversation()
    conv.commit(1.0)  # push-to-talk: commit and ask for the answer
    assert not conv.rotation_due(900.0, max_age_s=600.0, output_busy=False, output_quiet_since=0.0)
    conv.receive(ev({"type": "error", "error": {"type": "invalid_request_error",
                                                 "code": "input_audio_buffer_commit_empty",
                                                 "message": "buffer too small"}}), 1.1)
    assert conv.rotation_due(900.0, max_age_s=600.0, output_busy=False, output_quiet_since=0.0)
