"""Pipeline mode's ASR session is checked like omni's (audit R2): a `session.updated` that
does not show what was asked is reported in the status and the log, naming the field."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.support.daemon import RunDaemon


async def test_a_misreported_asr_session_is_surfaced_naming_the_field(
    daemon: RunDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voice-agent")
    async with daemon([], mode="pipeline", faults="misreport=input_audio_format@realtime") as run:
        await run.serving()
        for _ in range(200):
            if "ASR session" in (run.daemon.status.last_error or ""):
                break
            await asyncio.sleep(0.05)
        error = run.daemon.status.last_error or ""
        assert "ASR session: session.updated differs from what was asked" in error
        assert "input_audio_format: asked 'pcm', the server runs with 'g711_ulaw'" in error
        created = [r.getMessage() for r in caplog.records if "ASR session created" in r.getMessage()]
        assert created and "turn_detection: type server_vad" in created[0]
        await run.stop()
