"""Fixtures for the enrollment tests: an emulator on loopback (with its request log).

The emulator's app records every request on arrival (`agent.emulator.requestlog`, wired in
`server.build_app`), which is what "exactly one create reached the server" is asserted on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from voicekit import emulator_options

from agent.emulator.server import Emulator, EmulatorThread


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    em = Emulator(options=emulator_options())
    await em.start()
    assert em.context.request_log is not None  # type: ignore[attr-defined]
    try:
        yield em
    finally:
        await em.stop()


@pytest.fixture
def emulator_thread() -> Iterator[EmulatorThread]:
    with EmulatorThread(options=emulator_options()) as et:
        yield et
