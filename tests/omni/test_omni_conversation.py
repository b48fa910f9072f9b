"""Omni mode's conversation rules, driven through the pure core with event sequences.

No sockets, no player, no clock: `now` and the output's state are arguments, and each test
reads the actions `OmniConversation` asks the driver (agent/omni.py) to execute.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from agent.conversation import omni as c
from agent.realtime import protocol as p
from agent.status import AgentState

pytestmark = pytest.mark.unit

PCM = b"\x01\x00\x02\x00" * 10
B64 = base64.b64encode(PCM).decode()
MAX_AGE_S = 600.0


def ev(raw: dict[str, Any]) -> p.ServerEvent:
    """Through the parser, as the connection hands events over."""
    return p.parse_event(json.dumps(raw))


def speech_started() -> p.ServerEvent:
    return ev({"type": "input_audio_buffer.speech_started", "item_id": "item_u", "audio_start_ms": 0})


def speech_stopped() -> p.ServerEvent:
    return ev({"type": "input_audio_buffer.speech_stopped", "item_id": "item_u", "audio_end_ms": 900})


def heard(text: str) -> p.ServerEvent:
    return ev({"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_u",
               "transcript": text})


def created(rid: str) -> p.ServerEvent:
    return ev({"type": "response.created", "response": {"id": rid, "status": "in_progress"}})


def audio(rid: str) -> p.ServerEvent:
    return ev({"type": "response.audio.delta", "response_id": rid, "delta": B64})


def said(rid: str, text: str) -> p.ServerEvent:
    return ev({"type": "response.audio_transcript.delta", "response_id": rid, "delta": text})


def done(rid: str, status: str = "completed") -> p.ServerEvent:
    return ev({"type": "response.done", "response": {"id": rid, "status": status, "output": []}})


def conversation(**kw: Any) -> c.OmniConversation:
    conv = c.OmniConversation(**kw)
    conv.session_opened(0.0, None)
    return conv


def answering(conv: c.OmniConversation, rid: str = "r1", at: float = 10.0) -> None:
    """The user asked something at `at` and the answer `rid` is streaming."""
    for event in (speech_started(), speech_stopped(), heard("What's the weather?"), created(rid),
                  audio(rid), said(rid, "It is ")):
        conv.receive(event, at)


def of(actions: list[c.Action], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


# --- a turn, start to end ----------------------------------------------------------------------


def test_a_spoken_turn_plays_the_answer_and_is_published_with_its_latency() -> None:
    conv = conversation()
    assert conv.receive(speech_started(), 9.0) == [c.SetState(AgentState.LISTENING)]
    assert conv.receive(speech_stopped(), 10.0) == [c.SetState(AgentState.THINKING)]
    assert conv.receive(heard("What's the weather?"), 10.2) == [c.Caption("user", "What's the weather?", True)]
    assert conv.receive(created("r1"), 10.3) == [c.Begin("r1")]
    assert conv.receive(audio("r1"), 10.4) == [c.Feed("r1", PCM), c.SetState(AgentState.SPEAKING)]
    assert conv.receive(said("r1", "It is "), 10.4) == [c.Caption("assistant", "It is ", False)]
    assert conv.receive(said("r1", "sunny."), 10.5) == [c.Caption("assistant", "It is sunny.", False)]
    actions = conv.receive(done("r1"), 11.0)
    turn = of(actions, c.FinishTurn)[0].turn
    assert actions == [c.End("r1"), c.ClearErrorIf(None), c.CountTurn(), c.FinishTurn(turn, "r1")]
    assert (turn.heard, turn.answered, turn.response_id) == ("What's the weather?", "It is sunny.", "r1")
    assert not turn.interrupted and conv.current is None

    # Latency: end of user speech (10.0) → first audible sample of the answer (10.85).
    finished = conv.output_finished(turn, found=True, first_audible=10.85)
    assert finished == [c.RecordLatency(pytest.approx(850.0)),
                        c.SetState(AgentState.LISTENING, only_from=c.SERVING_STATES),
                        c.PublishTurn(turn)]
    assert turn.latency_ms == pytest.approx(850.0)


def test_no_latency_is_recorded_when_the_answer_never_became_audible() -> None:
    conv = conversation()
    answering(conv)
    turn = of(conv.receive(done("r1"), 11.0), c.FinishTurn)[0].turn
    assert of(conv.output_finished(turn, found=True, first_audible=None), c.RecordLatency) == []
    assert of(conv.output_finished(turn, found=False, interrupted=True), c.RecordLatency) == []
    assert turn.latency_ms is None and not turn.interrupted  # an unknown response says nothing


def test_the_turn_is_published_without_going_back_to_listening_while_the_user_speaks() -> None:
    conv = conversation()
    answering(conv)
    turn = of(conv.receive(done("r1"), 11.0), c.FinishTurn)[0].turn
    conv.receive(speech_started(), 11.5)
    assert conv.output_finished(turn, found=True, first_audible=10.5)[-2:] == [
        c.RecordLatency(pytest.approx(500.0)), c.PublishTurn(turn)]


# --- barge-in ------------------------------------------------------------------------------------


def test_speech_while_an_answer_streams_flushes_then_cancels_and_drops_it() -> None:
    conv = conversation()
    answering(conv)
    assert conv.receive(speech_started(), 12.0, output_busy=True) == [
        c.SetState(AgentState.LISTENING), c.Flush()]
    assert conv.flushed("r1") == [c.BargeIn(), c.Send(p.response_cancel(), best_effort=True),
                                  c.RecordHeard("r1")]
    assert conv.by_response["r1"].interrupted
    assert conv.last_speech_started_at == 12.0


def test_late_audio_and_text_of_a_cancelled_response_are_dropped() -> None:
    conv = conversation()
    answering(conv)
    conv.receive(speech_started(), 12.0, output_busy=True)
    conv.flushed("r1")
    assert conv.receive(audio("r1"), 12.1) == []  # in flight when we cancelled: never played
    assert conv.receive(said("r1", "and warm."), 12.1) == []
    actions = conv.receive(done("r1", "cancelled"), 12.2)
    turn = of(actions, c.FinishTurn)[0].turn
    assert turn.answered == "It is " and turn.interrupted
    assert of(actions, c.ClearErrorIf) == []  # a cancelled answer proves nothing
    # The next answer plays.
    conv.receive(speech_stopped(), 13.0)
    conv.receive(created("r2"), 13.2)
    assert conv.receive(audio("r2"), 13.3) == [c.Feed("r2", PCM), c.SetState(AgentState.SPEAKING)]


def test_speech_with_nothing_playing_is_not_a_barge_in() -> None:
    conv = conversation()
    assert conv.receive(speech_started(), 1.0, output_busy=False) == [c.SetState(AgentState.LISTENING)]


def test_speech_while_a_finished_answer_still_plays_out_flushes_it_without_a_cancel() -> None:
    """The server is done (nothing to cancel) but the speaker is not: silence it, count it."""
    conv = conversation()
    answering(conv)
    turn = of(conv.receive(done("r1"), 11.0), c.FinishTurn)[0].turn
    assert conv.receive(speech_started(), 11.5, output_busy=True)[-1] == c.Flush()
    assert conv.flushed("r1") == [c.BargeIn(), c.RecordHeard("r1")]
    assert conv.receive(audio("r1"), 11.6) == []
    # The player reports the flush when the turn leaves the speaker.
    assert of(conv.output_finished(turn, found=True, interrupted=True), c.PublishTurn)
    assert turn.interrupted


def test_an_interrupt_from_software_is_a_barge_in_without_user_speech() -> None:
    conv = conversation()
    answering(conv)
    assert conv.interrupt(output_busy=True) == [c.SetState(AgentState.LISTENING), c.Flush()]
    # The player had not started the answer yet (nothing flushed): the active response counts.
    assert of(conv.flushed(None), c.RecordHeard) == [c.RecordHeard("r1")]
    assert conv.last_speech_started_at == 10.0  # from the spoken question, not the interrupt


def test_heard_ms_of_an_interrupted_answer_is_reported_rounded() -> None:
    conv = conversation()
    assert conv.heard("r1", 812.345) == [
        c.SetHeardMs(812.3), c.Log("barge-in: the user interrupted after 812 ms of the answer")]


def test_a_response_done_that_is_not_completed_marks_the_turn_interrupted() -> None:
    conv = conversation()
    answering(conv)
    for status in ("cancelled", "incomplete", "failed"):
        conv.receive(created(f"r-{status}"), 11.0)
        turn = of(conv.receive(done(f"r-{status}", status), 11.1), c.FinishTurn)[0].turn
        assert turn.interrupted, status


# --- transcripts and errors ----------------------------------------------------------------------


def test_transcripts_assemble_from_deltas_and_the_final_transcript_wins() -> None:
    conv = conversation(log_transcripts=True)
    answering(conv)
    conv.receive(said("r1", "sunny"), 10.5)
    assert conv.by_response["r1"].answered == "It is sunny"
    assert conv.receive(ev({"type": "response.audio_transcript.done", "response_id": "r1",
                            "transcript": "It is sunny."}), 10.6) == [c.Caption("assistant", "It is sunny.", True)]
    assert of(conv.receive(done("r1"), 10.7), c.Log) == [c.Log("answered: It is sunny.")]
    assert conv.receive(heard("And tomorrow?"), 11.0) == [c.Log("heard: And tomorrow?"),
                                                          c.Caption("user", "And tomorrow?", True)]
    assert conv.current is not None and conv.current.heard == "And tomorrow?"


def test_a_text_only_answer_is_taken_from_response_done() -> None:
    conv = conversation()
    conv.receive(speech_stopped(), 1.0)
    conv.receive(created("r1"), 1.1)
    actions = conv.receive(ev({"type": "response.done", "response": {"id": "r1", "status": "completed",
        "output": [{"type": "message", "role": "assistant",
                    "content": [{"type": "text", "text": "Noted."}]}]}}), 1.2)
    assert of(actions, c.FinishTurn)[0].turn.answered == "Noted."


def test_a_fatal_server_error_ends_the_session_and_a_recoverable_one_is_tolerated() -> None:
    conv = conversation()
    fatal = ev({"type": "error", "error": {"type": "server_error", "code": "boom", "message": "down"}})
    assert conv.receive(fatal, 1.0) == [c.Fail("server error boom: down")]
    raced = ev({"type": "error", "error": {"type": "invalid_request_error", "code": "",
                                           "message": "no active response"}})
    assert conv.receive(raced, 1.0) == [
        c.Log("server error invalid_request_error: no active response (tolerated)")]


# --- ask ------------------------------------------------------------------------------------------


def item_created(text: str = "Tell me a joke", role: str = "user") -> p.ServerEvent:
    return ev({"type": "conversation.item.created", "item": {
        "id": "item_t", "type": "message", "role": role, "status": "completed",
        "content": [{"type": "input_text", "text": text}]}})


def refused(event_id: str | None, error_type: str = "invalid_request_error") -> p.ServerEvent:
    err = {"type": error_type, "code": "invalid_value", "param": "item.content[0].type",
           "message": "Invalid value: 'input_text'."}
    return ev({"type": "error", "error": {**err, **({"event_id": event_id} if event_id else {})}})


def test_ask_sends_the_text_item_and_requests_the_answer_only_once_the_server_confirmed_it() -> None:
    conv = conversation()
    assert conv.ask("Tell me a joke", 11.0, "ev1") == [c.Send(p.user_text("Tell me a joke", "ev1"))]
    assert conv.current is None  # no turn before the server took the text
    assert conv.receive(item_created(), 11.1) == [c.Caption("user", "Tell me a joke", True),
                                                  c.Send(p.response_create()), c.AskSettled("ev1", None)]
    asked = conv.current
    assert asked is not None and (asked.heard, asked.speech_end_at) == ("Tell me a joke", 11.0)
    assert conv.receive(item_created(), 11.2) == []  # a second confirmation asks for nothing


def test_a_refused_ask_fails_with_the_servers_message_and_no_answer_is_requested() -> None:
    conv = conversation()
    conv.ask("Tell me a joke", 11.0, "ev1")
    actions = conv.receive(refused("ev1"), 11.1)
    why = "the service refused the text turn: Invalid value: 'input_text'."
    assert actions == [c.Warn(f"ask 'Tell me a joke': {why} (no response requested)"),
                       c.AskSettled("ev1", why)]
    assert not of(actions, c.Send) and conv.current is None
    assert conv.receive(item_created(), 11.2) == []  # nothing pending any more


def test_a_request_error_without_event_id_while_an_ask_waits_fails_that_ask() -> None:
    conv = conversation()
    conv.ask("Tell me a joke", 11.0, "ev1")
    assert of(conv.receive(refused(None), 11.1), c.AskSettled) == [
        c.AskSettled("ev1", "the service refused the text turn: Invalid value: 'input_text'.")]


def test_an_error_naming_another_event_leaves_the_ask_waiting() -> None:
    conv = conversation()
    conv.ask("Tell me a joke", 11.0, "ev1")
    assert of(conv.receive(refused("ev_other"), 11.1), c.AskSettled) == []
    assert of(conv.receive(item_created(), 11.2), c.AskSettled) == [c.AskSettled("ev1", None)]


def test_an_unconfirmed_ask_is_answered_anyway_and_a_late_confirmation_asks_for_nothing() -> None:
    conv = conversation()
    conv.ask("Tell me a joke", 11.0, "ev1")
    actions = conv.ask_expired("ev1", 3.0)
    assert of(actions, c.AskSettled) == [c.AskSettled("ev1", None)]
    assert [a.event["type"] for a in of(actions, c.Send)] == ["response.create"]
    assert "did not confirm" in of(actions, c.Log)[0].message
    assert conv.ask_expired("ev1", 3.0) == []
    assert conv.receive(item_created(), 14.5) == []


def test_a_spoken_users_audio_item_does_not_confirm_a_pending_ask() -> None:
    conv = conversation()
    conv.ask("Tell me a joke", 11.0, "ev1")
    audio_item = ev({"type": "conversation.item.created", "item": {
        "id": "item_a", "type": "message", "role": "user", "content": [{"type": "input_audio"}]}})
    assert conv.receive(audio_item, 11.1) == []


def test_a_fatal_error_or_a_lost_session_fails_the_pending_ask() -> None:
    conv = conversation()
    conv.ask("Tell me a joke", 11.0, "ev1")
    actions = conv.receive(refused(None, error_type="server_error"), 11.1)
    assert of(actions, c.AskSettled)[0].event_id == "ev1" and of(actions, c.Fail)
    conv.ask("Tell me a joke", 12.0, "ev2")
    assert of(conv.session_lost(), c.AskSettled) == [c.AskSettled("ev2", "the realtime session was lost")]


def test_ask_while_an_answer_plays_does_not_cut_it_off_and_the_next_answer_follows() -> None:
    conv = conversation()
    answering(conv)
    first = conv.by_response["r1"]
    conv.ask("Tell me a joke", 11.0, "ev1")
    conv.receive(item_created(), 11.05)
    asked = conv.current
    assert asked is not None and asked is not first
    assert (asked.heard, asked.speech_end_at) == ("Tell me a joke", 11.0)
    # The old answer keeps streaming into its own turn; the new one begins after it.
    conv.receive(said("r1", "sunny."), 11.1)
    assert conv.receive(created("r2"), 11.2) == [c.Begin("r2")]
    conv.receive(said("r2", "Why did"), 11.3)
    assert (first.answered, asked.answered) == ("It is sunny.", "Why did")
    assert conv.by_response["r2"] is asked and not first.interrupted


# --- the session: rotation, loss, announcements -------------------------------------------------


def test_rotation_waits_for_age_and_a_quiet_moment() -> None:
    conv = c.OmniConversation()
    conv.session_opened(100.0, None)

    def due(now: float, *, busy: bool = False, quiet_since: float = 0.0) -> bool:
        return conv.rotation_due(now, max_age_s=MAX_AGE_S, output_busy=busy, output_quiet_since=quiet_since)

    end = 100.0 + MAX_AGE_S
    assert not due(end - 1)  # too young
    assert due(end)
    assert not due(end, busy=True)  # the answer is still audible
    assert not due(end, quiet_since=end - 1.5)  # within the echo tail
    conv.receive(speech_started(), end)
    assert not due(end + 5)  # the user speaks
    conv.receive(speech_stopped(), end + 5)
    conv.receive(created("r1"), end + 6)
    assert not due(end + 9)  # an answer is in progress
    conv.receive(done("r1"), end + 9)
    assert due(end + 9, quiet_since=end + 6.9)


def test_a_lost_session_ends_the_streaming_answer_and_the_next_one_starts_clean() -> None:
    conv = conversation()
    assert conv.session_lost() == []
    answering(conv)
    conv.receive(speech_started(), 12.0, output_busy=True)
    conv.flushed("r1")
    lost = conv.session_lost()
    assert lost[0] == c.End("r1") and not of(lost, c.ErrorEarcon)  # the user had cut it off
    assert [f.turn.interrupted for f in of(lost, c.FinishTurn)] == [True]  # published, not leaked
    assert conv.session_lost() == []  # the loss is reported again while reconnecting: nothing more
    assert conv.session_opened(20.0, "realtime session lost: boom") == [
        c.SetState(AgentState.LISTENING, "connected")]
    assert not conv.response_in_progress and not conv.user_speaking
    assert conv.receive(audio("r1"), 20.1) == []  # dropped ids survive the reconnect
    conv.receive(created("r2"), 20.2)
    assert c.ClearErrorIf("realtime session lost: boom") in conv.receive(done("r2"), 20.3)


def test_announcements_wait_for_a_quiet_moment() -> None:
    conv = conversation()
    assert conv.quiet_for_announcement(None)
    assert not conv.quiet_for_announcement("r0")  # an Omni answer is still in the player
    answering(conv)
    assert not conv.quiet_for_announcement(None)
