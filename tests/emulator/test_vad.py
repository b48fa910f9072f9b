"""The emulator's energy VAD on synthesized speech, silence and noise (deterministic)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.emulator import speech
from agent.emulator.vad import FRAME_MS, EnergyVad, VadEvent

pytestmark = pytest.mark.unit

RATE = 16000


def noise(ms: int, db: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(RATE * ms // 1000) * 32768 * 10 ** (db / 20)


def silence(ms: int) -> np.ndarray:
    return np.zeros(RATE * ms // 1000)


def pcm(*parts: np.ndarray) -> np.ndarray:
    return np.clip(np.concatenate(parts), -32768, 32767).astype(np.int16)


def run(vad: EnergyVad, audio: np.ndarray, chunk: int = 1600) -> list[VadEvent]:
    events: list[VadEvent] = []
    for i in range(0, audio.size, chunk):
        events += vad.feed(audio[i : i + chunk])
    return events


VOICE = speech.synthesize("What's the weather like today?", RATE).astype(np.float64)
VOICE_MS = VOICE.size * 1000 // RATE


def test_one_utterance_gives_start_and_stop_at_the_right_times() -> None:
    vad = EnergyVad(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=800)
    events = run(vad, pcm(silence(1000), VOICE, silence(1500)))
    assert [e.kind for e in events] == ["speech_started", "speech_stopped"]
    start, stop = events
    assert abs(start.speech_ms - 1000) <= 2 * FRAME_MS
    assert start.audio_ms == start.speech_ms - 300  # prefix padding included
    assert abs(stop.speech_ms - (1000 + VOICE_MS)) <= 3 * FRAME_MS
    assert stop.audio_ms == stop.speech_ms + 800  # decided after the silence duration
    assert not vad.in_speech


def test_chunk_size_does_not_change_decisions() -> None:
    audio = pcm(silence(700), VOICE, silence(1000), VOICE * 0.3, silence(1200))
    reference = run(EnergyVad(), audio, chunk=RATE)
    assert len(reference) == 4
    for chunk in (1, 37, 320, 333, 4096):
        assert run(EnergyVad(), audio, chunk=chunk) == reference


def test_short_gaps_stay_in_one_utterance_long_gaps_split() -> None:
    joined = run(
        EnergyVad(silence_duration_ms=800),
        pcm(silence(500), VOICE, silence(400), VOICE, silence(1200)),
    )
    assert [e.kind for e in joined] == ["speech_started", "speech_stopped"]
    split = run(
        EnergyVad(silence_duration_ms=300),
        pcm(silence(500), VOICE, silence(600), VOICE, silence(1200)),
    )
    assert [e.kind for e in split] == ["speech_started", "speech_stopped"] * 2


def test_steady_noise_alone_is_not_speech_but_speech_over_it_is() -> None:
    assert run(EnergyVad(), pcm(noise(6000, -40))) == []
    bg = noise(5000, -50, seed=1)
    audio = bg.copy()
    audio[RATE * 2 : RATE * 2 + VOICE.size] += VOICE * 0.5
    events = run(EnergyVad(), pcm(audio))
    assert [e.kind for e in events] == ["speech_started", "speech_stopped"]
    assert abs(events[0].speech_ms - 2000) <= 3 * FRAME_MS


def test_level_changes_do_not_matter_in_silence() -> None:
    for gain in (0.03, 0.3, 1.5):
        events = run(EnergyVad(), pcm(silence(800), VOICE * gain, silence(1000)))
        assert [e.kind for e in events] == ["speech_started", "speech_stopped"], gain


def test_clicks_do_not_start_a_turn() -> None:
    click = np.zeros(RATE // 50)
    click[:40] = 20000
    assert run(EnergyVad(), pcm(silence(500), click, silence(1000), click, silence(1000))) == []


def test_threshold_sets_sensitivity() -> None:
    # speech (RMS) only 9 dB above a steady noise floor at -45 dBFS
    voice_db = 20 * np.log10(np.sqrt(np.mean(VOICE**2)) / 32768)
    audio = noise(4000, -45, seed=2)
    audio[RATE : RATE + VOICE.size] += VOICE * 10 ** ((-36 - voice_db) / 20)
    sensitive = run(EnergyVad(threshold=-0.5), pcm(audio))
    assert [e.kind for e in sensitive][:1] == ["speech_started"]
    assert run(EnergyVad(threshold=0.9), pcm(audio)) == []


def test_force_stop_ends_an_utterance_in_progress() -> None:
    vad = EnergyVad()
    events = run(vad, pcm(silence(500), VOICE[:RATE]))
    assert [e.kind for e in events] == ["speech_started"]
    stop = vad.force_stop()
    assert stop is not None and stop.kind == "speech_stopped"
    assert stop.audio_ms == vad.processed_ms
    assert vad.force_stop() is None


@pytest.mark.parametrize("bad", [-5.0, 7.0])
def test_threshold_is_clamped(bad: float) -> None:
    assert EnergyVad(threshold=bad).margin_db >= 3.0
