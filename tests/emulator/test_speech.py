"""The emulator's voice: deterministic, speech-like, at any rate, with or without espeak-ng."""

from __future__ import annotations

import numpy as np
import pytest

from agent.emulator import speech

HAS_ESPEAK = speech.espeak_path() is not None


@pytest.fixture
def no_espeak(monkeypatch: pytest.MonkeyPatch):
    """Pretend espeak-ng is not installed (and keep cached espeak audio out of the way)."""
    speech._synthesize_cached.cache_clear()
    monkeypatch.setattr(speech, "espeak_path", lambda: None)
    yield
    speech._synthesize_cached.cache_clear()


def frame_db(pcm: np.ndarray, rate: int, frame_ms: int = 20) -> np.ndarray:
    n = rate * frame_ms // 1000
    frames = pcm[: pcm.size // n * n].astype(np.float64).reshape(-1, n)
    return 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) / 32768 + 1e-9)


def assert_speech_like(pcm: np.ndarray, rate: int) -> None:
    """Voiced, loud, with dips between words: what a VAD and a listener take for speech."""
    assert pcm.dtype == np.int16
    assert 0.4 * rate < pcm.size < 6 * rate
    db = frame_db(pcm, rate)
    assert db.max() > -20  # clearly audible
    assert (db < db.max() - 25).sum() >= 2  # pauses / weak segments, not a steady tone
    loud = db > db.max() - 10
    assert 0.15 < loud.mean() < 0.95
    # voicing: a pitch period between 2.5 ms (400 Hz) and 12.5 ms (80 Hz) in a loud frame
    k = int(np.argmax(db)) * rate // 50
    seg = pcm[k : k + rate // 25].astype(np.float64)
    seg -= seg.mean()
    ac = np.correlate(seg, seg, mode="full")[seg.size - 1 :]
    lag = rate // 400 + int(np.argmax(ac[rate // 400 : rate // 80]))
    assert ac[lag] > 0.3 * ac[0]


@pytest.mark.skipif(not HAS_ESPEAK, reason="espeak-ng not installed")
def test_espeak_voice_is_deterministic_and_speech_like() -> None:
    assert speech.backend() == "espeak-ng"
    a = speech.synthesize("What's the weather like today?")
    speech._synthesize_cached.cache_clear()
    b = speech.synthesize("What's the weather like today?")
    assert np.array_equal(a, b)
    assert_speech_like(a, 24000)
    assert np.abs(a).max() == pytest.approx(speech.PEAK, abs=2)


def test_rate_changes_sample_count_not_duration() -> None:
    text = "Tell me about the moon."
    a24, a16 = speech.synthesize(text, 24000), speech.synthesize(text, 16000)
    assert a16.size == pytest.approx(a24.size * 2 / 3, rel=0.01)
    assert_speech_like(a16, 16000)


def test_cached_results_cannot_be_altered_by_callers() -> None:
    first = speech.synthesize("Hello there.")
    first[:] = 0
    assert np.abs(speech.synthesize("Hello there.")).max() > 1000


def test_different_texts_give_different_audio() -> None:
    assert not np.array_equal(speech.synthesize("Tell me a joke."), speech.synthesize("Goodbye."))


def test_user_utterance_frames_speech_with_silence() -> None:
    u = speech.user_utterance("Hello there.", lead_ms=500, trail_ms=700)
    body = speech.synthesize("Hello there.", 16000)
    assert u.size == 8000 + body.size + 11200
    assert not u[:8000].any() and not u[-11200:].any()
    assert np.array_equal(u[8000 : 8000 + body.size], body)


def test_resample_round_trip_keeps_length_and_shape() -> None:
    x = speech.synthesize("Play some music.", 16000)
    y = speech.resample(speech.resample(x, 16000, 24000), 24000, 16000)
    assert abs(y.size - x.size) <= 2
    n = min(x.size, y.size)
    corr = np.corrcoef(x[:n].astype(float), y[:n].astype(float))[0, 1]
    assert corr > 0.95


@pytest.mark.unit
def test_fallback_voice_without_espeak(no_espeak: None) -> None:
    assert speech.backend() == "synthetic"
    a = speech.synthesize("What time is it?", 16000)
    b = speech.synthetic_voice("What time is it?", 16000)
    assert np.array_equal(a, b)
    assert np.array_equal(b, speech.synthetic_voice("What time is it?", 16000))
    assert_speech_like(a, 16000)
    assert not np.array_equal(a, speech.synthetic_voice("What time was it?", 16000))


@pytest.mark.unit
def test_fallback_voice_pauses_between_words() -> None:
    one = speech.synthetic_voice("hello", 16000)
    three = speech.synthetic_voice("hello hello hello", 16000)
    assert three.size > 2.8 * one.size  # three words and two gaps
    db = frame_db(three, 16000, 10)
    assert (db < -60).sum() >= 8  # ≥ 2 × 40 ms of near silence between the words


@pytest.mark.unit
def test_empty_text_is_empty_audio(no_espeak: None) -> None:
    assert speech.synthesize("", 24000).size == 0
