"""Voice-enrollment helpers: settings per voice family, fast retry options, `ensure_voice` runs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agent.account import DashScopeAccount
from agent.config import Settings
from agent.voices.client import ClientOptions
from agent.voices.ensure import EnsureOptions, VoiceResult, ensure_voice
from tests.support.emulator import API_KEY
from tests.support.settings import build_settings

FAMILY_MODE = {"qwen": "omni", "cosyvoice": "pipeline", "preset": "omni"}


def make_settings(base_url: str, state_dir: Path, *, family: str = "qwen", api_key: str = API_KEY,
                  **voice: Any) -> Settings:
    """Settings whose voice is `family` named "kiosk" (plus `voice` keys); state in `state_dir`."""
    return build_settings(FAMILY_MODE[family], base_url=base_url, work=state_dir.parent,
                          api_key=api_key, audio="none", origin="test.yaml",
                          voice={"family": family, "name": "kiosk", **voice},
                          state_dir=str(state_dir))


def fast_options(**overrides: Any) -> EnsureOptions:
    """Enrollment with short timeouts and polls, a few quick retries."""
    client = ClientOptions(
        request_timeout_s=5.0, create_timeout_s=5.0, upload_timeout_s=5.0, retries=3,
        backoff_initial_s=0.02, backoff_max_s=0.1,
    )
    values: dict[str, Any] = {
        "client": client, "poll_initial_s": 0.05, "poll_factor": 1.5, "poll_max_s": 0.2,
        "deploy_timeout_s": 5.0, "settle_delays_s": (0.1, 0.3), "lock_timeout_s": 10.0,
    }
    values.update(overrides)
    return EnsureOptions(**values)


def creates(em: Any) -> list:
    """Create requests that reached the emulator (its request log)."""
    return [r for r in em.context.request_log.records() if r.action in ("create", "create_voice")]


def store(em: Any, family: str) -> dict:
    return em.context.stores.qwen_voices if family == "qwen" else em.context.stores.cosy_voices


async def run(em: Any, tmp_path: Path, family: str = "qwen", *, options: EnsureOptions | None = None,
              log: logging.Logger | None = None, **voice: Any) -> VoiceResult:
    """ensure_voice with settings for `family` pointed at the emulator; state in tmp_path/state."""
    settings = make_settings(em.base_url, tmp_path / "state", family=family, **voice)
    return await ensure_voice(
        settings, DashScopeAccount.from_settings(settings, API_KEY), tmp_path / "state",
        log=log or logging.getLogger("test.voices"), options=options or fast_options(),
    )
