"""Earcons are short, quiet, distinct, and their echo does not look like speech to a server VAD."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from agent.emulator.vad import EnergyVad
from agent.listen.earcons import KINDS, RATE, earcon

pytestmark = pytest.mark.unit

MIC_RATE = 16000


def room(rt60_s: float, tail: float, seed: int = 5) -> np.ndarray:
    """Direct path plus an exponentially decaying reverberation tail (`tail` = its amplitude)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rt60_s * MIC_RATE)) / MIC_RATE
    h = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60_s) * tail
    h[0] = 1.0
    return h


def speech_started(mic: np.ndarray) -> bool:
    events = EnergyVad(threshold=0.5, silence_duration_ms=800).feed(mic)
    return any(e.kind == "speech_started" for e in events)


def played_into_mic(sound: np.ndarray, gain: float, h: np.ndarray, noise: float, offset: int) -> np.ndarray:
    """The earcon as the microphone hears it 1 s into a quiet room, `offset` samples later."""
    heard = np.convolve(soxr.resample(sound.astype(np.float64), RATE, MIC_RATE), h) * gain
    x = np.concatenate([np.zeros(MIC_RATE + offset), heard, np.zeros(MIC_RATE)])
    x += np.random.default_rng(offset).standard_normal(x.size) * noise
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_earcon_is_short_quiet_int16_at_24_khz(kind: str) -> None:
    x = earcon(kind)
    assert x.dtype == np.int16 and RATE == 24000
    assert 0.1 < x.size / RATE < 0.25
    assert 20 * np.log10(np.abs(x).max() / 32768) < -30  # low level
    assert abs(int(x[0])) < 50 and abs(int(x[-1])) < 50  # faded in and out: no click


def test_earcons_are_distinct() -> None:
    sounds = {k: earcon(k) for k in KINDS}
    assert len({s.tobytes() for s in sounds.values()}) == len(KINDS)
    with pytest.raises(ValueError, match="unknown earcon"):
        earcon("fanfare")


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(
    ("gain", "rt60_s", "tail", "noise"),
    [
        (0.5, 0.15, 0.03, 20.0),  # speaker 6 dB above the mic's pick-up, dry room, silent mic
        (0.5, 0.3, 0.03, 20.0),  # a furnished room
        (0.5, 0.3, 0.06, 60.0),  # a livelier room with some background noise
        (1.0, 0.15, 0.03, 20.0),  # speaker at the mic's level
        (1.0, 0.3, 0.03, 60.0),
    ],
)
def test_an_earcons_echo_does_not_start_a_turn_at_the_server_vad(
    kind: str, gain: float, rt60_s: float, tail: float, noise: float
) -> None:
    h = room(rt60_s, tail)
    for offset in range(0, 320, 40):  # every alignment against the VAD's 20 ms frames
        assert not speech_started(played_into_mic(earcon(kind), gain, h, noise, offset))


def test_the_same_vad_does_take_a_plain_tone_of_that_length_for_speech() -> None:
    """The earcon's shape, not the test's room, is what keeps the VAD quiet."""
    t = np.arange(int(0.24 * RATE)) / RATE
    tone = (np.sin(2 * np.pi * 880 * t) * np.hanning(t.size) * np.abs(earcon("wake")).max()).astype(np.int16)
    assert speech_started(played_into_mic(tone, 0.5, room(0.15, 0.03), 20.0, 0))
