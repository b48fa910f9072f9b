"""The voice the daemon speaks with: the configured one, or a fallback while it is refused.

SPEC §5.2 and §13: the device is never mute because enrollment failed. When enrollment is refused
(or the service cannot be reached), the daemon starts serving at once with the fallback voice —
`voice.preset`, else the model's default (CosyVoice: `capabilities.default_system_voice`; omni:
the session's default voice) — with status `voice_fallback: true`, says which capability was
refused and what to change, and keeps retrying enrollment in the background with bounded
exponential backoff. When a retry succeeds the voice is switched (omni: `session.update` and the
next session; pipeline: the next synthesis task) and `voice_fallback` goes back to false.

Only when there is no fallback voice at all (a CosyVoice model without system voices, v3.5, and no
`voice.preset`) does the daemon wait for the enrollment before serving, the status naming
`voice.preset`. A bad sample (ConfigError) still stops start-up with exit 78.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.backoff import Backoff
from agent.capabilities import Finding
from agent.config import ConfigError, Settings
from agent.modes import cosyvoice_system_voice, no_voice_message
from agent.secrets import redact
from agent.status import AgentState, Status
from agent.voices.errors import AuthError, EnrollmentError, QuotaError, VoiceError
from agent.voices.plan import capability_findings

if TYPE_CHECKING:  # enrollment pulls in aiohttp: imported when first used, after READY
    from agent.account import DashScopeAccount
    from agent.voices.ensure import EnsureOptions, VoiceResult

log = logging.getLogger("voice-agent.voices")

VOICE_RETRY = (2.0, 300.0)  # enrollment retries: first delay, cap (seconds)
AUTH_RETRY = (60.0, 900.0)  # a rejected key: slower, it needs an operator


@dataclass(frozen=True)
class Fallback:
    """What to speak with while the configured voice is unavailable."""

    voice: str | None  # None: the model's own default (omni sessions without a `voice`)
    describe: str


def fallback_voice(settings: Settings) -> Fallback | None:
    """`voice.preset`, else the model's default voice; None when the model has no voice of its own."""
    preset = settings.voice.preset
    if preset:
        return Fallback(preset, f"voice.preset {preset}")
    if settings.mode == "omni":
        return Fallback(None, f"the default voice of {settings.omni.model}")
    model = settings.pipeline.tts_model
    system = cosyvoice_system_voice(model)
    return Fallback(system, f"the system voice {system} of {model}") if system else None


# What to change when the service refuses a capability the documents say it offers.
_ALTERNATIVES = {
    "qwen_clone": "check that the account may use qwen-voice-enrollment in this region, or use "
                  "voice.family: preset",
    "cosyvoice_clone": "check that the account may use voice-enrollment in this region, or use "
                       "voice.family: preset",
    "cosyvoice_design": "check that the account may use voice-enrollment in this region, or clone "
                        "from voice.sample_url",
    "temporary_upload": "host the sample and set voice.sample_url",
}


def refused_capability(settings: Settings, error: str) -> Finding | None:
    """The capability-table row an enrollment refusal concerns (upload, design or cloning)."""
    v = settings.voice
    if v.family == "cosyvoice":
        if v.sample and "upload" in error.lower():
            capability = "temporary_upload"
        else:
            capability = "cosyvoice_design" if v.design_prompt else "cosyvoice_clone"
    elif v.family == "qwen":
        capability = "qwen_design" if v.design_prompt else "qwen_clone"
    else:
        return None
    return next((f for f in capability_findings(settings) if f.capability == capability), None)


def explain(settings: Settings, error: VoiceError | Exception) -> str:
    """The failure, and for a refusal the capability refused and what to change."""
    text = redact(str(error)) or error.__class__.__name__
    if not isinstance(error, EnrollmentError) or error.retryable:
        return f"voice enrollment: {text}"
    finding = refused_capability(settings, text)
    if finding is None:
        return f"voice enrollment refused: {text}"
    what = finding.message.split(":")[0]
    fix = finding.fix or _ALTERNATIVES.get(finding.capability, "")
    fix = f"; to change: {fix}" if fix else ""
    return f"voice enrollment refused: {text}. Refused capability: {what}{fix}"


class VoiceKeeper:
    """Enrolls the configured voice, falls back when it cannot, and switches when it can."""

    def __init__(
        self,
        settings: Settings,
        account: DashScopeAccount,
        state_dir: Path,
        status: Status,
        *,
        options: EnsureOptions | None = None,
        retry: tuple[float, float] = VOICE_RETRY,
        auth_retry: tuple[float, float] = AUTH_RETRY,
    ) -> None:
        self.settings, self.account = settings, account
        self.state_dir, self.status, self.options = state_dir, status, options
        self.backoff = Backoff(*retry)
        self.auth_backoff = Backoff(*auth_retry)
        self.result: VoiceResult | None = None
        self.on_voice: Callable[[str | None], Awaitable[None]] | None = None  # set by the daemon
        self.attempts = 0
        self._next_delay: float | None = None  # the first background wait, set when falling back

    async def _ensure(self) -> VoiceResult:
        from agent.voices.ensure import ensure_voice

        self.attempts += 1
        return await ensure_voice(self.settings, self.account, self.state_dir,
                                  log=log, options=self.options)

    def _delay(self, error: Exception) -> float:
        if isinstance(error, AuthError):
            return self.auth_backoff.next_delay()
        if isinstance(error, QuotaError):
            return self.auth_backoff.cap
        return self.backoff.next_delay()

    async def _try(self) -> tuple[VoiceResult | None, Exception | None]:
        import aiohttp

        try:
            return await self._ensure(), None
        except ConfigError:
            raise  # an invalid sample: exit 78, the operator must fix it
        except (VoiceError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            return None, e

    async def first_voice(self) -> str | None:
        """The voice to start serving with; call `keep()` afterwards (a background task)."""
        while True:
            result, error = await self._try()
            if result is not None:
                self._use(result)
                return result.voice_id or None
            assert error is not None
            delay = self._delay(error)
            why = explain(self.settings, error)
            fallback = fallback_voice(self.settings)
            if fallback is not None:
                self._next_delay = delay
                self._fall_back(fallback, why, delay)
                return fallback.voice
            message = f"{why}; {no_voice_message(self.settings.pipeline.tts_model)}"
            self.status.voice_problem(message)  # cleared when the enrollment works
            self.status.set_state(AgentState.ERROR, f"{message}; retrying in {delay:.1f} s")
            log.error("%s; retrying in %.1f s", message, delay)
            await asyncio.sleep(delay)

    @property
    def settled(self) -> bool:
        """The configured voice is confirmed with the service: nothing left to retry."""
        return self.result is not None and self.result.verified

    async def keep(self) -> None:
        """Retry in the background until the configured voice is confirmed, then switch to it."""
        while not self.settled:
            delay, self._next_delay = self._next_delay, None
            await asyncio.sleep(delay if delay is not None else self.backoff.next_delay())
            result, error = await self._try()
            if result is None:
                assert error is not None
                self._next_delay = self._delay(error)
                using = ("the fallback voice" if self.status.voice_fallback
                         else f"voice {self.status.voice or '(server default)'}, not verified")
                message = (f"{explain(self.settings, error)}; speaking with {using} meanwhile; "
                           f"retrying in {self._next_delay:.1f} s")
                self.status.voice_problem(message)
                log.warning("%s", message)
                continue
            previous = self.status.voice
            self._use(result)
            if result.voice_id != previous and self.on_voice is not None:
                try:
                    await self.on_voice(result.voice_id or None)
                except Exception as e:  # the mode applies it at the next session/task anyway
                    log.warning("voice: switching the running mode to %s failed: %s",
                                result.voice_id, redact(str(e)) or type(e).__name__)

    def _use(self, result: VoiceResult) -> None:
        """Speak with `result` from now on; log only what changed (retries repeat results)."""
        from agent.voices.ensure import FALLBACK

        was_fallback = self.status.voice_fallback
        before = self.result
        changed = before is None or (before.voice_id, before.outcome, before.verified) != (
            result.voice_id, result.outcome, result.verified)
        self.result = result
        self.status.voice = result.voice_id or None
        self.status.voice_fallback = result.outcome == FALLBACK
        if result.outcome == FALLBACK:
            message = (f"voice enrollment: {redact(result.note)}; speaking with voice.preset "
                       f"{result.voice_id} meanwhile")
            self.status.voice_problem(message)
            if changed:
                log.warning("%s (voice_fallback: true)", message)
            return
        if result.verified:  # an unverified (cached) result is still a retry: keep backing off
            self.backoff.reset()
        self.status.voice_problem(None)
        if was_fallback:
            log.info("voice %s enrolled (%s): switching from the fallback voice (voice_fallback: false)",
                     result.voice_id, result.outcome)
        elif changed:
            log.info("voice %s (%s%s)", result.voice_id or "(server default)", result.outcome,
                     "" if result.verified else ", not verified with the service yet")

    def _fall_back(self, fallback: Fallback, why: str, delay: float) -> None:
        self.status.voice = fallback.voice
        self.status.voice_fallback = True
        message = f"{why}; speaking with {fallback.describe} meanwhile; retrying in {delay:.1f} s"
        self.status.voice_problem(message)
        log.error("%s (voice_fallback: true)", message)
