"""A CosyVoice synthesis task: run-task validation, per-task state and audio rendering.

Validation follows the documented failures (reference §4.1–4.2): a missing `payload.model`, a
missing `payload.input` ("task can not be null"), out-of-range parameters, and a voice that does
not exist or belongs to another model (`[tts:]Engine return error code: 418`). Cloned voices are
looked up in the emulator's own voice store, so a voice enrolled through the emulated
customization API is usable once its status is OK.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.emulator.speech import resample, synthesize

SAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
ENGINE_418 = "[tts:]Engine return error code: 418"
_SYSTEM_VOICE = re.compile(r"^(long|loong)[a-z0-9_]+$")  # longanyang, longxiaochun_v2, ...


class TaskFailed(Exception):
    """Ends the task with `task-failed` (and, as documented, the connection)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Task:
    task_id: str
    model: str
    rate: int
    wav: bool
    gain: float
    speed: float
    ssml: bool
    pending: str = ""  # text not yet forming a complete sentence
    received: int = 0  # characters received (200 000 cap)
    texts: int = 0  # continue-tasks with text (SSML allows one)
    characters: int = 0  # billed so far, as reported in usage
    sentence_index: int = 0
    finishing: bool = False
    header_sent: bool = False
    first_audio: bool = True
    last_text_at: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None


def new_task(task_id: str, payload: dict[str, Any], cosy_voices: dict[str, Any]) -> Task:
    """A task from a run-task payload; raises TaskFailed like the service would."""
    model = payload.get("model")
    if not model:
        raise TaskFailed(
            "InvalidParameter",
            "Missing required parameter 'payload.model'! Please follow the protocol!",
        )
    if (payload.get("task_group"), payload.get("task"), payload.get("function")) != (
        "audio",
        "tts",
        "SpeechSynthesizer",
    ):
        raise TaskFailed(
            "InvalidParameter",
            "payload.task_group/task/function must be 'audio'/'tts'/'SpeechSynthesizer'.",
        )
    if not str(model).startswith(("cosyvoice-", "qwen-audio-")):
        raise TaskFailed("ModelNotFound", f"Model not exist: {model}")
    params = payload.get("parameters") or {}
    fmt = str(params.get("format") or "mp3").lower()
    if fmt not in ("pcm", "wav"):
        raise TaskFailed(
            "InvalidParameter",
            f"format '{fmt}' is not supported by the emulator (it has no encoder for it); "
            "use 'pcm' or 'wav'.",
        )
    rate = params.get("sample_rate") or 22050
    if rate not in SAMPLE_RATES:
        raise TaskFailed("InvalidParameter", f"sample_rate {rate} is not supported.")
    volume = _ranged(params, "volume", 50, 0, 100)
    speed = _ranged(params, "rate", 1.0, 0.5, 2.0)
    _ranged(params, "pitch", 1.0, 0.5, 2.0)  # validated; the emulator's voice keeps its pitch
    check_voice(str(params.get("voice") or ""), str(model), cosy_voices)
    return Task(
        task_id=task_id,
        model=str(model),
        rate=int(rate),
        wav=fmt == "wav",
        gain=volume / 50.0,
        speed=speed,
        ssml=bool(params.get("enable_ssml")),
    )


def check_voice(voice: str, model: str, cosy_voices: dict[str, Any]) -> None:
    """System voices by name; cloned ones must exist, be OK, and belong to `model`."""
    if _SYSTEM_VOICE.match(voice):
        return
    rec = cosy_voices.get(voice)
    if rec is None:
        raise TaskFailed("InvalidParameter", ENGINE_418 if voice else "Request voice is invalid!")
    deploying = time.time() < float(rec.get("ready_at", 0))
    status = "DEPLOYING" if deploying else rec.get("final_status", "OK")
    if status != "OK" or rec.get("target_model") != model:
        raise TaskFailed("InvalidParameter", ENGINE_418)


def render(task: Task, text: str) -> np.ndarray:
    """The sentence's audio at the task's rate, speed and volume (runs in a worker thread)."""
    pcm = synthesize(text, task.rate)
    if task.speed != 1.0:  # faster speech: play it as if it had been recorded at a higher rate
        pcm = resample(pcm, int(round(task.rate * task.speed)), task.rate)
    if task.gain != 1.0:
        pcm = np.clip(pcm.astype(np.float64) * task.gain, -32768, 32767).astype(np.int16)
    return pcm


def wav_header(rate: int) -> bytes:
    """A streaming WAV header: the sizes are unknown up front, so both are 0xFFFFFFFF."""
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + b"\xff" * 4 + b"WAVEfmt " + fmt + b"data" + b"\xff" * 4


def _ranged(params: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise TaskFailed("InvalidParameter", f"Parameter '{key}' must be in [{lo:g}, {hi:g}].")
    return float(value)
