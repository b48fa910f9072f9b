"""What pipeline mode says in the status: why a turn failed, and the synthesis socket's health.

Kept apart from `agent.pipeline` (the driver) because both are policy about wording and about which
error may overwrite which, not about running tasks.
"""

from __future__ import annotations

import logging
import re

from agent.llm_errors import AuthError, LLMError, ThrottledError
from agent.secrets import redact
from agent.status import Status
from agent.tts.errors import SynthesisAuthError, SynthesisError
from agent.tts.manager import SynthesisManager

log = logging.getLogger("voice-agent.pipeline")


class LLMUnavailable(Exception):
    """The LLM is not asked at all (auth backoff in force); the turn fails at once."""


_ENDS = ".!?…。！？"
_SENTENCE_END = re.compile(r"[.!?…](?=\s|$)|[。！？]")  # "3.5" is no sentence end


def spoken_extent(text: str) -> str:
    """How much of an answer `text` is, in sentences: "2 sentences", "1 sentence and part of
    the next", "part of a sentence" (the status names where a failed answer stopped)."""
    text = text.strip()
    whole = len(_SENTENCE_END.findall(text))
    partial = bool(text) and text[-1] not in _ENDS
    if whole == 0:
        return "part of a sentence"
    counted = f"{whole} sentence{'s' if whole > 1 else ''}"
    return f"{counted} and part of the next" if partial else counted


def turn_failure(exc: BaseException, auth_retry_s: float | None = None, *, spoken: str = "") -> str:
    """The status error for a turn that failed with `exc` (redacted).

    `auth_retry_s`: when the LLM refused the key, how long LLM requests are now blocked.
    `spoken`: the part of the answer that was voiced before the failure. With some, the turn is
    not dropped but cut short (and counted), and the status says so and where it stopped; with
    none, the user got no answer: "this turn is dropped".
    """
    if spoken.strip() and isinstance(exc, LLMError) and not isinstance(exc, AuthError):
        why = (f"LLM failed mid-answer, the answer was cut short after "
               f"{spoken_extent(spoken)}: {exc}")
    elif isinstance(exc, AuthError):
        why = (f"LLM authentication failed: {exc}; check dashscope.api_key and region; "
               f"retrying in {auth_retry_s or 0:.0f} s")
    elif isinstance(exc, ThrottledError):
        why = f"LLM throttled, this turn is dropped: {exc}"
    elif isinstance(exc, LLMUnavailable):
        why = f"{exc} (this turn is dropped)"
    elif isinstance(exc, LLMError):
        why = f"LLM failed, this turn is dropped: {exc}"
    elif isinstance(exc, SynthesisAuthError):
        why = f"synthesis authentication failed: {exc}; check dashscope.api_key and region"
    elif isinstance(exc, SynthesisError) and not spoken.strip():
        why = f"synthesis failed, this turn is dropped: {exc}"
    elif isinstance(exc, SynthesisError):
        why = f"synthesis failed, the answer was cut short: {exc}"
    else:
        why = f"turn failed: {exc.__class__.__name__}: {exc}"
        log.error("turn failed unexpectedly", exc_info=exc)
    return redact(why)


class SynthesisHealth:
    """Copies the synthesis socket's health into the status (`check()` periodically).

    The socket reconnects in the background, so without this an outage of CosyVoice alone
    (refused, 401/500 at the upgrade) would be invisible until a turn failed on it. In text
    mode there is no ASR session, so "connected" means the synthesis socket is up. A more
    specific error (a failed turn's) is not overwritten, and only our own is cleared.
    """

    def __init__(self, tts: SynthesisManager, status: Status, *, text_mode: bool) -> None:
        self.tts = tts
        self.status = status
        self.text_mode = text_mode
        self.error: str | None = None  # the status error this watch set

    def check(self) -> None:
        up = self.tts.connected
        if self.text_mode:
            self.status.connected = up
        problem = None if up else self.tts.last_error
        if problem:
            if self.tts.auth_backoff.attempt:  # the key was refused: say what to check
                message = redact(f"speech synthesis: authentication failed: {problem}; check "
                                 "dashscope.api_key and region; retrying in minutes")
            else:
                message = redact(f"speech synthesis unavailable: {problem}")
            if self.status.last_error in (None, self.error) and self.status.last_error != message:
                self.status.error(message)
                self.error = message
        elif self.error is not None:
            if self.status.last_error == self.error:
                self.status.clear_error()
            self.error = None
