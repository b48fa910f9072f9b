"""Voice enrollment: make sure the configured cloned/designed voice exists (SPEC §5.2).

Public API for the daemon and the CLI (details in docs/voices.md):

- `check_voice_config(settings)`: offline family ↔ mode, voice-section and region × model checks
  (ConfigError); returns what the documents disagree on, for the caller to log.
- `keeper.VoiceKeeper`: the daemon's voice — enrolled, or the fallback voice while enrollment fails.
- `ensure_voice(settings, account, state_dir, *, log) -> VoiceResult`.
- errors: `VoiceError` (base, `.retryable`), `SampleError(ConfigError)`, `AuthError`,
  `QuotaError`, `EnrollmentError`, `DeployTimeout`, `ServiceUnavailable`, `Busy`.
- `main_voices(args) -> int`: the `voice-agent voices ...` subcommand.
"""

from __future__ import annotations

from typing import Any

from agent.voices.errors import (
    AuthError,
    Busy,
    DeployTimeout,
    EnrollmentError,
    QuotaError,
    SampleError,
    ServiceUnavailable,
    VoiceError,
)
from agent.voices.plan import check_voice_config

__all__ = [
    "AuthError",
    "Busy",
    "DeployTimeout",
    "EnrollmentError",
    "EnsureOptions",
    "QuotaError",
    "SampleError",
    "ServiceUnavailable",
    "VoiceError",
    "VoiceResult",
    "check_voice_config",
    "ensure_voice",
    "main_voices",
]


def __getattr__(name: str) -> Any:
    # ensure/cli pull in aiohttp and numpy; config validation only needs check_voice_config.
    if name in ("ensure_voice", "VoiceResult", "EnsureOptions"):
        from agent.voices import ensure

        return getattr(ensure, name)
    if name == "main_voices":
        from agent.voices.cli import main_voices

        return main_voices
    raise AttributeError(name)
