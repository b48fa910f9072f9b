"""What pipeline mode says in the status: a failed turn's reason and the synthesis socket's health."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agent.backoff import Backoff
from agent.llm_errors import AuthError, ThrottledError, TransientError
from agent.pipeline_status import LLMUnavailable, SynthesisHealth, turn_failure
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
    assert turn_failure(SynthesisError("Boom", "x")).startswith(
        "synthesis failed, the answer was cut short")


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
