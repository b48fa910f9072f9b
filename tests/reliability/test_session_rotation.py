"""Session rotation (SPEC §5.3) happens on time even when the session is quiet.

The cloud closes a realtime session after 120 minutes, so the daemon rotates it earlier, at a
moment when nobody speaks. A quiet session is exactly when the server sends *no* events — and
the rotation used to be checked only after each server event, so on a silent device it waited
for the next event, which is the user starting to speak: the rotation then cut the utterance.
Rotation is scaled down here (the config's minimum is one minute; the test replaces the setting
after validation).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from agent.config import Settings
from tests.support.emulator import REALTIME
from tests.support.rig import rig, settings_for


async def test_a_quiet_omni_session_is_rotated_on_time_without_waiting_for_an_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "voice-agent.omni")
    def settings(base: str) -> Settings:
        s = settings_for("omni", base, tmp_path)
        # rotate after 3 s (+ 2 s quiet); below the validated minimum, so set after loading
        return replace(s, omni=replace(s.omni, session_max_minutes=3.0 / 60))

    async with rig(tmp_path, settings) as r:
        await r.until(lambda: r.daemon.status.connected, 10, "the first session")
        await r.until(lambda: len(r.requests(REALTIME)) >= 2, 12, "a rotated session")
        await r.until(lambda: r.daemon.status.connected, 5, "the new session")
        status = r.status
        await r.answer()  # the new session serves
        assert await r.stop() == 0
    assert "rotating the realtime session" in caplog.text
    assert "realtime session lost" not in caplog.text, "a rotation is not a loss"
    assert status["last_error"] is None

