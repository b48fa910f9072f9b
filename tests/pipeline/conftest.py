"""Pipeline fixtures: a fast in-loop emulator factory (real loopback sockets, shrunk timings)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pipeline_helpers import FAST, MakeEmulator

from agent.emulator.context import EmulatorOptions
from agent.emulator.server import Emulator


@pytest.fixture
async def make_emulator() -> AsyncIterator[MakeEmulator]:
    """`await make_emulator(faults=..., **option_overrides)` → a started Emulator."""
    started: list[Emulator] = []

    async def make(faults: str | None = None, **overrides: object) -> Emulator:
        emu = Emulator(options=EmulatorOptions(**{**FAST, **overrides}), faults=faults)  # type: ignore[arg-type]
        await emu.start()
        started.append(emu)
        return emu

    try:
        yield make
    finally:
        for emu in started:
            await emu.stop()


@pytest.fixture
async def emulator(make_emulator: MakeEmulator) -> Emulator:
    return await make_emulator()
