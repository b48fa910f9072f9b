"""The omni-mode side of the daemon test kit (tests/daemonkit.py): settings and answer audio."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from daemonkit import (  # noqa: F401  (re-exported for the omni tests)
    IN_RATE,
    OUT_RATE,
    Running,
    locate,
    read_wav,
    rms,
    running_daemon,
    script,
    write_wav,
)

from agent.config import Settings
from agent.emulator.answers import answer_for
from agent.emulator.server import Emulator
from agent.emulator.speech import synthesize

API_KEY = "sk-emulator-omni-test"


def answer_audio(question: str) -> np.ndarray:
    """What the emulator speaks for a question (24 kHz)."""
    return synthesize(answer_for(question), OUT_RATE)


def agent_settings(base_url: str, work: Path, api_key: str = API_KEY, **overrides: Any) -> Settings:
    from daemonkit import file_daemon_settings

    mode = {"mode": "omni", "voice": {"family": "preset", "preset": "Tina"}}
    return file_daemon_settings(base_url, work, api_key, mode, **overrides)


@contextlib.asynccontextmanager
async def running_agent(
    work: Path,
    phrases: list[tuple[float, str]],
    *,
    emulator_options: dict[str, Any] | None = None,
    faults: str | None = None,
    api_key: str = API_KEY,
    **settings: Any,
) -> AsyncIterator[Running]:
    async with running_daemon(work, agent_settings, phrases, api_key=api_key, emulator_key=API_KEY,
                              emulator_options=emulator_options, faults=faults, **settings) as run:
        yield run


def realtime_connects(emulator: Emulator) -> int:
    log = emulator.context.request_log
    return sum(1 for r in log.records() if r.path.startswith("/api-ws/v1/realtime"))
