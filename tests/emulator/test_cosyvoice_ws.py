"""CosyVoice duplex synthesis over a real loopback WebSocket (reference §4)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from agent.emulator.cosyvoice_text import billing_characters
from agent.emulator.server import Emulator
from agent.emulator.speech import synthesize
from tests.support.ws import closed, connect, recv, send, start_emulator

PATH = "/api-ws/v1/inference"
MODEL = "cosyvoice-v3-flash"


@pytest.fixture
async def em() -> AsyncIterator[Emulator]:
    emulator = await start_emulator()
    yield emulator
    await emulator.stop()


def msg(action: str, task_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "header": {"action": action, "task_id": task_id, "streaming": "duplex"},
        "payload": payload,
    }


def run_task(task_id: str, **params: Any) -> dict[str, Any]:
    parameters = {"voice": "longanyang", "format": "pcm", "sample_rate": 24000, **params}
    return msg(
        "run-task",
        task_id,
        {
            "task_group": "audio",
            "task": "tts",
            "function": "SpeechSynthesizer",
            "model": MODEL,
            "parameters": parameters,
            "input": {},
        },
    )


def text(task_id: str, t: str, sdk_shape: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {"input": {"text": t}}
    if sdk_shape:  # SDK 1.x repeats the task description in every continue-task
        payload.update(model=MODEL, task_group="audio", task="tts", function="SpeechSynthesizer")
    return msg("continue-task", task_id, payload)


def finish(task_id: str, **inp: Any) -> dict[str, Any]:
    return msg("finish-task", task_id, {"input": inp})


async def collect(ws: Any, timeout: float = 10.0) -> list[Any]:
    """Frames up to task-finished / task-failed."""
    frames: list[Any] = []
    while True:
        frame = await recv(ws, timeout)
        frames.append(frame)
        if isinstance(frame, dict) and frame["header"]["event"] in ("task-finished", "task-failed"):
            return frames


def check_sentence_framing(frames: list[Any]) -> list[tuple[str, bytes]]:
    """Assert begin → (synthesis + exactly one binary)×N → end; return (text, audio) per sentence."""
    out: list[tuple[str, bytes]] = []
    i = 0
    while i < len(frames):
        f = frames[i]
        assert isinstance(f, dict), f"binary frame without sentence-synthesis at {i}"
        if f["header"]["event"] != "result-generated":
            i += 1
            continue
        o = f["payload"]["output"]
        assert o["type"] == "sentence-begin", o
        index, audio = o["sentence"]["index"], b""
        i += 1
        while frames[i]["payload"]["output"]["type"] == "sentence-synthesis":
            assert frames[i]["payload"]["output"]["sentence"]["index"] == index
            assert isinstance(frames[i + 1], bytes), "sentence-synthesis not followed by audio"
            audio += frames[i + 1]
            i += 2
        end = frames[i]["payload"]["output"]
        assert end["type"] == "sentence-end" and end["sentence"]["index"] == index
        assert end["original_text"] == o["original_text"]
        out.append((o["original_text"], audio))
        i += 1
    return out


async def test_streamed_text_is_spoken_sentence_by_sentence(em: Emulator) -> None:
    ws = await connect(em, PATH)
    tid = uuid.uuid4().hex
    await send(ws, run_task(tid))
    started = await recv(ws)
    assert started["header"] == {"task_id": tid, "event": "task-started", "attributes": {}}
    pieces = ["Hello there. This is a ", "streamed sentence! 你好。", "And the tail"]
    await send(ws, text(tid, pieces[0]))
    await send(ws, text(tid, pieces[1], sdk_shape=True))
    await send(ws, text(tid, pieces[2]))
    await send(ws, finish(tid))
    frames = await collect(ws)
    sentences = check_sentence_framing(frames)
    assert [s for s, _ in sentences] == [
        "Hello there.",
        "This is a streamed sentence!",
        "你好。",
        "And the tail",
    ]
    for spoken, audio in sentences:  # exactly the emulator's deterministic voice, as PCM
        assert audio == synthesize(spoken, 24000).astype("<i2").tobytes()
    ends = [f for f in frames if isinstance(f, dict) and "usage" in f["payload"]]
    counts = [f["payload"]["usage"]["characters"] for f in ends]
    assert counts == sorted(counts)  # cumulative
    total = billing_characters("".join(pieces))
    assert total == len("".join(pieces)) + 2  # two CJK ideographs count twice
    done = frames[-1]
    assert done["header"]["event"] == "task-finished"
    assert done["payload"]["usage"]["characters"] == total == counts[-1]
    assert uuid.UUID(done["header"]["attributes"]["request_uuid"])
    # the socket is reusable for a new task
    tid2 = uuid.uuid4().hex
    await send(ws, run_task(tid2, format="wav", sample_rate=16000))
    assert (await recv(ws))["header"]["event"] == "task-started"
    await send(ws, text(tid2, "Second task."))
    await send(ws, finish(tid2))
    frames = await collect(ws)
    binaries = [f for f in frames if isinstance(f, bytes)]
    assert binaries[0][:4] == b"RIFF" and binaries[0][8:16] == b"WAVEfmt "
    assert all(not b.startswith(b"RIFF") for b in binaries[1:])
    assert frames[-1]["header"]["task_id"] == tid2
    await ws.close()


async def test_complete_sentences_are_spoken_before_finish_and_flush_forces_the_rest(
    em: Emulator,
) -> None:
    ws = await connect(em, PATH)
    tid = uuid.uuid4().hex
    await send(ws, run_task(tid))
    await recv(ws)
    await send(ws, text(tid, "The first sentence is complete. The second is not"))
    begin = await recv(ws)
    assert begin["payload"]["output"]["original_text"] == "The first sentence is complete."
    frames = [begin]
    while not (
        isinstance(frames[-1], dict) and frames[-1]["payload"]["output"]["type"] == "sentence-end"
    ):
        frames.append(await recv(ws))
    with pytest.raises(asyncio.TimeoutError):
        await recv(ws, timeout=0.3)  # the partial sentence waits for more text
    await send(ws, msg("continue-task", tid, {"input": {"flush": True}}))
    flushed = await recv(ws)
    assert flushed["payload"]["output"]["original_text"] == "The second is not"
    await send(ws, finish(tid))
    frames = await collect(ws)
    assert frames[-1]["header"]["event"] == "task-finished"
    await ws.close()


async def test_cancel_directive_finishes_at_once(em: Emulator) -> None:
    slow = await start_emulator(cosyvoice_speed=1.0)
    try:
        ws = await connect(slow, PATH)
        tid = uuid.uuid4().hex
        await send(ws, run_task(tid))
        await recv(ws)
        await send(
            ws, text(tid, "This is a long sentence that takes a few seconds to speak aloud.")
        )
        assert (await recv(ws))["payload"]["output"]["type"] == "sentence-begin"
        await send(ws, finish(tid, directive="cancel"))
        t0 = time.monotonic()
        frames = await collect(ws, timeout=2)
        assert time.monotonic() - t0 < 1.0
        assert frames[-1]["header"]["event"] == "task-finished"
        with pytest.raises(asyncio.TimeoutError):
            await recv(ws, timeout=0.4)  # nothing of the cancelled task follows
        tid2 = uuid.uuid4().hex  # still usable
        await send(ws, run_task(tid2))
        assert (await recv(ws))["header"]["event"] == "task-started"
        await ws.close()
    finally:
        await slow.stop()


async def test_new_run_task_preempts_the_running_task() -> None:
    slow = await start_emulator(cosyvoice_speed=1.0)
    try:
        ws = await connect(slow, PATH)
        old, new = uuid.uuid4().hex, uuid.uuid4().hex
        await send(ws, run_task(old))
        await recv(ws)
        await send(ws, text(old, "A long sentence that will never be heard to the end."))
        await recv(ws)  # sentence-begin of the old task
        await send(ws, run_task(new))
        frames = []
        while True:
            f = await recv(ws)
            frames.append(f)
            if isinstance(f, dict) and f["header"]["event"] == "task-started":
                break
        assert all(f["header"]["task_id"] == old for f in frames[:-1] if isinstance(f, dict))
        await send(ws, text(new, "Short."))
        await send(ws, finish(new))
        after = await collect(ws)
        assert all(f["header"]["task_id"] == new for f in after if isinstance(f, dict))
        assert after[-1]["header"]["event"] == "task-finished"
        await ws.close()
    finally:
        await slow.stop()


async def expect_failure(
    em: Emulator, first: dict[str, Any], *more: dict[str, Any]
) -> dict[str, Any]:
    """Send instructions; the server must answer task-failed and close the socket."""
    ws = await connect(em, PATH)
    for m in (first, *more):
        await send(ws, m)
    frames = []
    while True:
        f = await recv(ws)
        frames.append(f)
        if isinstance(f, dict) and f["header"]["event"] == "task-failed":
            break
    assert await closed(ws) == 1000
    return frames[-1]["header"]


async def test_run_task_validation_fails_the_task_and_closes(em: Emulator) -> None:
    tid = uuid.uuid4().hex
    no_input = run_task(tid)
    del no_input["payload"]["input"]
    h = await expect_failure(em, no_input)
    assert (h["error_code"], h["error_message"]) == ("InvalidParameter", "task can not be null")
    no_model = run_task(tid)
    del no_model["payload"]["model"]
    assert "payload.model" in (await expect_failure(em, no_model))["error_message"]
    h = await expect_failure(em, run_task(tid, format="mp3"))
    assert "'mp3'" in h["error_message"] and "pcm" in h["error_message"]
    h = await expect_failure(em, run_task(tid, voice="no-such-voice"))
    assert h["error_message"] == "[tts:]Engine return error code: 418"
    assert "volume" in (await expect_failure(em, run_task(tid, volume=150)))["error_message"]


async def test_cloned_voices_must_exist_be_ready_and_match_the_model(em: Emulator) -> None:
    now = time.time()
    voices = em.context.stores.cosy_voices
    voices["cosyvoice-v3-flash-kiosk-1"] = {
        "target_model": MODEL,
        "ready_at": now - 1,
        "final_status": "OK",
    }
    voices["cosyvoice-v3-plus-kiosk-2"] = {
        "target_model": "cosyvoice-v3-plus",
        "ready_at": now - 1,
        "final_status": "OK",
    }
    voices["cosyvoice-v3-flash-kiosk-3"] = {
        "target_model": MODEL,
        "ready_at": now + 60,
        "final_status": "OK",
    }
    ws = await connect(em, PATH)
    await send(ws, run_task(uuid.uuid4().hex, voice="cosyvoice-v3-flash-kiosk-1"))
    assert (await recv(ws))["header"]["event"] == "task-started"
    await ws.close()
    for voice in ("cosyvoice-v3-plus-kiosk-2", "cosyvoice-v3-flash-kiosk-3"):
        h = await expect_failure(em, run_task(uuid.uuid4().hex, voice=voice))
        assert "418" in h["error_message"]


async def test_duplicate_task_id_and_oversized_text_fail(em: Emulator) -> None:
    tid = uuid.uuid4().hex
    h = await expect_failure(em, run_task(tid), finish(tid), run_task(tid))
    assert "Duplicate task_id" in h["error_message"]
    tid = uuid.uuid4().hex
    h = await expect_failure(em, run_task(tid), text(tid, "a" * 20_001))
    assert "20000" in h["error_message"]


async def test_unexpected_payload_fields_close_with_1007(em: Emulator) -> None:
    ws = await connect(em, PATH)
    bad = run_task(uuid.uuid4().hex)
    bad["payload"]["surprise"] = 1
    await send(ws, bad)
    assert await closed(ws) == 1007


async def test_text_gap_timeout_and_idle_close() -> None:
    quick = await start_emulator(cosyvoice_text_gap_s=0.3, cosyvoice_idle_close_s=0.4)
    try:
        ws = await connect(quick, PATH)
        tid = uuid.uuid4().hex
        await send(ws, run_task(tid))
        await recv(ws)
        await send(ws, text(tid, "Some text"))
        t0 = time.monotonic()
        failed = await recv(ws, timeout=3)
        assert failed["header"]["event"] == "task-failed"
        assert failed["header"]["error_message"] == "request timeout after 0.3 seconds."
        assert 0.25 < time.monotonic() - t0 < 1.5
        assert await closed(ws) == 1000
        ws = await connect(quick, PATH)  # never starts a task
        t0 = time.monotonic()
        assert await closed(ws) == 1000
        assert 0.3 < time.monotonic() - t0 < 2.0
        ws = await connect(quick, PATH)  # idle after a finished task
        tid = uuid.uuid4().hex
        await send(ws, run_task(tid))
        await send(ws, text(tid, "Done."))
        await send(ws, finish(tid))
        assert (await collect(ws))[-1]["header"]["event"] == "task-finished"
        t0 = time.monotonic()
        assert await closed(ws) == 1000
        assert 0.3 < time.monotonic() - t0 < 2.0
    finally:
        await quick.stop()


async def test_wrong_key_is_refused_at_the_upgrade(em: Emulator) -> None:
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(
            em.ws_url + PATH, additional_headers={"Authorization": "Bearer nope"}
        )
    assert info.value.response.status_code == 401


# --- injected faults (per-connection override header) ---


async def fault_session(em: Emulator, faults: str) -> tuple[Any, str]:
    ws = await connect(em, PATH, faults=faults)
    tid = uuid.uuid4().hex
    await send(ws, run_task(tid))
    return ws, tid


async def test_fault_task_failed_answers_run_task(em: Emulator) -> None:
    ws, tid = await fault_session(em, "task_failed")
    f = await recv(ws)
    assert f["header"]["event"] == "task-failed" and f["header"]["error_code"] == "InternalError"
    assert await closed(ws) == 1011


async def test_fault_error_event_fails_the_task_midway(em: Emulator) -> None:
    ws, tid = await fault_session(em, "error_event")
    await send(ws, text(tid, "One sentence. Another sentence. A third one."))
    frames = await collect(ws)
    assert any(isinstance(f, bytes) for f in frames)  # some audio first ...
    assert frames[-1]["header"]["event"] == "task-failed"  # ... then the failure
    assert frames[-1]["header"]["task_id"] == tid
    assert await closed(ws) == 1011


async def test_fault_malformed_and_binary_frames(em: Emulator) -> None:
    ws, tid = await fault_session(em, "malformed=1,binary_frame=2")
    started = await recv(ws)
    assert started["header"]["event"] == "task-started"
    raw = await asyncio.wait_for(ws.recv(), 5)
    assert isinstance(raw, str) and raw.startswith("{") and not raw.endswith("}")
    assert isinstance(await asyncio.wait_for(ws.recv(), 5), bytes)
    await ws.close()


async def test_fault_drop_after_n_frames(em: Emulator) -> None:
    ws, tid = await fault_session(em, "drop_after=3")
    await send(ws, text(tid, "Hello there. How are you?"))
    got = []
    with pytest.raises(websockets.ConnectionClosedError):
        while True:
            got.append(await asyncio.wait_for(ws.recv(), 5))
    assert len(got) == 3


async def test_fault_half_open_goes_silent_but_keeps_the_socket(em: Emulator) -> None:
    ws, tid = await fault_session(em, "half_open=1")
    assert (await recv(ws))["header"]["event"] == "task-started"
    await send(ws, text(tid, "Hello there."))
    await send(ws, finish(tid))
    with pytest.raises(asyncio.TimeoutError):
        await recv(ws, timeout=0.5)
    pong = await ws.ping()
    with pytest.raises(asyncio.TimeoutError):  # a dead peer does not answer pings either ...
        await asyncio.wait_for(pong, 0.5)
    assert ws.close_code is None  # ... yet the server never closes the socket
    await ws.close()


async def test_fault_latency_delays_every_frame(em: Emulator) -> None:
    ws = await connect(em, PATH, faults="latency=150ms")
    t0 = time.monotonic()
    await send(ws, run_task(uuid.uuid4().hex))
    await recv(ws)
    assert time.monotonic() - t0 >= 0.14
    await ws.close()
