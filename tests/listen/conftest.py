"""Listening front-end tests: synthesized speech cached per session in a tmp dir (never the repo).

The synthesizers live in bench/speechsynth.py so the benchmark and the tests hear the same audio.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import speechsynth  # noqa: E402

Say = Callable[..., np.ndarray]


@pytest.fixture(scope="session")
def say(tmp_path_factory: pytest.TempPathFactory) -> Say:
    """say(text, engine="espeak", voice="en-us", stretch=1.0) -> 16 kHz int16 samples."""
    cache = tmp_path_factory.mktemp("speech")

    def _say(text: str, engine: str = "espeak", voice: str = "en-us", stretch: float = 1.0) -> np.ndarray:
        return speechsynth.synth(text, engine, voice, stretch, cache)

    return _say
