"""Bad input from the network: both protocol parsers under random and mutated server messages.

The daemon reads frames from servers it does not control, through proxies that may truncate or
mangle them. A parser may reject a frame — with its own `ProtocolError`, which every session loop
handles as a lost session — but nothing else may escape: any other exception would end the
session task, and with it the daemon. Starting from valid recorded events, the tests mutate types,
fields and values, and also throw plain garbage (text, bytes, deep nesting) at the parsers and at
the state machines that consume their output.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent.conversation.omni import ResponseRegistry
from agent.realtime import protocol as rp
from agent.tts import protocol as tp

pytestmark = pytest.mark.unit

PCM = base64.b64encode(b"\x01\x00\x02\x00" * 8).decode()

# Recorded realtime events (reference §5.5 order), the seeds of the mutations.
REALTIME_EVENTS: list[dict[str, Any]] = [
    {"type": "session.created", "session": {"id": "sess_1", "voice": "Tina"}},
    {"type": "session.updated", "session": {"voice": "Tina", "output_audio_format": "pcm24"}},
    {"type": "input_audio_buffer.speech_started", "audio_start_ms": 640, "item_id": "item_u1"},
    {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 2100, "item_id": "item_u1"},
    {"type": "input_audio_buffer.committed", "item_id": "item_u1"},
    {"type": "conversation.item.input_audio_transcription.delta", "item_id": "i", "text": "Wh", "stash": "at"},
    {"type": "conversation.item.input_audio_transcription.text", "item_id": "i", "text": "What"},
    {"type": "conversation.item.input_audio_transcription.completed", "item_id": "i", "transcript": "What?"},
    {"type": "conversation.item.input_audio_transcription.failed", "item_id": "i", "error": {"message": "x"}},
    {"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}},
    {"type": "response.audio_transcript.delta", "response_id": "resp_1", "delta": "It is"},
    {"type": "response.text.delta", "response_id": "resp_1", "delta": " sunny."},
    {"type": "response.audio.delta", "response_id": "resp_1", "item_id": "a", "delta": PCM},
    {"type": "response.audio_transcript.done", "response_id": "resp_1", "transcript": "It is sunny."},
    {"type": "response.audio.done", "response_id": "resp_1"},
    {"type": "response.done", "response": {"id": "resp_1", "status": "completed", "output": []}},
    {"type": "error", "error": {"type": "invalid_request_error", "code": "x", "message": "m", "param": None}},
    {"type": "session.finished"},
]


def _tts(event: str, task_id: str = "t1", **payload: Any) -> dict[str, Any]:
    return {"header": {"task_id": task_id, "event": event, "attributes": {}}, "payload": payload}


TTS_EVENTS: list[dict[str, Any]] = [
    _tts("task-started"),
    _tts("result-generated", output={"type": "sentence-begin", "sentence": {"index": 0},
                                     "original_text": "Hello."}, usage={"characters": 6}),
    _tts("result-generated", output={"type": "sentence-synthesis", "sentence": {"index": 0}}),
    _tts("result-generated", output={"type": "sentence-end", "sentence": {"index": 0},
                                     "original_text": "Hello."}, usage={"characters": 6}),
    {"header": {"task_id": "t1", "event": "task-finished", "attributes": {"request_uuid": "u"}},
     "payload": {"output": {}, "usage": {"characters": 6}}},
    {"header": {"task_id": "t1", "event": "task-failed", "error_code": "InternalError",
                "error_message": "boom", "attributes": {}}, "payload": {}},
]

# Any JSON value, nested a little.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
REALTIME_TYPES = sorted({e["type"] for e in REALTIME_EVENTS}) + ["", "response.audio.delta "]
TTS_NAMES = ["task-started", "result-generated", "task-finished", "task-failed", "", "TASK-STARTED"]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path into a JSON document (the places a mutation may hit)."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, seeds: list[dict[str, Any]], names: list[str], name_path: tuple[str, ...]) -> str:
    """A valid event with a few fields replaced by other JSON values, deleted, or renamed."""
    doc = json.loads(json.dumps(draw(st.sampled_from(seeds))))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "name"]))
        if action == "name":
            target, key = doc, name_path
            for k in key[:-1]:
                target = target.setdefault(k, {}) if isinstance(target, dict) else {}
            if isinstance(target, dict):
                target[key[-1]] = draw(st.sampled_from(names) | st.text(max_size=12))
            continue
        if not path:
            doc = draw(json_values) if action == "replace" else doc
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    return json.dumps(doc)


garbage_text = st.text(max_size=200) | st.builds(lambda b: b.decode("latin-1"), st.binary(max_size=200))


def _assert_clean_rejection(e: Exception) -> None:
    assert str(e), "a rejection says what was wrong"
    assert "\n" not in str(e)[:300]


# --- realtime --------------------------------------------------------------------------------


def _realtime_consume(frame: str | bytes) -> None:
    """What a session loop does with one frame: parse, then update the session state."""
    state = ResponseRegistry()
    try:
        event = rp.parse_event(frame)
    except rp.ProtocolError as e:
        _assert_clean_rejection(e)
        return
    assert isinstance(event, rp.ServerEvent)
    state.receive(event)
    state.cancel()


@given(mutated(REALTIME_EVENTS, REALTIME_TYPES, ("type",)))
def test_realtime_parser_survives_mutated_events(frame: str) -> None:
    _realtime_consume(frame)


@given(garbage_text | st.binary(max_size=200))
@example("[" * 100_000)  # nesting deeper than the JSON decoder's recursion limit
@example('{"type": "response.audio.delta", "delta": "AAAA')  # the emulator's `malformed`
@example(b"\x00\xffnot-json\x00")  # the emulator's `binary_frame`
@example('{"type": "response.audio.delta", "response_id": "r", "delta": "!!!not base64"}')
@example('{"type": 7}')
@example("null")
def test_realtime_parser_survives_garbage(frame: str | bytes) -> None:
    _realtime_consume(frame)


@given(st.lists(mutated(REALTIME_EVENTS, REALTIME_TYPES, ("type",)) | garbage_text, max_size=25))
def test_realtime_state_survives_any_event_sequence(frames: list[str]) -> None:
    """A whole session of mutated events: the state machine never raises and stays bounded."""
    state = ResponseRegistry()
    for frame in frames:
        try:
            state.receive(rp.parse_event(frame))
        except rp.ProtocolError:
            continue
        if state.active_response is not None:
            assert isinstance(state.active_response, str)
        state.drop(state.active_response)
    assert len(state._dropped) <= 64


# --- CosyVoice ---------------------------------------------------------------------------------


def _task() -> tp.SynthesisTask:
    task = tp.SynthesisTask(tp.SynthesisParams(model="cosyvoice-v3-flash", voice="longanyang"), "t1")
    task.start()
    task.send_text("Hello there. ")
    return task


@given(mutated(TTS_EVENTS, TTS_NAMES, ("header", "event")))
def test_synthesis_parser_survives_mutated_events(frame: str) -> None:
    try:
        event = tp.parse_event(frame)
    except tp.ProtocolError as e:
        _assert_clean_rejection(e)
        return
    assert isinstance(event, tp.ServerEvent)


@given(garbage_text | st.binary(max_size=200))
@example("[" * 100_000)
@example(b"\xff\xfe\x00")
@example('{"header": [], "payload": "x"}')
def test_synthesis_parser_survives_garbage(frame: str | bytes) -> None:
    try:
        tp.parse_event(frame)
    except tp.ProtocolError as e:
        _assert_clean_rejection(e)


@given(st.lists(
    st.one_of(
        mutated(TTS_EVENTS, TTS_NAMES, ("header", "event")).map(lambda f: ("text", f)),
        st.sampled_from([json.dumps(e) for e in TTS_EVENTS]).map(lambda f: ("text", f)),
        garbage_text.map(lambda f: ("text", f)),
        st.binary(max_size=64).map(lambda b: ("bytes", b)),
        st.sampled_from(["finish", "cancel", "abandon", "send"]).map(lambda a: ("client", a)),
    ),
    max_size=30,
))
def test_synthesis_task_survives_any_frame_sequence(steps: list[tuple[str, Any]]) -> None:
    """Frames of any kind in any order, with the client acting in between: only ProtocolError
    (garbage) and InvalidState (text after finish: the caller's mistake) may come out, and once
    the task has ended nothing brings it back."""
    task = _task()
    ended_as: tp.TaskState | None = None
    for kind, item in steps:
        if kind == "bytes":
            chunk = task.receive_bytes(item)
            # audio is ours once the task started and until it is cancelled or abandoned
            before = task.state is tp.TaskState.CREATED
            assert chunk.data == bytes(item) and chunk.discard == (task.cancelled or before)
        elif kind == "text":
            try:
                events = task.receive_text(item)
            except tp.ProtocolError as e:
                _assert_clean_rejection(e)
                continue
            assert all(isinstance(e, tp.ServerEvent) for e in events)
        else:
            try:
                {"finish": task.finish, "cancel": task.cancel, "abandon": task.abandon,
                 "send": lambda: task.send_text("More. ")}[item]()
            except tp.InvalidState:
                assert task.finish_requested or task.done
        for message in task.data_to_send():
            assert json.loads(message)["header"]["task_id"] == "t1"
        if ended_as is not None:
            assert task.state is ended_as, "an ended task stays ended"
        elif task.done:
            ended_as = task.state


@pytest.mark.parametrize("frame", ["[" * 100_000, "{" + '"a":{' * 50_000])
def test_deeply_nested_frames_are_protocol_errors_not_crashes(frame: str) -> None:
    """Found by the fuzzer: json.loads raises RecursionError (not ValueError) for deep nesting.
    It escaped both parsers: on a realtime socket it ended the session loop and with it the
    daemon; on the synthesis socket it killed the reader and the turn."""
    with pytest.raises(rp.ProtocolError):
        rp.parse_event(frame)
    with pytest.raises(tp.ProtocolError):
        tp.parse_event(frame)
