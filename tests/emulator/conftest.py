"""Shared emulator fixtures: a fast in-loop `Emulator`, a threaded one for the sync SDK, helpers.

Real loopback sockets throughout; timings are shrunk through EmulatorOptions to keep the suite fast.
"""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import AsyncIterator, Iterator

import aiohttp
import numpy as np
import pytest

from agent.emulator.context import EmulatorOptions
from agent.emulator.server import Emulator, EmulatorThread

API_KEY = "sk-emulator-test"


def fast_options(**overrides: object) -> EmulatorOptions:
    """Options with delays small enough for unit tests."""
    values: dict[str, object] = {
        "api_key": API_KEY,
        "enroll_delay_s": 0.3,
        "llm_first_token_s": 0.005,
        "llm_token_s": 0.0,
        "realtime_first_delta_s": 0.01,
        "realtime_speed": 50.0,
        "cosyvoice_first_audio_s": 0.01,
    }
    values.update(overrides)
    return EmulatorOptions(**values)  # type: ignore[arg-type]


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """A running Emulator in the test's event loop (fast options, key API_KEY)."""
    em = Emulator(options=fast_options())
    await em.start()
    try:
        yield em
    finally:
        await em.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def emulator_thread() -> Iterator[EmulatorThread]:
    """An Emulator in a background thread, for synchronous clients such as the official SDK."""
    with EmulatorThread(options=fast_options()) as et:
        yield et


def speech_wav(seconds: float = 6.0, rate: int = 24000, amplitude: float = 0.3) -> bytes:
    """A WAV of a voiced, syllable-modulated tone: 'speech' to the emulator's energy checks."""
    t = np.arange(int(rate * seconds)) / rate
    envelope = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    signal = amplitude * envelope * np.sin(2 * np.pi * 160 * t)
    return wav_of((signal * 32767).astype(np.int16), rate)


def silence_wav(seconds: float = 6.0, rate: int = 24000) -> bytes:
    return wav_of(np.zeros(int(rate * seconds), dtype=np.int16), rate)


def wav_of(pcm: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


def data_uri(data: bytes, mime: str = "audio/wav") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


class Samples:
    """Audio builders for tests (a fixture, since conftest modules are not importable)."""

    speech_wav = staticmethod(speech_wav)
    silence_wav = staticmethod(silence_wav)
    wav_of = staticmethod(wav_of)
    data_uri = staticmethod(data_uri)


@pytest.fixture
def samples() -> type[Samples]:
    return Samples


@pytest.fixture
def headers() -> dict[str, str]:
    """Authorization headers carrying the test emulator's key."""
    return auth()


@pytest.fixture
def api_key() -> str:
    return API_KEY
