"""Qwen-Omni-Realtime and Qwen-ASR-Realtime emulation over a real loopback WebSocket (§5)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import websockets

from agent.emulator.answers import answer_for
from agent.emulator.server import Emulator
from agent.emulator.speech import resample, synthesize, user_utterance
from tests.support.emulator import API_KEY
from tests.support.ws import (
    ASR,
    OMNI,
    append_audio,
    closed,
    connect,
    pcm_of,
    recv,
    send,
    start_emulator,
    types,
    until,
)

PATH = "/api-ws/v1/realtime?model="
QUESTION = "What's the weather like today?"


@pytest.fixture
async def em() -> AsyncIterator[Emulator]:
    emulator = await start_emulator()
    yield emulator
    await emulator.stop()


async def session(em: Emulator, model: str = OMNI, faults: str | None = None, **update: Any):
    """Connected socket after session.created (and session.updated when `update` is given)."""
    ws = await connect(em, PATH + model, faults=faults)
    created = await recv(ws)
    assert created["type"] == "session.created"
    if update:
        await send(ws, {"type": "session.update", "session": update})
        assert (await recv(ws))["type"] == "session.updated"
    return ws, created["session"]


async def test_session_created_shows_model_defaults(em: Emulator) -> None:
    expected = {
        OMNI: "Tina",
        "qwen3.5-omni-plus-realtime": "Tina",
        "qwen3-omni-flash-realtime": "Cherry",
        "qwen-omni-turbo-realtime": "Chelsie",
    }
    for model, voice in expected.items():
        ws, s = await session(em, model)
        assert s["id"].startswith("sess_") and s["object"] == "realtime.session"
        assert (s["model"], s["voice"], s["modalities"]) == (model, voice, ["text", "audio"])
        assert s["turn_detection"]["type"] == "server_vad"
        await ws.close()
    ws, s = await session(em, ASR)
    assert s["modalities"] == ["text"] and "voice" not in s
    await ws.close()


async def test_session_update_validates_and_echoes_the_full_config(em: Emulator) -> None:
    ws, _ = await session(em)
    await send(
        ws, {"type": "session.update", "event_id": "event_1", "session": {"modalities": ["audio"]}}
    )
    err = await recv(ws)
    assert err["type"] == "error"
    assert err["error"]["type"] == "invalid_request_error"
    assert err["error"]["param"] == "session.modalities"
    assert err["error"]["event_id"] == "event_1"
    for bad in (
        {"input_audio_format": "mp3"},
        {"voice": "NoSuchVoice"},
        {"turn_detection": {"threshold": 3}},
    ):
        await send(ws, {"type": "session.update", "session": bad})
        assert (await recv(ws))["type"] == "error", bad
    update = {
        "modalities": ["text", "audio"],
        "voice": "Ethan",
        "instructions": "Be brief.",
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm24",
        "input_audio_transcription": {"model": "qwen3-asr-flash-realtime"},
        "turn_detection": {"type": "server_vad", "threshold": 0.2, "silence_duration_ms": 600},
    }
    await send(ws, {"type": "session.update", "session": update})
    s = (await recv(ws))["session"]
    assert {k: s[k] for k in update if k != "turn_detection"} == {
        k: v for k, v in update.items() if k != "turn_detection"
    }
    td = s["turn_detection"]
    assert (td["threshold"], td["silence_duration_ms"], td["prefix_padding_ms"]) == (0.2, 600, 300)
    assert td["create_response"] is True and s["temperature"] == 0.7  # untouched defaults kept
    voices = em.context.stores.qwen_voices
    voices["qwen-omni-vc-kiosk-voice-1"] = {"target_model": OMNI}
    voices["qwen-omni-vc-other-voice-2"] = {"target_model": "qwen3.5-omni-plus-realtime"}
    await send(ws, {"type": "session.update", "session": {"voice": "qwen-omni-vc-other-voice-2"}})
    assert (await recv(ws))["error"]["param"] == "session.voice"  # cloned for another model
    await send(ws, {"type": "session.update", "session": {"voice": "qwen-omni-vc-kiosk-voice-1"}})
    assert (await recv(ws))["session"]["voice"] == "qwen-omni-vc-kiosk-voice-1"
    nested = {"audio": {"input": {"format": {"type": "pcm", "sample_rate": 24000}}}}
    await send(ws, {"type": "session.update", "session": nested})
    assert (await recv(ws))["session"]["audio"] == nested["audio"]
    await ws.close()


async def test_bad_client_events_get_errors_and_the_session_continues(em: Emulator) -> None:
    ws, _ = await session(em)
    await ws.send("this is not json")
    assert (await recv(ws))["error"]["code"] == "invalid_json"
    await send(ws, {"type": "no.such.event", "event_id": "event_x"})
    err = await recv(ws)
    assert err["type"] == "error" and err["error"]["param"] == "type"
    await send(ws, {"type": "input_audio_buffer.append", "audio": "%%% not base64 %%%"})
    assert (await recv(ws))["error"]["param"] == "audio"
    await send(
        ws, {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()}
    )
    assert (await recv(ws))["error"]["param"] == "audio"
    await send(ws, {"type": "response.cancel"})
    err = await recv(ws)
    assert err["error"]["type"] == "invalid_request_error"
    assert err["error"]["code"] == "response_cancel_not_active"
    await send(ws, {"type": "session.update", "session": {"instructions": "still here"}})
    assert (await recv(ws))["type"] == "session.updated"
    await ws.close()


async def test_a_spoken_question_gets_a_streamed_spoken_answer(em: Emulator) -> None:
    ws, _ = await session(em)
    await append_audio(ws, user_utterance(QUESTION, lead_ms=1000, trail_ms=1200))
    events = await until(ws, "response.done")
    kinds = types(events)
    head = [k for k in kinds if not k.endswith(".delta") or "transcription" in k]
    assert head[:4] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.created",
    ]
    started, stopped = events[0], events[1]
    assert abs(started["audio_start_ms"] - (1000 - 300)) <= 40  # onset minus prefix padding
    speech_ms = synthesize(QUESTION, 16000).size * 1000 // 16000
    assert abs(stopped["audio_end_ms"] - (1000 + speech_ms + 800)) <= 60
    assert started["item_id"] == stopped["item_id"] == events[2]["item_id"]
    done = next(e for e in events if e["type"].endswith("transcription.completed"))
    assert done["transcript"] == QUESTION
    partials = [e for e in events if e["type"].endswith("transcription.delta")]
    assert partials and all(QUESTION.startswith(p["text"]) for p in partials)
    answer = answer_for(QUESTION)
    assert head[-8:] == [
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "response.audio_transcript.done",
        "response.audio.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    deltas = [e for e in events if e["type"] == "response.audio.delta"]
    assert all(len(base64.b64decode(d["delta"])) <= 2400 * 2 for d in deltas)  # 100 ms chunks
    assert np.array_equal(pcm_of(events), synthesize(answer, 24000))
    text = "".join(e["delta"] for e in events if e["type"] == "response.audio_transcript.delta")
    assert text == answer
    resp = events[-1]["response"]
    assert resp["status"] == "completed" and resp["output"][0]["content"][0]["transcript"] == answer
    assert resp["usage"]["output_tokens_details"]["audio_tokens"] > 0
    first_delta = kinds.index("response.audio.delta")
    assert kinds.index("response.audio_transcript.delta") < first_delta
    await ws.close()


async def test_audio_is_paced_faster_than_real_time() -> None:
    em = await start_emulator(realtime_speed=8.0, realtime_first_delta_s=0.1)
    try:
        ws, _ = await session(em)
        await append_audio(ws, user_utterance("Tell me a joke.", trail_ms=1000))
        await until(ws, "response.created")
        t0 = time.monotonic()
        events = await until(ws, "response.done")
        elapsed = time.monotonic() - t0
        audio_s = pcm_of(events).size / 24000
        assert audio_s / 8.0 + 0.1 - 0.15 < elapsed < audio_s / 8.0 + 0.1 + 1.0
        await ws.close()
    finally:
        await em.stop()


async def test_barge_in_cancels_the_answer_and_starts_a_new_turn() -> None:
    em = await start_emulator(realtime_speed=2.0)
    try:
        ws, _ = await session(em)
        await append_audio(ws, user_utterance("Hello there.", trail_ms=900))
        await until(ws, "response.audio.delta")
        await asyncio.sleep(0.3)
        await append_audio(ws, user_utterance("Tell me a joke.", lead_ms=100, trail_ms=900))
        events = await until(ws, "response.done")
        kinds = types(events)
        barge = kinds.index("input_audio_buffer.speech_started")
        after = kinds[barge + 1 :]
        assert "response.audio.delta" not in after  # no audio of the old answer after the barge-in
        assert [k for k in after if not k.endswith("delta")][:5] == [
            "response.audio_transcript.done",
            "response.audio.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.done",
        ]
        cancelled = events[-1]["response"]
        assert cancelled["status"] == "cancelled"
        assert cancelled["status_details"]["reason"] == "turn_detected"
        assert answer_for("Hello there.").startswith(
            cancelled["output"][0]["content"][0]["transcript"]
        )
        em.context.options.realtime_speed = 50.0  # the next answer need not be slow
        nxt = await until(ws, "response.done")
        heard = next(e for e in nxt if e["type"].endswith("transcription.completed"))
        assert heard["transcript"] == "Tell me a joke."
        assert nxt[-1]["response"]["status"] == "completed"
        assert nxt[-1]["response"]["id"] != cancelled["id"]
        await ws.close()
    finally:
        await em.stop()


async def test_manual_mode_commit_text_items_and_response_cancel() -> None:
    em = await start_emulator(realtime_speed=2.0)
    try:
        ws, _ = await session(em, turn_detection=None)
        await send(ws, {"type": "input_audio_buffer.commit"})
        err = await recv(ws)
        assert err["error"]["code"] == "input_audio_buffer_commit_empty"
        await append_audio(ws, user_utterance("What time is it?"))
        await send(ws, {"type": "input_audio_buffer.commit"})
        committed = await until(ws, "conversation.item.input_audio_transcription.completed")
        assert types(committed)[0] == "input_audio_buffer.committed"
        assert "input_audio_buffer.speech_started" not in types(committed)
        assert committed[-1]["transcript"] == "What time is it?"
        await send(ws, {"type": "response.create", "response": {"instructions": None}})
        first = await until(ws, "response.created")
        assert types(first)[0] == "conversation.item.created"  # user item announced now
        await send(ws, {"type": "response.create"})
        busy = await until(ws, "error")
        assert busy[-1]["error"]["code"] == "conversation_already_has_active_response"
        await send(ws, {"type": "response.cancel"})
        done = await until(ws, "response.done")
        assert done[-1]["response"]["status"] == "cancelled"
        assert done[-1]["response"]["status_details"]["reason"] == "client_cancelled"
        # `ask`: a text item plus response.create
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Tell me a joke"}],
        }
        await send(ws, {"type": "conversation.item.create", "item": item})
        created = await until(ws, "conversation.item.created")
        assert created[-1]["item"]["content"][0]["text"] == "Tell me a joke"
        em.context.options.realtime_speed = 50.0
        await send(ws, {"type": "response.create"})
        events = await until(ws, "response.done")
        text = "".join(e["delta"] for e in events if e["type"] == "response.audio_transcript.delta")
        assert text == answer_for("Tell me a joke")
        await ws.close()
    finally:
        await em.stop()


async def test_the_response_failed_fault_fails_the_chosen_answer_and_the_session_serves_on(
        em: Emulator) -> None:
    ws, _ = await session(em, faults="response_failed=2")
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}
    statuses = []
    for _ in range(3):
        await send(ws, {"type": "conversation.item.create", "item": item})
        await send(ws, {"type": "response.create"})
        events = await until(ws, "response.done")
        statuses.append(events[-1]["response"])
    assert [r["status"] for r in statuses] == ["completed", "failed", "completed"]
    failed = statuses[1]
    assert failed["status_details"] == {"type": "failed", "error": {
        "type": "server_error", "code": "internal_error",
        "message": "The response failed (injected by the emulator)."}}
    assert failed["output"][0]["status"] == "incomplete" and "usage" in failed
    said = failed["output"][0]["content"][0]["transcript"]
    assert said and answer_for("hello").startswith(said) and said != answer_for("hello")
    await ws.close()


async def test_text_only_sessions_stream_text(em: Emulator) -> None:
    ws, _ = await session(em, modalities=["text"])
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}
    await send(ws, {"type": "conversation.item.create", "item": item})
    await send(ws, {"type": "response.create"})
    events = await until(ws, "response.done")
    assert "response.audio.delta" not in types(events)
    text = "".join(e["delta"] for e in events if e["type"] == "response.text.delta")
    assert text == answer_for("hello")
    assert next(e for e in events if e["type"] == "response.text.done")["text"] == text
    await ws.close()


async def test_input_at_24khz_is_heard_after_resampling(em: Emulator) -> None:
    audio = {"input": {"format": {"type": "pcm", "sample_rate": 24000}}}
    ws, _ = await session(em, audio=audio)
    pcm24 = resample(user_utterance("Thank you very much."), 16000, 24000)
    await append_audio(ws, pcm24, chunk=4800)
    events = await until(ws, "conversation.item.input_audio_transcription.completed")
    assert events[-1]["transcript"] == "Thank you very much."
    await ws.close()


async def test_unknown_speech_is_transcribed_honestly(em: Emulator) -> None:
    ws, _ = await session(em)
    await append_audio(ws, user_utterance("Where is my phone?"))
    events = await until(ws, "response.done")
    heard = next(e for e in events if e["type"].endswith("transcription.completed"))
    assert heard["transcript"].startswith("[unrecognized speech, ")
    text = "".join(e["delta"] for e in events if e["type"] == "response.audio_transcript.delta")
    assert text == answer_for("")  # "please say it again", not an answer to a placeholder
    await ws.close()


async def test_asr_model_only_transcribes(em: Emulator) -> None:
    ws, _ = await session(em, ASR)
    await append_audio(ws, user_utterance("Play some music."))
    events = await until(ws, "conversation.item.input_audio_transcription.completed")
    assert types(events)[:4] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.created",
    ]
    partials = [
        e for e in events if e["type"] == "conversation.item.input_audio_transcription.text"
    ]
    assert partials and all(p["text"] + " " + p["stash"] in "Play some music." for p in partials)
    assert events[-1]["transcript"] == "Play some music."
    with pytest.raises(asyncio.TimeoutError):
        await recv(ws, timeout=0.4)  # no response follows
    await send(ws, {"type": "response.create"})
    assert (await recv(ws))["type"] == "error"
    await ws.close()


async def test_session_finish_flushes_the_last_words_then_closes(em: Emulator) -> None:
    ws, _ = await session(em, ASR)
    await append_audio(ws, user_utterance("Goodbye.", trail_ms=100))  # no end-of-speech silence
    await send(ws, {"type": "session.finish"})
    events = await until(ws, "session.finished")
    done = [e for e in events if e["type"].endswith("transcription.completed")]
    assert [e["transcript"] for e in done] == ["Goodbye."]
    assert await closed(ws) == 1000


async def test_session_time_limit_closes_the_socket() -> None:
    em = await start_emulator(realtime_session_max_s=0.3)
    try:
        ws, _ = await session(em)
        t0 = time.monotonic()
        assert await closed(ws) == 1000
        assert 0.25 < time.monotonic() - t0 < 2.0
    finally:
        await em.stop()


async def test_missing_model_and_wrong_key_are_refused(em: Emulator) -> None:
    for url, key in (
        (em.ws_url + "/api-ws/v1/realtime", API_KEY),
        (em.ws_url + PATH + OMNI, "bad"),
    ):
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"})
        assert info.value.response.status_code in (400, 401)


# --- injected faults ---


async def test_fault_error_event_at_the_first_response(em: Emulator) -> None:
    ws, _ = await session(em, faults="error_event")
    await append_audio(ws, user_utterance("Hello there."))
    events = await until(ws, "error")
    assert "response.created" in types(events)
    assert events[-1]["error"]["type"] == "server_error"
    assert await closed(ws) == 1011


async def test_fault_task_failed_is_a_fatal_error_at_once(em: Emulator) -> None:
    ws, _ = await session(em, faults="task_failed")
    assert (await recv(ws))["error"]["type"] == "server_error"
    assert await closed(ws) == 1011


async def test_fault_malformed_binary_and_oversized_frames(em: Emulator) -> None:
    ws, _ = await session(em, faults="malformed,binary_frame,oversized=300000")
    await append_audio(ws, user_utterance("Hello there."))
    odd: list[Any] = []
    while len(odd) < 3:
        raw = await asyncio.wait_for(ws.recv(), 5)
        if isinstance(raw, bytes):
            odd.append(raw)
            continue
        try:
            ev = json.loads(raw)
        except json.JSONDecodeError:
            odd.append(raw)
            continue
        if ev["type"] == "emulator.oversized":
            assert len(raw) >= 299_000
            odd.append(ev["type"])
    assert isinstance(odd[0], str) and isinstance(odd[1], bytes) and odd[2] == "emulator.oversized"
    await ws.close()


async def test_fault_half_open_and_drop(em: Emulator) -> None:
    ws, _ = await session(em, faults="half_open=2")
    await asyncio.wait_for(await ws.ping(), 2)  # not silent yet: one frame of two was sent
    await send(ws, {"type": "session.update", "session": {"instructions": "x"}})
    assert (await recv(ws))["type"] == "session.updated"  # the second and last frame
    await send(ws, {"type": "session.update", "session": {"instructions": "y"}})
    with pytest.raises(asyncio.TimeoutError):
        await recv(ws, timeout=0.4)
    pong = await ws.ping()
    with pytest.raises(asyncio.TimeoutError):  # silent means no pongs either
        await asyncio.wait_for(pong, 0.5)
    assert ws.close_code is None
    await ws.close()
    ws = await connect(em, PATH + OMNI, faults="drop_after=2")
    await recv(ws)
    await send(ws, {"type": "session.update", "session": {"instructions": "x"}})
    await recv(ws)
    await send(ws, {"type": "session.update", "session": {"instructions": "y"}})
    with pytest.raises(websockets.ConnectionClosedError):
        await recv(ws)


async def test_session_update_mid_utterance_keeps_the_turn(em: Emulator) -> None:
    ws, _ = await session(em)
    pcm = user_utterance("How are you doing?", lead_ms=500, trail_ms=1200)
    half = pcm.size // 2
    await append_audio(ws, pcm[:half])
    await send(ws, {"type": "session.update", "session": {"instructions": "Be brief."}})
    await append_audio(ws, pcm[half:])
    events = await until(ws, "conversation.item.input_audio_transcription.completed")
    assert types(events).count("input_audio_buffer.speech_started") == 1
    assert events[-1]["transcript"] == "How are you doing?"
    await ws.close()


async def test_run_wide_counted_fault_hits_only_the_first_connection() -> None:
    em = await start_emulator(faults="drop_after=1@realtime*1")
    try:
        for expect_drop in (True, False):
            ws, _ = await session(em)
            await send(ws, {"type": "session.update", "session": {"instructions": "x"}})
            if expect_drop:
                with pytest.raises(websockets.ConnectionClosedError):
                    await recv(ws)
            else:
                assert (await recv(ws))["type"] == "session.updated"
                await ws.close()
    finally:
        await em.stop()
