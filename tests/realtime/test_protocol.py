"""The realtime protocol core and omni's response registry, driven by recorded event sequences.

No sockets; the registry (`agent.conversation.omni.ResponseRegistry`) is what the server's events
say about the session and its responses.
"""

from __future__ import annotations

import base64
import json

import pytest

from agent.config import OmniSettings, TurnDetection
from agent.conversation.omni import ResponseRegistry
from agent.realtime import protocol as p

pytestmark = pytest.mark.unit

PCM = b"\x01\x00\x02\x00" * 10
B64 = base64.b64encode(PCM).decode()

# One server_vad turn as the documentation orders it (reference §5.5), shortened.
TURN = [
    {"type": "session.created", "session": {"id": "sess_1", "voice": "Tina", "input_audio_format": "pcm16"}},
    {"type": "session.updated", "session": {"voice": "qwen-omni-vc-kiosk-voice-1", "output_audio_format": "pcm24"}},
    {"type": "input_audio_buffer.speech_started", "audio_start_ms": 640, "item_id": "item_u1"},
    {"type": "conversation.item.input_audio_transcription.delta", "item_id": "item_u1", "text": "What's the", "stash": " weather"},
    {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 2100, "item_id": "item_u1"},
    {"type": "input_audio_buffer.committed", "item_id": "item_u1"},
    {"type": "conversation.item.created", "item": {"id": "item_u1", "role": "user"}},
    {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}},
    {"type": "response.output_item.added", "response_id": "resp_1", "item": {"id": "item_a1"}},
    {"type": "response.audio_transcript.delta", "response_id": "resp_1", "delta": "It is sunny."},
    {"type": "response.audio.delta", "response_id": "resp_1", "item_id": "item_a1", "delta": B64},
    {"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_u1", "transcript": "What's the weather?"},
    {"type": "response.audio_transcript.done", "response_id": "resp_1", "transcript": "It is sunny."},
    {"type": "response.audio.done", "response_id": "resp_1"},
    {"type": "response.done", "response": {"id": "resp_1", "status": "completed", "output": []}},
]


def feed(state: ResponseRegistry, events: list[dict]) -> list[p.ServerEvent]:
    return [state.receive(p.parse_event(json.dumps(e))) for e in events]


def test_a_recorded_turn_parses_into_typed_events_and_ends_idle() -> None:
    state = ResponseRegistry()
    events = feed(state, TURN)
    kinds = [type(e).__name__ for e in events]
    assert kinds[:6] == ["SessionCreated", "SessionUpdated", "SpeechStarted", "TranscriptionDelta",
                         "SpeechStopped", "Committed"]
    assert isinstance(events[6], p.ItemCreated) and events[6].role == "user"  # confirms a user item
    audio = [e for e in events if isinstance(e, p.AudioDelta)]
    assert audio[0].pcm == PCM and audio[0].response_id == "resp_1"
    assert events[3].text == "What's the weather"  # text + stash is the live preview
    assert state.session_id == "sess_1"
    assert state.voice == "qwen-omni-vc-kiosk-voice-1"
    assert not state.response_in_progress


def test_response_is_in_progress_between_created_and_done() -> None:
    state = ResponseRegistry()
    feed(state, TURN[:8])
    assert state.active_response == "resp_1"
    assert state.response_in_progress


def test_barge_in_cancels_only_while_a_response_is_in_progress() -> None:
    state = ResponseRegistry()
    assert state.cancel() == []  # nothing to cancel: sending response.cancel would be an error
    feed(state, TURN[:11])
    assert [e["type"] for e in state.cancel()] == ["response.cancel"]
    assert state.is_dropped("resp_1")


def test_late_deltas_of_a_dropped_response_are_recognised_by_id() -> None:
    state = ResponseRegistry()
    feed(state, TURN[:8])
    state.cancel()
    late = state.receive(p.parse_event(json.dumps(TURN[10])))
    assert isinstance(late, p.AudioDelta) and state.is_dropped(late.response_id)
    # An interrupted response ends with a non-completed status; the next one plays.
    feed(state, [{"type": "response.done", "response": {"id": "resp_1", "status": "cancelled"}}])
    feed(state, [{"type": "response.created", "response": {"id": "resp_2"}}])
    assert state.active_response == "resp_2" and not state.is_dropped("resp_2")


def test_dropped_ids_are_bounded() -> None:
    state = ResponseRegistry()
    for i in range(1000):
        state.drop(f"resp_{i}")
    assert state.is_dropped("resp_999") and not state.is_dropped("resp_0")


def test_unknown_events_and_fields_are_tolerated() -> None:
    e = p.parse_event('{"type": "response.brand_new_thing", "x": 1}')
    assert isinstance(e, p.Unknown) and e.type == "response.brand_new_thing"
    d = p.parse_event(json.dumps({"type": "response.audio.delta", "delta": B64, "extra": {"y": 2}}))
    assert isinstance(d, p.AudioDelta) and d.response_id == ""


def test_text_only_responses_use_the_text_events() -> None:
    d = p.parse_event('{"type": "response.text.delta", "response_id": "r", "delta": "Hi"}')
    done = p.parse_event('{"type": "response.text.done", "response_id": "r", "text": "Hi there"}')
    assert isinstance(d, p.TranscriptDelta) and d.delta == "Hi"
    assert isinstance(done, p.TranscriptDone) and done.transcript == "Hi there"


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (b"\x00\x01binary", "binary frame"),
        ("{not json", "malformed JSON"),
        ('["a", "list"]', "without a type"),
        ('{"type": 3}', "without a type"),
        ('{"type": "response.audio.delta", "delta": "!!!not base64"}', "invalid base64"),
        ("x" * (p.MAX_MESSAGE_BYTES + 1), "oversized"),
    ],
)
def test_garbage_from_the_server_is_a_protocol_error(frame: str | bytes, why: str) -> None:
    with pytest.raises(p.ProtocolError, match=why):
        p.parse_event(frame)


def test_error_events_say_whether_they_are_fatal() -> None:
    e = p.parse_event(json.dumps({"type": "error", "error": {
        "type": "invalid_request_error", "code": "invalid_value", "message": "no active response"}}))
    assert isinstance(e, p.ErrorEvent) and not e.fatal and e.code == "invalid_value"
    f = p.parse_event('{"type": "error", "error": {"type": "server_error", "message": "boom"}}')
    assert isinstance(f, p.ErrorEvent) and f.fatal


def test_session_update_asks_for_16k_in_24k_out_transcription_and_turn_detection() -> None:
    s = OmniSettings(instructions="Be brief.", turn_detection=TurnDetection(threshold=0.3, silence_duration_ms=600))
    ev = json.loads(p.encode(p.session_update(s, "qwen-omni-vc-kiosk-voice-1")))
    sess = ev["session"]
    assert ev["type"] == "session.update" and ev["event_id"].startswith("event_")
    assert sess["modalities"] == ["text", "audio"]
    assert sess["voice"] == "qwen-omni-vc-kiosk-voice-1"
    assert sess["input_audio_format"] == "pcm" and sess["output_audio_format"] == "pcm"
    assert sess["input_audio_transcription"] == {"model": "qwen3-asr-flash-realtime"}
    assert sess["turn_detection"] == {"type": "server_vad", "threshold": 0.3,
                                      "prefix_padding_ms": 300, "silence_duration_ms": 600}
    assert sess["instructions"] == "Be brief."


def test_manual_turn_detection_sends_null() -> None:
    s = OmniSettings(turn_detection=TurnDetection(type="none"))
    assert p.session_update(s, None)["session"]["turn_detection"] is None


def test_idle_timeout_is_sent_only_when_configured() -> None:
    assert "idle_timeout_ms" not in p.session_update(OmniSettings(), None)["session"]["turn_detection"]
    s = OmniSettings(idle_timeout_ms=12000)
    assert p.session_update(s, None)["session"]["turn_detection"]["idle_timeout_ms"] == 12000


def test_an_error_names_the_client_event_it_answers_and_item_created_its_content() -> None:
    err = p.parse_event(json.dumps({"type": "error", "error": {
        "type": "invalid_request_error", "code": "invalid_value", "message": "no", "param": "item",
        "event_id": "ev_7"}}))
    assert isinstance(err, p.ErrorEvent) and err.event_id == "ev_7" and not err.fatal
    item = p.parse_event(json.dumps({"type": "conversation.item.created", "item": {
        "id": "item_1", "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "hi"}]}}))
    assert isinstance(item, p.ItemCreated)
    assert (item.item_id, item.item_type, item.role, item.content_types) == (
        "item_1", "message", "user", ("input_text",))
    assert p.user_text("hi", "ev_8")["event_id"] == "ev_8"


def test_client_events_are_the_documented_shapes() -> None:
    assert p.audio_append(PCM) == {"type": "input_audio_buffer.append", "audio": B64}
    assert p.user_text("hi")["item"]["content"] == [{"type": "input_text", "text": "hi"}]
    assert p.response_create() == {"type": "response.create"}
    assert p.session_finish() == {"type": "session.finish"}
    assert json.loads(p.encode({"type": "x", "event_id": "mine"}))["event_id"] == "mine"


def test_reset_forgets_the_session_but_keeps_dropped_ids() -> None:
    state = ResponseRegistry()
    feed(state, TURN[:8])
    state.cancel()
    state.reset()
    assert state.session_id is None and not state.response_in_progress
    assert state.is_dropped("resp_1")


def test_the_microphone_fast_path_encodes_the_same_event_with_unique_ids() -> None:
    """`encode` builds append frames from a template (bench/RESULTS.md); it must stay exact."""
    frames = [json.loads(p.encode(p.audio_append(PCM))) for _ in range(3)]
    for ev in frames:
        assert list(ev) == ["event_id", "type", "audio"]
        assert ev["type"] == "input_audio_buffer.append" and ev["audio"] == B64
        assert ev["event_id"].startswith("event_")
    assert len({ev["event_id"] for ev in frames}) == 3
    odd = json.loads(p.encode({"type": "input_audio_buffer.append", "audio": 'a"b\\c'}))
    assert odd["audio"] == 'a"b\\c', "anything that needs escaping takes the json.dumps path"


def test_response_done_carries_the_text_of_its_assistant_messages() -> None:
    """Text-only answers stream no transcript: the text is in `response.output` (live recording)."""
    done = p.parse_event(json.dumps({"type": "response.done", "response": {"id": "r", "status": "completed",
        "output": [{"type": "function_call", "name": "f", "arguments": "{}"},
                   {"type": "message", "role": "assistant",
                    "content": [{"type": "text", "text": "Blue "}, {"type": "audio", "transcript": "square."}]}]}}))
    assert isinstance(done, p.ResponseDone) and done.text == "Blue square."
    bare = p.parse_event('{"type": "response.done", "response": {"id": "r", "output": "junk"}}')
    assert isinstance(bare, p.ResponseDone) and bare.text == "" and bare.status == "completed"


def test_keepalive_is_the_sdk_and_raw_client_practice_20_s_and_tests_inject_their_own() -> None:
    from agent.realtime import connection

    assert (connection.TIMINGS.ping_interval, connection.TIMINGS.ping_timeout) == (20.0, 20.0)
    short = connection.Timings(ping_interval=0.5, ping_timeout=1.0)
    assert connection.RealtimeConnection(None, short).timings is short  # type: ignore[arg-type]
