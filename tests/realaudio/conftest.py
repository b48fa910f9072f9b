"""Real-audio fixtures: one private PulseAudio server per session (see pulse.py).

In CI (`CI` set) these tests must run: missing pulseaudio/PortAudio is a failure, not a skip.
Locally they are skipped when the tools are not installed.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.realaudio.pulse import PulseServer, missing_requirements


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.realaudio)


@pytest.fixture(scope="session")
def pulse():
    missing = missing_requirements()
    if missing:
        msg = "real-audio tests need: " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI must install them: apt-get install libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins)")
        pytest.skip(msg)
    from agent.audio import portaudio

    srv = PulseServer()
    try:
        srv.start()
        reinit(portaudio)  # sounddevice enumerated devices at import, before the server
        yield srv
    finally:
        srv.stop()
        reinit(portaudio)
        shutil.rmtree(srv.dir, ignore_errors=True)


def reinit(portaudio) -> None:
    """Re-initialise PortAudio on a daemon thread: a wedged driver must fail the run, not hang it."""
    done = threading.Event()

    def run():
        portaudio.reinitialize()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    if not done.wait(10):
        pytest.fail("PortAudio re-initialisation hung")
