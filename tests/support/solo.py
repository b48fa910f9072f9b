"""Three xdist workers for the suite, but the tests that measure the machine itself run alone.

Most of the suite waits in real time (emulator sessions, file audio paced at 1×), so on a 2-core
machine three workers cut its wall time by about a third over two (bench of the suite itself:
17 min 13 s with two workers, 14 min 47 s with three while other jobs loaded the machine). The
tests that measure the machine — the loopback echo and stop-word tests through a private
PulseAudio server, whose acoustic echo canceller must keep up in real time — would see another
test as load they were not written for. They are marked `solo` (everything under
tests/realaudio/ automatically): a readers-writer lock shared by the workers (flock on two files)
lets every other test run beside the others (shared), and a solo test only alone (exclusive). A
solo test takes the turnstile first, so a stream of shared tests cannot starve it. Without xdist
the lock is uncontended and costs nothing. The benchmarks' smoke runs and the one-minute soak
assert shapes and resource growth, not timings, so they share the machine like the rest.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SOLO_PATHS = ("tests/realaudio/",)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "solo: runs alone, never beside another test (it measures the machine)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.replace("\\", "/")
        if path.startswith(SOLO_PATHS) or item.get_closest_marker("realaudio") is not None:
            item.add_marker(pytest.mark.solo)


def _lock_dir() -> Path:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    d = Path(tempfile.gettempdir()) / f"voice-agent-tests-{run}"
    d.mkdir(exist_ok=True)
    return d


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    d = _lock_dir()
    turnstile, room = _open(d / "turnstile"), _open(d / "room")
    try:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if item.get_closest_marker("solo") is not None:
            fcntl.flock(room, fcntl.LOCK_EX)  # waits for the other worker's test to end
        else:
            fcntl.flock(room, fcntl.LOCK_SH)
            fcntl.flock(turnstile, fcntl.LOCK_UN)  # let the next shared (or solo) test queue up
        yield
    finally:
        os.close(room)  # closing releases the locks
        os.close(turnstile)
