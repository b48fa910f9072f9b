"""The official dashscope SDK's WebSocket clients, unchanged, against the emulator (§8).

Only the URL and the key are set: if these tests pass, the emulator speaks the protocol the SDK
was written for, which keeps it honest.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import dashscope
import numpy as np
import pytest
from dashscope.audio.qwen_omni import (
    MultiModality,
    OmniRealtimeCallback,
    OmniRealtimeConversation,
)
from dashscope.audio.qwen_omni.omni_realtime import AudioFormat as OmniFormat
from dashscope.audio.qwen_omni.omni_realtime import TranscriptionParams
from dashscope.audio.tts_v2 import AudioFormat, ResultCallback, SpeechSynthesizer
from dashscope.common.error import RequestFailure

from agent.emulator.answers import answer_for
from agent.emulator.server import EmulatorThread
from agent.emulator.speech import synthesize, user_utterance
from tests.support.emulator import API_KEY, options
from tests.support.emulator import WS_FAST as FAST
from tests.support.ws import ASR, OMNI

pytestmark = pytest.mark.sdk


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    with EmulatorThread(options=options(**FAST)) as et:
        monkeypatch.setattr(dashscope, "api_key", API_KEY)
        monkeypatch.setattr(dashscope, "base_websocket_api_url", et.ws_url + "/api-ws/v1/inference")
        yield et


class TtsCallback(ResultCallback):
    def __init__(self) -> None:
        self.audio = b""
        self.events: list[dict[str, Any]] = []
        self.completed = threading.Event()
        self.errors: list[str] = []

    def on_data(self, data: bytes) -> None:
        self.audio += data

    def on_event(self, message: str) -> None:
        self.events.append(json.loads(message))

    def on_complete(self) -> None:
        self.completed.set()

    def on_error(self, message: Any) -> None:
        self.errors.append(str(message))


def test_speech_synthesizer_streaming_input(emu: EmulatorThread) -> None:
    cb = TtsCallback()
    synth = SpeechSynthesizer(
        model="cosyvoice-v3-flash",
        voice="longanyang",
        format=AudioFormat.PCM_24000HZ_MONO_16BIT,
        callback=cb,
    )
    for piece in ("Hello there. How are", " you doing", " today? Goodbye."):
        synth.streaming_call(piece)
    synth.streaming_complete(complete_timeout_millis=20000)
    assert cb.completed.is_set() and not cb.errors
    ends = [e for e in cb.events if e["payload"]["output"]["type"] == "sentence-end"]
    spoken = [e["payload"]["output"]["original_text"] for e in ends]
    assert spoken == ["Hello there.", "How are you doing today?", "Goodbye."]
    expected = b"".join(synthesize(s, 24000).astype("<i2").tobytes() for s in spoken)
    assert cb.audio == expected
    assert synth.get_response()["payload"]["usage"]["characters"] == len(
        "Hello there. How are you doing today? Goodbye."
    )


def test_speech_synthesizer_reports_task_failed(emu: EmulatorThread) -> None:
    synth = SpeechSynthesizer(
        model="cosyvoice-v3-flash",
        voice="no-such-voice",
        format=AudioFormat.PCM_24000HZ_MONO_16BIT,
        callback=TtsCallback(),
    )
    with pytest.raises(RequestFailure) as info:
        synth.streaming_call("Hello there.")
    assert "418" in str(info.value)


class OmniCallback(OmniRealtimeCallback):
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.response_done = threading.Event()
        self.transcribed = threading.Event()
        self.closed = threading.Event()

    def on_event(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        if message["type"] == "response.done":
            self.response_done.set()
        if message["type"] == "conversation.item.input_audio_transcription.completed":
            self.transcribed.set()

    def on_close(self, close_status_code: Any, close_msg: Any) -> None:
        self.closed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


def speak(conv: OmniRealtimeConversation, text: str) -> None:
    pcm = user_utterance(text, lead_ms=300, trail_ms=1200)
    for i in range(0, pcm.size, 3200):  # 200 ms chunks, like the official samples
        conv.append_audio(base64.b64encode(pcm[i : i + 3200].tobytes()).decode())


def test_omni_realtime_conversation(emu: EmulatorThread) -> None:
    cb = OmniCallback()
    conv = OmniRealtimeConversation(
        model=OMNI, callback=cb, url=emu.ws_url + "/api-ws/v1/realtime", api_key=API_KEY
    )
    conv.connect()
    conv.update_session(
        output_modalities=[MultiModality.AUDIO, MultiModality.TEXT],
        voice="Tina",
        input_audio_format=OmniFormat.PCM_16000HZ_MONO_16BIT,
        output_audio_format=OmniFormat.PCM_24000HZ_MONO_16BIT,
        enable_input_audio_transcription=True,
        enable_turn_detection=True,
        instructions="You are a helpful voice assistant.",
    )
    speak(conv, "Tell me a joke.")
    assert cb.response_done.wait(15)
    assert conv.get_session_id().startswith("sess_")
    assert cb.of("session.updated")[0]["session"]["instructions"].startswith("You are")
    assert cb.of("conversation.item.input_audio_transcription.completed")[0]["transcript"] == (
        "Tell me a joke."
    )
    answer = answer_for("Tell me a joke.")
    audio = b"".join(base64.b64decode(e["delta"]) for e in cb.of("response.audio.delta"))
    assert np.array_equal(np.frombuffer(audio, "<i2"), synthesize(answer, 24000))
    assert "".join(e["delta"] for e in cb.of("response.audio_transcript.delta")) == answer
    assert conv.get_last_response_id() == cb.of("response.done")[0]["response"]["id"]
    conv.end_session(timeout=5)  # waits for session.finished
    assert cb.closed.wait(5)


def test_omni_realtime_cancel_response(emu: EmulatorThread) -> None:
    emu.context.options.realtime_speed = 1.0
    cb = OmniCallback()
    conv = OmniRealtimeConversation(
        model=OMNI, callback=cb, url=emu.ws_url + "/api-ws/v1/realtime", api_key=API_KEY
    )
    conv.connect()
    conv.update_session(output_modalities=[MultiModality.AUDIO, MultiModality.TEXT], voice="Tina")
    speak(conv, "Hello there.")
    assert cb.transcribed.wait(10)
    conv.cancel_response()
    assert cb.response_done.wait(10)
    assert cb.of("response.done")[0]["response"]["status"] == "cancelled"
    conv.close()


def test_omni_realtime_conversation_reads_a_failed_response(emu: EmulatorThread) -> None:
    emu.context.faults.set("response_failed@realtime")
    cb = OmniCallback()
    conv = OmniRealtimeConversation(
        model=OMNI, callback=cb, url=emu.ws_url + "/api-ws/v1/realtime", api_key=API_KEY
    )
    conv.connect()
    conv.update_session(output_modalities=[MultiModality.AUDIO, MultiModality.TEXT], voice="Tina")
    speak(conv, "Tell me a joke.")
    assert cb.response_done.wait(15)
    cb.response_done.clear()
    failed = cb.of("response.done")[0]["response"]
    assert failed["status"] == "failed" and failed["status_details"]["error"]["code"] == "internal_error"
    assert conv.get_last_response_id() == failed["id"]  # the SDK tracked it like any response
    speak(conv, "Thank you very much.")
    assert cb.response_done.wait(15)
    assert cb.of("response.done")[1]["response"]["status"] == "completed"
    assert not cb.closed.is_set()
    conv.close()


def test_realtime_asr_with_the_sdk(emu: EmulatorThread) -> None:
    cb = OmniCallback()
    conv = OmniRealtimeConversation(
        model=ASR, callback=cb, url=emu.ws_url + "/api-ws/v1/realtime", api_key=API_KEY
    )
    conv.connect()
    conv.update_session(
        output_modalities=[MultiModality.TEXT],
        enable_turn_detection=True,
        turn_detection_threshold=0.0,
        turn_detection_silence_duration_ms=400,
        transcription_params=TranscriptionParams(language="en", sample_rate=16000),
    )
    speak(conv, "Set a timer for five minutes.")
    assert cb.transcribed.wait(10)
    done = cb.of("conversation.item.input_audio_transcription.completed")[0]
    assert done["transcript"] == "Set a timer for five minutes."
    assert not cb.of("response.created")
    conv.end_session(timeout=5)
