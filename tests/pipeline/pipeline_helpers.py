"""Constants and types shared by the pipeline tests (conftest modules are not importable)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from agent.emulator.server import Emulator

API_KEY = "sk-emulator-pipeline"

FAST = {
    "api_key": API_KEY,
    "llm_first_token_s": 0.01,
    "llm_token_s": 0.002,
    "cosyvoice_first_audio_s": 0.01,
}

MakeEmulator = Callable[..., Awaitable[Emulator]]
