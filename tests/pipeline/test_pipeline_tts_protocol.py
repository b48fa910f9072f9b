"""CosyVoice duplex protocol core (agent.tts.protocol): messages, parsing, the task state machine.

Event sequences are written the way the service documents them (dashscope-protocol.md §4); no
sockets are involved.
"""

from __future__ import annotations

import json
import re

import pytest

from agent.tts.protocol import (
    AudioChunk,
    InvalidState,
    ProtocolError,
    SentenceBegin,
    SentenceEnd,
    SentenceSynthesis,
    SynthesisParams,
    SynthesisTask,
    TaskFailed,
    TaskFinished,
    TaskStarted,
    TaskState,
    TextLimitError,
    UnknownEvent,
    continue_task_message,
    finish_task_message,
    new_task_id,
    parse_event,
    run_task_message,
    split_text,
    text_weight,
)

pytestmark = pytest.mark.unit

PARAMS = SynthesisParams(model="cosyvoice-v3-flash", voice="cosyvoice-v3-flash-kiosk-abc")


def ev(task_id: str, event: str, **payload_or_header: object) -> str:
    header: dict[str, object] = {"task_id": task_id, "event": event, "attributes": {}}
    payload: dict[str, object] = {}
    for k, v in payload_or_header.items():
        if k in ("error_code", "error_message", "attributes"):
            header[k] = v
        else:
            payload[k] = v
    return json.dumps({"header": header, "payload": payload})


def result(task_id: str, kind: str, index: int = 0, text: str | None = None, chars: int | None = None) -> str:
    output: dict[str, object] = {"sentence": {"index": index, "words": []}, "type": kind}
    if text is not None:
        output["original_text"] = text
    payload: dict[str, object] = {"output": output}
    if chars is not None:
        payload["usage"] = {"characters": chars}
    return json.dumps({"header": {"task_id": task_id, "event": "result-generated", "attributes": {}}, "payload": payload})


def sent(task: SynthesisTask) -> list[dict]:
    return [json.loads(m) for m in task.data_to_send()]


# --- messages ----------------------------------------------------------------------------------


def test_run_task_message_has_every_documented_field() -> None:
    msg = json.loads(run_task_message("a" * 32, PARAMS))
    assert msg["header"] == {"action": "run-task", "task_id": "a" * 32, "streaming": "duplex"}
    p = msg["payload"]
    assert (p["task_group"], p["task"], p["function"], p["model"]) == (
        "audio", "tts", "SpeechSynthesizer", "cosyvoice-v3-flash",
    )
    assert p["input"] == {}
    assert p["parameters"] == {
        "text_type": "PlainText", "voice": "cosyvoice-v3-flash-kiosk-abc", "format": "pcm",
        "sample_rate": 24000, "volume": 50, "rate": 1.0, "pitch": 1.0,
    }


def test_extra_parameters_are_merged_and_can_override() -> None:
    params = SynthesisParams("m", "v", volume=80, extra={"language_hints": ["en"], "seed": 7})
    p = json.loads(run_task_message("t", params))["payload"]["parameters"]
    assert p["volume"] == 80 and p["language_hints"] == ["en"] and p["seed"] == 7


def test_continue_and_finish_messages() -> None:
    c = json.loads(continue_task_message("t1", "你好，world"))
    assert c == {"header": {"action": "continue-task", "task_id": "t1", "streaming": "duplex"},
                 "payload": {"input": {"text": "你好，world"}}}
    f = json.loads(finish_task_message("t1"))
    assert f["header"]["action"] == "finish-task" and f["payload"] == {"input": {}}
    x = json.loads(finish_task_message("t1", cancel=True))
    assert x["payload"] == {"input": {"directive": "cancel"}}


def test_task_ids_are_fresh_32_hex() -> None:
    ids = {new_task_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert SynthesisTask(PARAMS).task_id != SynthesisTask(PARAMS).task_id


# --- text limits -------------------------------------------------------------------------------


def test_cjk_counts_double() -> None:
    assert text_weight("abc") == 3
    assert text_weight("床前明月光") == 10
    assert text_weight("hi 你好！") == 3 + 4 + 2  # the full-width "！" is a CJK form too


def test_split_text_respects_weighted_limit_and_prefers_boundaries() -> None:
    text = "word " * 10
    parts = split_text(text, limit=12)
    assert "".join(parts) == text
    assert all(text_weight(p) <= 12 for p in parts)
    assert all(p.endswith(" ") for p in parts[:-1])  # cut after a space, not inside a word
    cjk = "中" * 25
    parts = split_text(cjk, limit=10)
    assert "".join(parts) == cjk and [text_weight(p) for p in parts] == [10, 10, 10, 10, 10]
    assert split_text("x" * 25, limit=10) == ["x" * 10, "x" * 10, "x" * 5]  # no boundary: hard cut


def test_long_text_is_split_into_several_continue_tasks() -> None:
    task = SynthesisTask(PARAMS, "t", max_chars=100)
    task.start()
    task.data_to_send()
    task.receive_text(ev("t", "task-started"))
    task.send_text("a" * 250)
    msgs = sent(task)
    texts = [m["payload"]["input"]["text"] for m in msgs]
    assert [len(t) for t in texts] == [100, 100, 50]
    assert all(m["header"]["action"] == "continue-task" for m in msgs)


def test_total_text_per_task_is_bounded() -> None:
    task = SynthesisTask(PARAMS, "t", max_task_chars=10)
    task.send_text("12345")
    with pytest.raises(TextLimitError):
        task.send_text("中文字")  # weight 6 → 11 > 10
    task.send_text("12345")  # the failed call consumed nothing


# --- parsing -----------------------------------------------------------------------------------


def test_parse_documented_events() -> None:
    assert parse_event(ev("t", "task-started")) == TaskStarted("t")
    assert parse_event(result("t", "sentence-begin", 0, "床前明月光，")) == SentenceBegin("t", 0, "床前明月光，")
    assert parse_event(result("t", "sentence-synthesis", 0)) == SentenceSynthesis("t", 0)
    assert parse_event(result("t", "sentence-end", 0, "床前明月光，", 11)) == SentenceEnd("t", 0, "床前明月光，", 11)
    fin = parse_event(ev("t", "task-finished", attributes={"request_uuid": "r-1"}, usage={"characters": 13}))
    assert fin == TaskFinished("t", 13, "r-1")
    fail = parse_event(ev("t", "task-failed", error_code="InvalidParameter",
                          error_message="[tts:]Engine return error code: 418"))
    assert fail == TaskFailed("t", "InvalidParameter", "[tts:]Engine return error code: 418")


def test_parse_is_liberal() -> None:
    unknown = parse_event('{"header":{"event":"task-progress","task_id":"t","new":1},"payload":{"x":[]}}')
    assert isinstance(unknown, UnknownEvent) and unknown.name == "task-progress"
    odd = parse_event('{"header":{"event":"result-generated"},"payload":{"output":{"type":"word"}}}')
    assert isinstance(odd, UnknownEvent) and odd.task_id is None
    # wrong types in optional places are ignored rather than crashing
    weird = parse_event('{"header":{"event":"result-generated","task_id":"t"},'
                        '"payload":{"output":{"type":"sentence-end","sentence":"x"},"usage":{"characters":"9"}}}')
    assert weird == SentenceEnd("t", None, None, None)
    assert parse_event('{"header":{"event":"task-failed"}}') == TaskFailed(None, "Unknown", "")
    assert isinstance(parse_event("{}"), UnknownEvent)
    for bad in ("not json", "[1,2]", b"\xff\xfe"):
        with pytest.raises(ProtocolError):
            parse_event(bad)


# --- state machine -----------------------------------------------------------------------------


def test_full_task_as_documented() -> None:
    task = SynthesisTask(PARAMS, "t1")
    assert task.state is TaskState.CREATED
    task.start()
    task.start()  # idempotent
    [run] = sent(task)
    assert run["header"]["action"] == "run-task" and run["header"]["task_id"] == "t1"

    task.send_text("床前明月光，")  # before task-started: queued, nothing goes out
    task.send_text("疑是地上霜。")
    assert task.data_to_send() == []

    [e] = task.receive_text(ev("t1", "task-started"))
    assert isinstance(e, TaskStarted) and task.state is TaskState.STARTED
    msgs = sent(task)
    assert [m["payload"]["input"]["text"] for m in msgs] == ["床前明月光，", "疑是地上霜。"]

    task.send_text("举头望明月")
    assert [m["header"]["action"] for m in sent(task)] == ["continue-task"]
    task.finish()
    task.finish()  # idempotent
    [fin] = sent(task)
    assert fin["header"]["action"] == "finish-task" and fin["payload"] == {"input": {}}
    assert task.state is TaskState.FINISHING
    with pytest.raises(InvalidState):
        task.send_text("too late")

    audio: list[AudioChunk] = []
    task.receive_text(result("t1", "sentence-begin", 0, "床前明月光，"))
    for i in range(3):
        task.receive_text(result("t1", "sentence-synthesis", 0))
        audio.append(task.receive_bytes(bytes([i]) * 4))
    task.receive_text(result("t1", "sentence-end", 0, "床前明月光，", 11))
    task.receive_text(result("t1", "sentence-begin", 1))
    task.receive_text(result("t1", "sentence-synthesis", 1))
    audio.append(task.receive_bytes(b"\x09" * 8))
    task.receive_text(result("t1", "sentence-end", 1, chars=22))
    [done] = task.receive_text(ev("t1", "task-finished", attributes={"request_uuid": "u"}, usage={"characters": 30}))
    assert isinstance(done, TaskFinished)
    assert task.state is TaskState.FINISHED and task.done
    assert all(a.paired and not a.discard for a in audio)
    assert (task.audio_frames, task.audio_bytes, task.unpaired_frames) == (4, 20, 0)
    assert task.sentences == 2 and task.characters == 30 and task.request_uuid == "u"


def test_finish_before_started_is_released_after_queued_text() -> None:
    task = SynthesisTask(PARAMS, "t")
    task.start()
    task.data_to_send()
    task.send_text("hello")
    task.finish()
    assert task.data_to_send() == [] and task.state is TaskState.CREATED
    task.receive_text(ev("t", "task-started"))
    actions = [(m["header"]["action"], m["payload"]["input"]) for m in sent(task)]
    assert actions == [("continue-task", {"text": "hello"}), ("finish-task", {})]
    assert task.state is TaskState.FINISHING


def test_binary_frame_without_sentence_synthesis_is_accepted_but_counted() -> None:
    task = SynthesisTask(PARAMS, "t")
    task.receive_text(ev("t", "task-started"))
    a = task.receive_bytes(b"\x01\x02")
    assert a.data == b"\x01\x02" and not a.paired
    task.receive_text(result("t", "sentence-synthesis"))
    task.receive_text(result("t", "sentence-synthesis"))  # two events, then their two frames
    b, c = task.receive_bytes(b"b"), task.receive_bytes(b"c")
    d = task.receive_bytes(b"d")  # one frame too many
    assert (b.paired, c.paired, d.paired) == (True, True, False)
    assert task.unpaired_frames == 2 and task.audio_frames == 4


def test_usage_characters_last_value_wins() -> None:
    task = SynthesisTask(PARAMS, "t")
    task.receive_text(ev("t", "task-started"))
    task.receive_text(result("t", "sentence-end", 0, chars=11))
    assert task.characters == 11
    task.receive_text(result("t", "sentence-begin", 1))  # no usage: keeps the last value
    assert task.characters == 11
    task.receive_text(result("t", "sentence-end", 1, chars=7))  # a smaller value still wins
    assert task.characters == 7
    task.receive_text(ev("t", "task-finished"))
    assert task.characters == 7  # task-finished without usage keeps it


def test_task_failed_carries_header_error() -> None:
    task = SynthesisTask(PARAMS, "t")
    task.start()
    task.send_text("x")
    [f] = task.receive_text(ev("t", "task-failed", error_code="InvalidParameter",
                                error_message="request timeout after 23 seconds."))
    assert isinstance(f, TaskFailed) and task.state is TaskState.FAILED and task.done
    assert task.error is not None and task.error.message == "request timeout after 23 seconds."
    with pytest.raises(InvalidState):
        task.send_text("more")
    task.receive_text(ev("t", "task-started"))  # late events after the end are ignored
    assert task.state is TaskState.FAILED and task.ignored_events == 1
    assert [m for m in task.data_to_send() if "continue-task" in m] == []


def test_events_of_another_task_are_ignored() -> None:
    task = SynthesisTask(PARAMS, "new")
    assert task.receive_text(ev("old", "task-finished")) == []
    assert task.receive_text(ev("old", "task-started")) == []
    assert task.state is TaskState.CREATED and task.ignored_events == 2
    # an event without a task id is taken as ours (be liberal)
    assert task.receive_text('{"header":{"event":"task-started"},"payload":{}}')
    assert task.state is TaskState.STARTED


def test_unknown_events_pass_through_without_changing_state() -> None:
    task = SynthesisTask(PARAMS, "t")
    task.receive_text(ev("t", "task-started"))
    [u] = task.receive_text('{"header":{"task_id":"t","event":"heartbeat"},"payload":{}}')
    assert isinstance(u, UnknownEvent) and task.state is TaskState.STARTED


def test_cancel_sends_cancel_directive_and_marks_audio_discard() -> None:
    task = SynthesisTask(PARAMS, "t")
    task.start()
    task.receive_text(ev("t", "task-started"))
    task.send_text("a long answer")
    task.data_to_send()
    task.cancel()
    task.cancel()  # once
    [m] = sent(task)
    assert m["header"]["action"] == "finish-task" and m["payload"] == {"input": {"directive": "cancel"}}
    assert task.cancelled and task.state is TaskState.FINISHING
    task.receive_text(result("t", "sentence-synthesis"))
    assert task.receive_bytes(b"late").discard
    with pytest.raises(InvalidState):
        task.send_text("x")
    task.receive_text(ev("t", "task-finished"))
    assert task.state is TaskState.FINISHED


def test_cancel_after_finish_still_sends_cancel() -> None:
    """Barge-in while the tail of a finished answer is still being synthesized."""
    task = SynthesisTask(PARAMS, "t")
    task.receive_text(ev("t", "task-started"))
    task.send_text("text")
    task.finish()
    task.data_to_send()
    task.cancel()
    [m] = sent(task)
    assert m["payload"]["input"] == {"directive": "cancel"}


def test_cancel_before_started_drops_queued_text() -> None:
    task = SynthesisTask(PARAMS, "t")
    task.start()
    task.data_to_send()
    task.send_text("never said")
    task.cancel()
    assert task.data_to_send() == []
    task.receive_text(ev("t", "task-started"))
    [m] = sent(task)  # only the cancel, no continue-task
    assert m["header"]["action"] == "finish-task" and m["payload"]["input"] == {"directive": "cancel"}


def test_cancel_or_finish_after_end_is_a_noop() -> None:
    task = SynthesisTask(PARAMS, "t")
    task.receive_text(ev("t", "task-started"))
    task.receive_text(ev("t", "task-finished"))
    task.cancel()
    task.finish()
    assert task.data_to_send() == [] and not task.cancelled


def test_malformed_frame_raises_protocol_error_without_state_change() -> None:
    task = SynthesisTask(PARAMS, "t")
    with pytest.raises(ProtocolError):
        task.receive_text("{oops")
    assert task.state is TaskState.CREATED
