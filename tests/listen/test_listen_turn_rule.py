"""The end-of-turn rule (agent/listen/turn.py), chunk by chunk, with the probability injected.

The probability functions here are plain functions of the audio they are handed (its length,
its content), so each test also checks what the decider asks the model about.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.listen.turn import EndOfTurn, EndOfTurnDecider, TurnConfig

pytestmark = pytest.mark.unit

RATE = 16000
CHUNK = 320  # 20 ms
SPEECH = (np.arange(CHUNK) % 50 * 300).astype(np.int16).tobytes()
QUIET = np.zeros(CHUNK, dtype=np.int16).tobytes()


def feed(d: EndOfTurnDecider, ms: int, speech: bool) -> list[tuple[int, EndOfTurn]]:
    """Feed `ms` of speech or silence in 20 ms chunks; (chunk end in ms, decision) for each."""
    out = []
    for _ in range(ms // 20):
        done = d.feed(SPEECH if speech else QUIET, speech)
        if done is not None:
            out.append((done.decided_sample * 1000 // RATE, done))
    return out


def test_without_a_model_the_turn_ends_after_exactly_max_silence() -> None:
    d = EndOfTurnDecider(TurnConfig(min_silence_ms=300, max_silence_ms=300))
    assert feed(d, 1000, True) == []
    ends = feed(d, 1000, False)
    assert len(ends) == 1
    at, done = ends[0]
    assert at == 1300 and done.reason == "silence" and done.silence_ms == 300
    assert done.speech_end_sample == RATE and done.probability is None


def test_silence_before_any_speech_never_ends_a_turn() -> None:
    d = EndOfTurnDecider(TurnConfig(max_silence_ms=200), lambda a: 1.0)
    assert feed(d, 5000, False) == []
    assert d.inferences == 0 and not d.in_turn


def test_a_confident_model_ends_the_turn_at_min_silence() -> None:
    d = EndOfTurnDecider(TurnConfig(min_silence_ms=200, max_silence_ms=1600), lambda a: 0.93)
    feed(d, 800, True)
    (at, done), = feed(d, 2000, False)
    assert (at, done.reason, done.probability, d.inferences) == (1000, "model", 0.93, 1)


def test_an_unsure_model_is_asked_once_per_step_then_max_silence_ends_the_turn() -> None:
    asked: list[int] = []

    def unsure(audio: np.ndarray) -> float:
        asked.append(audio.size)
        return 0.2

    cfg = TurnConfig(min_silence_ms=200, step_ms=300, max_silence_ms=1400, threshold=0.5)
    d = EndOfTurnDecider(cfg, unsure)
    feed(d, 1000, True)
    (at, done), = feed(d, 3000, False)
    assert at == 2400 and done.reason == "silence" and done.probability == 0.2
    # asked at 200, 500, 800 and 1100 ms of silence: never more than once per step
    assert [n * 1000 // RATE for n in asked] == [1200, 1500, 1800, 2100]


def test_the_model_hears_the_turn_from_preroll_before_speech_to_now() -> None:
    heard: list[np.ndarray] = []
    d = EndOfTurnDecider(TurnConfig(preroll_ms=100, min_silence_ms=200), lambda a: heard.append(a.copy()) or 1.0)
    feed(d, 1000, False)
    feed(d, 600, True)
    feed(d, 200, False)
    (audio,) = heard
    assert audio.size == (100 + 600 + 200) * RATE // 1000
    assert not audio[: 100 * 16].any() and audio[100 * 16 : 700 * 16].any()


def test_the_model_hears_at_most_the_last_window_of_a_long_turn() -> None:
    heard: list[np.ndarray] = []
    rising = (np.arange(10 * RATE) % 30000).astype(np.int16)
    d = EndOfTurnDecider(TurnConfig(window_ms=8000, min_silence_ms=200), lambda a: heard.append(a.copy()) or 1.0)
    for i in range(0, rising.size, 1000):  # odd chunk size: the ring wraps mid-chunk
        d.feed(rising[i : i + 1000].tobytes(), True)
    feed(d, 200, False)
    expected = np.concatenate([rising, np.zeros(3200, dtype=np.int16)])[-8 * RATE :]
    np.testing.assert_array_equal(heard[0], expected)


def test_speech_in_a_pause_resets_the_silence_and_the_model_steps() -> None:
    probs = iter([0.1, 0.9])
    d = EndOfTurnDecider(TurnConfig(min_silence_ms=200, step_ms=200, max_silence_ms=800), lambda a: next(probs))
    feed(d, 500, True)
    assert feed(d, 300, False) == []  # asked at 200 ms: 0.1, not finished
    feed(d, 400, True)  # the user goes on
    (at, done), = feed(d, 1000, False)
    assert at == 1400 and done.reason == "model" and done.silence_ms == 200


def test_after_an_end_the_next_turn_starts_fresh() -> None:
    d = EndOfTurnDecider(TurnConfig(min_silence_ms=200, max_silence_ms=200))
    feed(d, 400, True)
    assert len(feed(d, 400, False)) == 1
    assert not d.in_turn and d.silence_ms == 0
    feed(d, 400, True)
    (at, done), = feed(d, 400, False)
    assert at == 1400 and done.speech_end_sample == 1200 * 16


def test_a_lone_noise_frame_neither_opens_a_turn_nor_breaks_a_silence() -> None:
    d = EndOfTurnDecider(TurnConfig(min_silence_ms=300, max_silence_ms=300, min_speech_ms=40))
    assert feed(d, 20, True) == [] and not d.in_turn  # 20 ms "speech" alone: a click
    feed(d, 500, False)
    assert not d.in_turn
    feed(d, 600, True)  # ends at 1120 ms
    feed(d, 200, False)
    assert feed(d, 20, True) == []  # a noise frame 200 ms into the pause
    (at, done), = feed(d, 400, False)
    assert at == 1420 and done.silence_ms == 300 and done.speech_end_sample == 1120 * 16


def test_with_min_speech_zero_every_speech_chunk_counts() -> None:
    d = EndOfTurnDecider(TurnConfig(min_silence_ms=300, max_silence_ms=300, min_speech_ms=0))
    feed(d, 20, True)
    assert d.in_turn
    (at, done), = feed(d, 400, False)
    assert at == 320 and done.speech_end_sample == 20 * 16


def test_reset_forgets_the_open_turn() -> None:
    d = EndOfTurnDecider(TurnConfig(max_silence_ms=300))
    feed(d, 400, True)
    d.reset()
    assert feed(d, 1000, False) == [] and not d.in_turn


def test_with_confirm_two_consecutive_confident_answers_end_the_turn() -> None:
    answers = iter([0.9, 0.3, 0.8, 0.95])  # one "complete" then an "incomplete" starts over
    cfg = TurnConfig(min_silence_ms=200, step_ms=100, max_silence_ms=1600, threshold=0.7, confirm=2)
    d = EndOfTurnDecider(cfg, lambda a: next(answers))
    feed(d, 1000, True)
    (at, done), = feed(d, 2000, False)
    # asked at 200 (yes), 300 (no), 400 (yes), 500 (yes): ends at the second yes in a row
    assert (at, done.reason, done.probability, d.inferences) == (1500, "model", 0.95, 4)


def test_with_confirm_speech_in_the_pause_forgets_the_earlier_confident_answer() -> None:
    cfg = TurnConfig(min_silence_ms=200, step_ms=200, max_silence_ms=1600, threshold=0.5, confirm=2)
    d = EndOfTurnDecider(cfg, lambda a: 0.9)
    feed(d, 500, True)
    assert feed(d, 300, False) == []  # one "complete" at 200 ms of silence
    feed(d, 200, True)  # the user goes on
    (at, done), = feed(d, 1000, False)
    assert (at - 1000, done.silence_ms, d.inferences) == (400, 400, 3)


def test_by_default_the_model_is_asked_once_per_silence_then_the_cap_ends_the_turn() -> None:
    asked: list[int] = []

    def unsure(audio: np.ndarray) -> float:
        asked.append(audio.size)
        return 0.6  # below the default threshold: "not finished"

    cfg = TurnConfig()
    d = EndOfTurnDecider(cfg, unsure)
    feed(d, 1000, True)
    (at, done), = feed(d, 3000, False)
    assert (at - 1000, done.reason) == (cfg.max_silence_ms, "silence")
    # one question, with min_silence_ms of trailing silence, as the model was trained to hear
    assert [n * 1000 // RATE for n in asked] == [1000 + cfg.min_silence_ms]  # the speech began at sample 0


def test_one_long_chunk_of_silence_costs_one_inference() -> None:
    d = EndOfTurnDecider(TurnConfig(min_silence_ms=200, step_ms=100, max_silence_ms=2000), lambda a: 0.0)
    feed(d, 400, True)
    d.feed(np.zeros(RATE, dtype=np.int16).tobytes(), False)  # 1 s at once
    assert d.inferences == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_silence_ms": 0},
        {"min_silence_ms": 900, "max_silence_ms": 800},
        {"step_ms": 0},
        {"threshold": 1.5},
        {"window_ms": 9000},
        {"min_speech_ms": -1},
        {"confirm": 0},
    ],
)
def test_impossible_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TurnConfig(**kwargs)
