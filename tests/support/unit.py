"""The fast tier's guard: a test marked `unit` fails if it opens a socket or starts a process.

`pytest -m unit` is run first by CI and must stay fast; a test that quietly starts talking to an
emulator or spawning a child would rot the tier without anyone noticing. So inside `unit` tests
connecting or binding a socket and starting a subprocess raise `UnitTierViolation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest


class UnitTierViolation(AssertionError):
    """A `unit` test tried to do I/O that belongs to the integration tier."""


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise UnitTierViolation(
            f"a test marked 'unit' tried to {what}; drop the marker or the I/O"
        )

    return refuse


@contextlib.contextmanager
def io_forbidden() -> Iterator[None]:
    """Within the block, socket connect/bind and starting subprocesses raise."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("connect", "connect_ex", "bind"):
            mp.setattr(socket.socket, name, _refuse(f"{name} a socket"))
        mp.setattr(subprocess.Popen, "_execute_child", _refuse("start a subprocess"))
        mp.setattr(asyncio, "create_subprocess_exec", _refuse("start a subprocess"))
        mp.setattr(asyncio, "create_subprocess_shell", _refuse("start a subprocess"))
        yield


@pytest.fixture(autouse=True)
def _unit_tier_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Applies `io_forbidden` to every test marked `unit` (its fixtures included)."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    with io_forbidden():
        yield
