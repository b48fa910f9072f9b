"""Pipeline-mode tests: the `daemon` fixture runs the daemon in pipeline mode."""

from __future__ import annotations

import pytest


@pytest.fixture
def daemon_mode() -> str:
    return "pipeline"
