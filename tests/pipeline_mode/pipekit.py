"""The pipeline-mode side of the daemon test kit (tests/daemonkit.py).

CosyVoice synthesizes each sentence separately, so the answer is located in the WAV sentence by
sentence, using the emulator's own sentence splitter and voice.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from daemonkit import (  # noqa: F401  (re-exported for the pipeline-mode tests)
    IN_RATE,
    OUT_RATE,
    Running,
    file_daemon_settings,
    locate,
    read_wav,
    rms,
    running_daemon,
    script,
    write_wav,
)

from agent.config import Settings
from agent.emulator.answers import answer_for
from agent.emulator.cosyvoice_text import split_sentences
from agent.emulator.speech import synthesize

API_KEY = "sk-emulator-pipeline-mode"
GENERATION = "/api/v1/services/aigc/text-generation/generation"
INFERENCE = "/api-ws/v1/inference"
REALTIME = "/api-ws/v1/realtime"


def sentences(text: str) -> list[str]:
    """The sentences the emulated CosyVoice speaks one by one for `text`."""
    done, rest = split_sentences(text)
    return [s.strip() for s in [*done, rest] if s.strip()]


def sentence_audio(text: str) -> list[np.ndarray]:
    """What the emulator renders for each sentence of `text` (24 kHz)."""
    return [synthesize(s, OUT_RATE) for s in sentences(text)]


def answer_sentences(question: str) -> list[np.ndarray]:
    return sentence_audio(answer_for(question))


def pipeline_settings(base_url: str, work: Path, api_key: str = API_KEY, **overrides: Any) -> Settings:
    """`section__key=value` overrides, e.g. `pipeline__input="text"`, `audio__echo="half_duplex"`."""
    mode = {"mode": "pipeline", "voice": {"family": "preset", "preset": "longanyang"},
            "pipeline": {"input": "mic"}}
    return file_daemon_settings(base_url, work, api_key, mode, **overrides)


@contextlib.asynccontextmanager
async def running_pipeline(
    work: Path,
    phrases: list[tuple[float, str]] | None = None,
    *,
    emulator_options: dict[str, Any] | None = None,
    faults: str | None = None,
    api_key: str = API_KEY,
    **settings: Any,
) -> AsyncIterator[Running]:
    async with running_daemon(work, pipeline_settings, phrases or [], api_key=api_key,
                              emulator_key=API_KEY, emulator_options=emulator_options,
                              faults=faults, **settings) as run:
        yield run
