"""Enrollment tests: the emulator (with its request log) deploys voices after 0.3 s.

The emulator's app records every request on arrival (`agent.emulator.requestlog`, wired in
`server.build_app`), which is what "exactly one create reached the server" is asserted on.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.emulator import ENROLL_FAST, marked


@pytest.fixture
def emulator_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return marked(request, ENROLL_FAST)
