"""The phrasebook recognizer: robust to level, noise, resampling and silence; never guesses."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from agent.emulator import speech
from agent.emulator.recognizer import Recognizer, default_recognizer, phrasebook

RATE = 16000
UNRECOGNIZED = re.compile(r"^\[unrecognized speech, \d+\.\d s\]$")
NOT_IN_BOOK = [
    "The quick brown fox jumps over the lazy dog.",
    "Turn on the lights.",
    "Where is my phone?",
    "I like green apples.",
    "Tell me a story.",
    "Good night.",
]


def degrade(x: np.ndarray, gain: float, snr_db: float | None, seed: int) -> np.ndarray:
    """Through a 24 kHz device and back, louder/quieter, with noise, framed by silence."""
    y = speech.resample(speech.resample(x, RATE, 24000), 24000, RATE).astype(np.float64) * gain
    rms = np.sqrt(np.mean(y**2))
    y = np.concatenate([np.zeros(RATE * 4 // 10), y, np.zeros(RATE * 9 // 10)])
    if snr_db is not None:
        y += np.random.default_rng(seed).standard_normal(y.size) * rms * 10 ** (-snr_db / 20)
    return np.clip(y, -32768, 32767).astype(np.int16)


@pytest.mark.unit
def test_phrasebook_is_a_dozen_distinct_phrases() -> None:
    book = phrasebook()
    assert 8 <= len(book) <= 12 and len(set(book)) == len(book)
    assert default_recognizer().phrasebook() == book


@pytest.mark.parametrize("gain,snr", [(0.1, 25.0), (2.5, 20.0), (1.0, None)])
def test_every_phrase_is_recognized_through_level_noise_and_resampling(gain, snr) -> None:
    rec = default_recognizer()
    for i, text in enumerate(phrasebook()):
        heard = rec.recognize(degrade(speech.synthesize(text, RATE), gain, snr, seed=i))
        assert heard == text  # and therefore never another phrase


def test_unrelated_sounds_are_not_recognized() -> None:
    rec = default_recognizer()
    t = np.arange(2 * RATE) / RATE
    rng = np.random.default_rng(5)
    sounds = {
        "noise": rng.standard_normal(t.size) * 3000,
        "tone": np.sin(2 * np.pi * 440 * t) * 8000,
        "warble": np.sin(2 * np.pi * (300 + 100 * np.sin(2 * np.pi * 3 * t)) * t) * 8000,
        "silence": np.zeros(t.size),
    }
    for name, x in sounds.items():
        assert UNRECOGNIZED.match(rec.recognize(x.astype(np.int16))), name


def test_other_phrases_are_reported_as_unrecognized_with_their_duration() -> None:
    rec = default_recognizer()
    for i, text in enumerate(NOT_IN_BOOK):
        voice = speech.synthesize(text, RATE)
        heard = rec.recognize(degrade(voice, 1.0, 30.0, seed=i))
        assert UNRECOGNIZED.match(heard), (text, heard)
        seconds = float(heard.split(", ")[1].split(" ")[0])
        assert seconds == pytest.approx(voice.size / RATE, abs=0.25)


def test_long_segments_are_not_matched_and_cost_little() -> None:
    x = np.tile(speech.synthesize("Hello there.", RATE), 30)  # > 15 s
    assert x.size > 15 * RATE
    t0 = time.perf_counter()
    assert UNRECOGNIZED.match(default_recognizer().recognize(x))
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.unit
def test_recognizer_works_with_the_fallback_voice() -> None:
    rec = Recognizer(synth=speech.synthetic_voice)
    for i, text in enumerate(phrasebook()):
        x = degrade(speech.synthetic_voice(text, RATE), 0.5, 25.0, seed=i)
        assert rec.recognize(x) == text
    for text in ("Where is my phone?", "Turn on the lights."):
        x = degrade(speech.synthetic_voice(text, RATE), 1.0, 30.0, seed=1)
        assert UNRECOGNIZED.match(rec.recognize(x)), text
    assert UNRECOGNIZED.match(rec.recognize(np.zeros(RATE, dtype=np.int16)))
