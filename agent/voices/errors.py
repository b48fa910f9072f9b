"""Enrollment errors, and the mapping from DashScope error replies to what the operator should do.

Every exception here carries `retryable`: the daemon's contract (docs/voices.md) is to retry in the
background only when that is True (network down, service overloaded, voice still in review), and to
report and stop trying otherwise (bad key, bad sample, quota, rejected voice). Messages never
contain the API key: service texts pass through `agent.secrets.redact`.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import ConfigError
from agent.secrets import redact

LIST_HINT = "`voice-agent voices list`"
DELETE_HINT = "`voice-agent voices delete ID`"


class VoiceError(Exception):
    """Base of every enrollment failure."""

    retryable = False


class SampleError(ConfigError, VoiceError):
    """The sample (voice.sample / voice.sample_url) is unusable: exit 78, fix the sample."""


class AuthError(VoiceError):
    """The service rejected the API key (or workspace)."""


class QuotaError(VoiceError):
    """The account's voice storage is full: voices must be deleted."""


class EnrollmentError(VoiceError):
    """The service refused or failed the enrollment (bad parameter, review rejected, ...)."""


class DeployTimeout(EnrollmentError):
    """The voice exists but is still in review (DEPLOYING) after the overall timeout."""

    retryable = True


class ServiceUnavailable(VoiceError):
    """Network down, timeouts, 5xx or throttling that outlasted the retries."""

    retryable = True


class Busy(VoiceError):
    """Another voice-agent process kept the voice cache locked (it is enrolling) for too long."""

    retryable = True


class VoiceNotFound(VoiceError):
    """A voice id the service does not know (deleted, or from another account/region)."""


@dataclass
class ServiceReply:
    """A non-2xx reply from the service, as parsed from its JSON error body."""

    status: int
    code: str
    message: str
    request_id: str = ""
    action: str = ""
    retry_after_s: float | None = None

    def describe(self) -> str:
        rid = f", request_id {self.request_id}" if self.request_id else ""
        msg = redact(self.message)[:300]
        return f"HTTP {self.status} {self.code or '(no code)'}: {msg}{rid}"


def is_throttle(reply: ServiceReply) -> bool:
    """Rate throttling that clears by itself (not the voice storage quota)."""
    return reply.status == 429 and reply.code != "Throttling.AllocationQuota"


def is_transient(reply: ServiceReply) -> bool:
    """Worth retrying with backoff for calls that cannot create anything."""
    return is_throttle(reply) or reply.status in (408, 500, 502, 503, 504)


def classify(reply: ServiceReply, *, what: str) -> VoiceError:
    """Map a service error to the exception that tells the operator what to do.

    `what` names the operation for the message, e.g. "create voice 'kiosk' (qwen)".
    """
    code = reply.code or ""
    detail = reply.describe()
    head = f"{what} failed: {detail}"
    if reply.status == 401 or code in ("InvalidApiKey", "NOT AUTHORIZED"):
        return AuthError(
            f"{head}. Check dashscope.api_key and dashscope.region: API keys are region-specific "
            "(a Beijing key fails in Singapore and vice versa); with dashscope.workspace set, "
            "check that the key may use that workspace"
        )
    if code == "Throttling.AllocationQuota":
        return QuotaError(
            f"{head}. The account's voice storage is full (1000 voices): list voices with "
            f"{LIST_HINT} and delete unused ones with {DELETE_HINT}"
        )
    if code.startswith("Audio."):
        return SampleError(f"voice.sample: the service rejected the sample: {detail}. {_audio_fix(code)}")
    if code == "BadRequest.InputDownloadFailed":
        return SampleError(
            f"voice.sample_url: the service could not download the sample: {detail}. The URL must "
            "be publicly reachable without authentication (or use voice.sample for a local file)"
        )
    if code in ("BadRequest.ResourceNotExist", "BadRequest.VoiceNotFound"):
        return VoiceNotFound(f"{head}. The voice does not exist (deleted, or another account/region)")
    if reply.status == 403 or code.startswith(("AccessDenied", "Model.AccessDenied", "Workspace.")):
        return EnrollmentError(
            f"{head}. The account may not use this model or workspace: check the model's "
            "activation in the Model Studio console and dashscope.workspace"
        )
    if code == "Arrearage":
        return EnrollmentError(f"{head}. The account is in arrears: settle it in the console")
    if reply.status == 404 or code in ("ModelNotFound", "model_not_found"):
        return EnrollmentError(
            f"{head}. Check the model names (omni.model / pipeline.tts_model) and dashscope.region"
        )
    if is_transient(reply):
        return ServiceUnavailable(f"{head}. The service is busy or failing; retrying later")
    return EnrollmentError(head)


def _audio_fix(code: str) -> str:
    return {
        "Audio.PreprocessError": "It needs at least 3 s of continuous clear speech without music, "
        "noise or other voices (10–20 s is best); record a cleaner sample",
        "Audio.DecoderError": "Re-export it as a 16-bit PCM mono WAV",
        "Audio.AudioRateError": "Use a sample rate of 24 kHz or more (qwen) / 16 kHz or more "
        "(cosyvoice)",
        "Audio.DurationLimitError": "Trim it to 60 s at most (10–20 s is best)",
    }.get(code, "Record a clean 10–20 s speech sample as a 16-bit mono WAV at 24 kHz or more")
