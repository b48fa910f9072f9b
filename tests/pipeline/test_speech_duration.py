"""The length hint pipeline mode gives the player (agent/tts/duration.py): an upper estimate."""

from __future__ import annotations

import pytest

from agent.tts.duration import CJK_S, CLAUSE_S, DIGIT_S, SENTENCE_S, WORD_S, speech_seconds

pytestmark = pytest.mark.unit


def test_no_text_takes_no_time():
    assert speech_seconds("") == 0.0
    assert speech_seconds("   \n") == 0.0


def test_words_digits_and_pauses_add_up():
    assert speech_seconds("Hello, world.") == pytest.approx(2 * WORD_S + CLAUSE_S + SENTENCE_S)
    assert speech_seconds("It is 2026!") == pytest.approx(2 * WORD_S + 4 * DIGIT_S + SENTENCE_S)
    assert speech_seconds("don't stop-gap") == pytest.approx(2 * WORD_S)  # one word each
    assert speech_seconds("Привет, мир") == pytest.approx(2 * WORD_S + CLAUSE_S)


def test_chinese_counts_characters():
    assert speech_seconds("今天天气很好。") == pytest.approx(6 * CJK_S + SENTENCE_S)
    assert speech_seconds("好的，OK") == pytest.approx(2 * CJK_S + CLAUSE_S + WORD_S)


def test_it_errs_long_against_ordinary_speaking_rates():
    """Slower than 150 words and 5 characters a minute/second: a hint must not be short."""
    english = " ".join(["word"] * 150)
    assert speech_seconds(english) >= 60.0
    assert speech_seconds("字" * 300) >= 60.0


def test_more_text_never_takes_less_time():
    text = "The weather today is sunny, 25 degrees. 明天会下雨。"
    times = [speech_seconds(text[:i]) for i in range(len(text) + 1)]
    # Cutting inside a word can only merge or split words; whole pieces only grow.
    pieces = [speech_seconds(p) for p in ("The weather", "The weather today is sunny,", text)]
    assert pieces == sorted(pieces) and times[-1] == pieces[-1]
