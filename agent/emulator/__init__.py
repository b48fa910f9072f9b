"""A local DashScope emulator (`voice-agent emulator`): HTTP + WebSocket APIs on one loopback port.

Public entry points live in `agent.emulator.server` (Emulator, EmulatorThread, run); they are
imported lazily so that importing a submodule (e.g. `faults`) stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Emulator", "EmulatorOptions", "EmulatorThread", "run"]


def __getattr__(name: str) -> Any:
    if name in ("Emulator", "EmulatorThread", "run"):
        from agent.emulator import server

        return getattr(server, name)
    if name == "EmulatorOptions":
        from agent.emulator.context import EmulatorOptions

        return EmulatorOptions
    raise AttributeError(name)
