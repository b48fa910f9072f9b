"""Emulator tests: an HTTP client session, sample audio and the test key's headers as fixtures.

The `emulator`, `emulator_thread` and `api_key` fixtures come from `tests.support.emulator`
(with its `FAST` timings): real loopback sockets, only the waits shrunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest

from tests.support import samples as sample_builders
from tests.support.emulator import API_KEY


def wav_of(pcm: np.ndarray, rate: int) -> bytes:
    """16-bit mono WAV bytes of int16 samples."""
    return sample_builders.wav_bytes(np.asarray(pcm).astype(np.int16), rate)


class Samples:
    """Audio builders for tests, as a fixture."""

    speech_wav = staticmethod(sample_builders.speech_wav)
    silence_wav = staticmethod(sample_builders.silence_wav)
    wav_of = staticmethod(wav_of)
    data_uri = staticmethod(sample_builders.data_uri)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def samples() -> type[Samples]:
    return Samples


@pytest.fixture
def headers() -> dict[str, str]:
    """Authorization headers carrying the test emulator's key."""
    return {"Authorization": f"Bearer {API_KEY}"}
