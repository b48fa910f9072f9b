"""The fast tier's guard: a test marked `unit` fails if it opens a socket or starts a process.

`pytest -m unit` is run first by CI and must stay fast; a test that quietly starts talking to an
emulator or spawning a child would rot the tier without anyone noticing. So inside `unit` tests
connecting or binding a socket and starting a subprocess raise `UnitTierViolation`.

One program is allowed: espeak-ng, the emulator's voice. It is a pure function of its text (same
text, same samples), takes tens of milliseconds and is cached per process, so a unit test may ask
for speech. Refusing it made unit tests pass or fail by which test happened to warm the cache first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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


ALLOWED_PROGRAMS = frozenset({"espeak-ng", "espeak"})


def _program(args: Any) -> str:
    """The basename of the program an argument-list Popen call starts ("" for a command string,
    which may be a shell line)."""
    if isinstance(args, (str, bytes, os.PathLike)):
        return ""
    first = next(iter(args), "")
    return os.path.basename(os.fsdecode(first))


def _guard_child(original: Any) -> Any:
    refuse = _refuse("start a subprocess")

    def execute_child(self: subprocess.Popen, args: Any, *rest: Any, **kw: Any) -> Any:
        if _program(args) in ALLOWED_PROGRAMS:
            return original(self, args, *rest, **kw)
        return refuse()

    return execute_child


@contextlib.contextmanager
def io_forbidden() -> Iterator[None]:
    """Within the block, socket connect/bind and starting subprocesses (but espeak-ng) raise."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("connect", "connect_ex", "bind"):
            mp.setattr(socket.socket, name, _refuse(f"{name} a socket"))
        original = subprocess.Popen._execute_child  # type: ignore[attr-defined]
        mp.setattr(subprocess.Popen, "_execute_child", _guard_child(original))
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
