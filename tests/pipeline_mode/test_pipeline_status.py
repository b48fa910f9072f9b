"""What pipeline mode says in the status: a failed turn's reason and the synthesis socket's health."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agent.backoff import Backoff
from agent.llm_errors import AuthError, ThrottledError, TransientError
from agent.pipeline_status import LLMUnavailable, SynthesisHealth, spoken_extent, turn_failure
from agent.status import Status
from agent.tts.errors import SynthesisAuthError, SynthesisError

pytestmark = pytest.mark.unit


@dataclass
class FakeTts:
    """The three things the health watch reads from the synthesis manager."""

    connected: bool = True
    last_error: str | None = None
    auth_backoff: Backoff = field(default_factory=lambda: Backoff(30.0, 300.0))


def test_each_failure_says_what_happened_and_what_to_check() -> None:
    assert turn_failure(AuthError("401 InvalidApiKey"), 60.0) == (
        "LLM authentication failed: 401 InvalidApiKey; check dashscope.api_key and region; "
        "retrying in 60 s")
    assert turn_failure(ThrottledError("429")).startswith("LLM throttled, this turn is dropped")
    assert turn_failure(TransientError("500")).startswith("LLM failed, this turn is dropped")
    assert turn_failure(LLMUnavailable("blocked")) == "blocked (this turn is dropped)"
    assert turn_failure(SynthesisAuthError("InvalidApiKey", "no")).startswith(
        "synthesis authentication failed")
    assert turn_failure(SynthesisError("Boom", "x"), spoken="Hello. ").startswith(
        "synthesis failed, the answer was cut short")


def test_a_failure_after_part_of_the_answer_was_spoken_says_it_was_cut_short_and_where() -> None:
    spoken = "Why did the microphone go to school? "
    assert turn_failure(TransientError("500 InternalError"), spoken=spoken) == (
        "LLM failed mid-answer, the answer was cut short after 1 sentence: 500 InternalError")
    assert turn_failure(ThrottledError("429"), spoken="Yes. It is") == (
        "LLM failed mid-answer, the answer was cut short after 1 sentence and part of the next: 429")
    assert turn_failure(SynthesisError("Boom", "x"), spoken=spoken).startswith(
        "synthesis failed, the answer was cut short")
    # Nothing voiced: the turn really is dropped, in the words it always had.
    assert turn_failure(TransientError("500"), spoken="  ").startswith(
        "LLM failed, this turn is dropped")
    assert turn_failure(SynthesisError("Boom", "x")).startswith("synthesis failed, this turn is dropped")
    # A refused key keeps its own advice whatever was said.
    assert turn_failure(AuthError("401"), 60.0, spoken=spoken).startswith("LLM authentication failed")


def test_spoken_extent_counts_whole_sentences_and_a_started_one() -> None:
    assert spoken_extent("One. Two! Three?") == "3 sentences"
    assert spoken_extent("It is 3.5 degrees. Then") == "1 sentence and part of the next"
    assert spoken_extent("Because it") == "part of a sentence"
    assert spoken_extent("你好。我是") == "1 sentence and part of the next"


def test_synthesis_outage_is_shown_then_cleared_in_text_mode() -> None:
    tts, status = FakeTts(connected=False, last_error="refused"), Status(mode="pipeline")
    health = SynthesisHealth(tts, status, text_mode=True)  # type: ignore[arg-type]
    health.check()
    assert status.connected is False
    assert status.last_error == "speech synthesis unavailable: refused"
    tts.connected, tts.last_error = True, None
    health.check()
    assert status.connected is True and status.last_error is None


def test_a_refused_key_says_what_to_check() -> None:
    tts, status = FakeTts(connected=False, last_error="HTTP 401"), Status(mode="pipeline")
    tts.auth_backoff.next_delay()
    SynthesisHealth(tts, status, text_mode=False).check()  # type: ignore[arg-type]
    assert status.last_error is not None
    assert status.last_error.startswith("speech synthesis: authentication failed: HTTP 401")


def test_a_turn_error_is_neither_overwritten_nor_cleared_by_the_watch() -> None:
    tts, status = FakeTts(connected=False, last_error="refused"), Status(mode="pipeline")
    status.error("LLM throttled, this turn is dropped")
    health = SynthesisHealth(tts, status, text_mode=False)  # type: ignore[arg-type]
    health.check()
    assert status.last_error == "LLM throttled, this turn is dropped"
    tts.connected = True
    health.check()
    assert status.last_error == "LLM throttled, this turn is dropped"
    assert status.connected is False  # with an ASR session, the ASR owns "connected"
