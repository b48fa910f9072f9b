"""Pipeline client tests: the emulator quick at LLM tokens and first synthesis audio."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.emulator import PIPELINE_FAST, marked


@pytest.fixture
def emulator_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return marked(request, PIPELINE_FAST)
