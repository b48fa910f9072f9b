"""What was asked of a realtime session against what the server reports (audit R2, R3, R9).

Pure: `verify_session` on session objects, `SessionCheck` on parsed server events.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from agent.config import OmniSettings
from agent.realtime import protocol as p
from agent.realtime.verify import Mismatch, SessionCheck, describe_turn_detection, verify_session

pytestmark = pytest.mark.unit

ASKED = p.session_update(OmniSettings(), "Tina")["session"]


def ev(raw: dict[str, Any]) -> p.ServerEvent:
    return p.parse_event(json.dumps(raw))


def echoed(**changes: Any) -> dict[str, Any]:
    return {**ASKED, "id": "sess_1", "create_response": True, **changes}


def test_a_faithful_echo_has_no_mismatch_and_legacy_pcm_names_are_the_same_format() -> None:
    assert verify_session(ASKED, echoed()) == []
    assert verify_session(ASKED, echoed(input_audio_format="pcm16", output_audio_format="pcm24")) == []
    td = {**ASKED["turn_detection"], "create_response": True, "interrupt_response": True}
    assert verify_session(ASKED, echoed(turn_detection=td)) == []


def test_each_differing_field_is_named_with_what_was_asked_and_what_runs() -> None:
    got = echoed(voice="Ethan", output_audio_format="g711_ulaw",
                 turn_detection={**ASKED["turn_detection"], "type": "semantic_vad"})
    assert verify_session(ASKED, got) == [
        Mismatch("voice", "Tina", "Ethan"),
        Mismatch("output_audio_format", "pcm", "g711_ulaw"),
        Mismatch("turn_detection.type", "server_vad", "semantic_vad"),
    ]
    assert Mismatch("voice", "Tina", "Ethan").describe() == "voice: asked 'Tina', the server runs with 'Ethan'"


def test_a_voice_the_server_does_not_echo_is_a_mismatch_other_missing_fields_are_not_judged() -> None:
    got = {k: v for k, v in echoed().items() if k not in ("voice", "input_audio_format")}
    assert verify_session(ASKED, got) == [Mismatch("voice", "Tina", None)]
    assert "(not echoed)" in verify_session(ASKED, got)[0].describe()


def test_an_idle_timeout_we_did_not_ask_for_is_reported_and_manual_mode_must_stay_manual() -> None:
    td = {**ASKED["turn_detection"], "idle_timeout_ms": 10000}
    assert verify_session(ASKED, echoed(turn_detection=td)) == [
        Mismatch("turn_detection.idle_timeout_ms", None, 10000)]
    manual = {**ASKED, "turn_detection": None}
    assert verify_session(manual, echoed()) == [Mismatch("turn_detection", None, "server_vad")]
    assert verify_session(manual, echoed(turn_detection=None)) == []


def test_session_created_is_logged_with_its_turn_detection_including_idle_timeout() -> None:
    check = SessionCheck("realtime session")
    check.start(p.session_update(OmniSettings(), None))
    created = ev({"type": "session.created", "session": {
        "id": "s", "model": "qwen3.5-omni-flash-realtime", "voice": "Tina",
        "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 800}}})
    consumed, reports = check.receive(created)
    assert not consumed and [r.level for r in reports] == [logging.INFO]
    assert "no idle_timeout_ms (the model never speaks unprompted)" in reports[0].message
    assert "qwen3.5-omni-flash-realtime, voice Tina" in reports[0].message
    idle = describe_turn_detection({"turn_detection": {"type": "server_vad", "idle_timeout_ms": 9000}})
    assert "idle_timeout_ms 9000 (the model speaks by itself" in idle


def test_a_refused_update_is_surfaced_naming_the_field_and_what_the_session_runs_with() -> None:
    check = SessionCheck("realtime session")
    sent = check.start(p.session_update(OmniSettings(), "Nobody"))
    check.receive(ev({"type": "session.created", "session": {"id": "s", "voice": "Tina"}}))
    error = ev({"type": "error", "error": {"type": "invalid_request_error", "code": "invalid_value",
                                          "message": "Voice 'Nobody' is not supported.",
                                          "param": "session.voice", "event_id": sent["event_id"]}})
    consumed, reports = check.receive(error)
    assert consumed and len(reports) == 1 and reports[0].surface
    assert reports[0].level == logging.WARNING
    assert reports[0].message == (
        "realtime session: session.update refused, field voice: Voice 'Nobody' is not supported.; "
        "the session runs with voice = 'Tina' instead")


def test_an_error_without_event_id_or_field_while_an_update_waits_is_taken_as_its_refusal() -> None:
    check = SessionCheck("realtime session")
    check.start(p.session_update(OmniSettings(), None))
    bare = ev({"type": "error", "error": {"type": "invalid_request_error", "message": "bad session"}})
    consumed, reports = check.receive(bare)
    assert consumed and "session.update refused, field session: bad session; the session runs " \
        "with its previous configuration instead" in reports[0].message


def test_an_error_that_is_not_about_our_update_is_left_to_the_caller() -> None:
    check = SessionCheck("realtime session")
    check.start(p.session_update(OmniSettings(), None))
    check.receive(ev({"type": "session.updated", "session": echoed()}))  # nothing waits any more
    other = ev({"type": "error", "error": {"type": "invalid_request_error", "message": "no response",
                                          "param": None}})
    assert check.receive(other) == (False, [])
    item = ev({"type": "error", "error": {"type": "invalid_request_error", "message": "bad item",
                                         "param": "item.content"}})
    check.sent(p.session_update(OmniSettings(), "Ethan"))
    assert check.receive(item) == (False, [])


def test_a_mid_session_voice_change_the_server_ignores_is_applied_at_the_next_rotation() -> None:
    check = SessionCheck("realtime session")
    check.start(p.session_update(OmniSettings(), "Tina"))
    check.receive(ev({"type": "session.updated", "session": echoed()}))
    check.sent(p.session_update(OmniSettings(), "Ethan"))
    consumed, reports = check.receive(ev({"type": "session.updated", "session": echoed()}))
    assert not consumed and [r.surface for r in reports] == [True]
    assert reports[0].message.endswith(
        "voice: asked 'Ethan', the server runs with 'Tina'; voice 'Ethan' will be used from the "
        "next session (at the next rotation)")
