"""Omni mode against a service that refuses or misreports (audit R1, R2, R9): the real daemon,
the emulator over loopback, the control socket as a user would use it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.controlclient import request
from tests.support.daemon import RunDaemon, Running

JOKE = "Tell me a joke."


async def control(run: Running, cmd: str, **fields: str) -> dict[str, object]:
    sock = Path(run.daemon.settings.control.socket or "")
    return await asyncio.to_thread(request, sock, {"cmd": cmd, **fields}, 10.0)


async def test_ask_is_answered_once_the_service_confirms_the_text_item(daemon: RunDaemon) -> None:
    async with daemon([]) as run:
        await run.serving()
        await asyncio.sleep(0.3)  # the session is configured
        reply = await control(run, "ask", text=JOKE)
        assert reply == {"ok": True}
        turn = await run.next_turn(timeout=20)
        assert turn.heard == JOKE and turn.answered
        await run.stop()


async def test_an_ask_the_service_refuses_fails_with_its_message_and_is_never_answered(
    daemon: RunDaemon,
) -> None:
    async with daemon([], faults="refuse_input_text@realtime") as run:
        await run.serving()
        await asyncio.sleep(0.3)
        reply = await control(run, "ask", text=JOKE)
        assert reply["ok"] is False
        assert "Invalid value: 'input_text'" in str(reply["error"])
        await asyncio.sleep(1.5)  # long enough for an (unwanted) answer to start
        assert run.requests("/api-ws/v1/realtime") == 1
        assert run.turns.empty() and run.daemon.status.turns == 0
        assert "refused the text turn" in (run.daemon.status.last_error or "")
        await run.stop()


async def test_a_refused_session_update_is_surfaced_naming_the_field_and_what_runs_instead(
    daemon: RunDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voice-agent")
    async with daemon([], voice={"family": "preset", "preset": "Nobody"}) as run:
        await run.serving()
        for _ in range(100):
            if run.daemon.status.last_error:
                break
            await asyncio.sleep(0.05)
        error = run.daemon.status.last_error or ""
        assert "session.update refused, field voice" in error
        assert "Voice 'Nobody' is not supported" in error
        assert "the session runs with voice = 'Tina' instead" in error
        assert any(r.levelno == logging.WARNING and "field voice" in r.getMessage() for r in caplog.records)
        created = [r.getMessage() for r in caplog.records if "realtime session created" in r.getMessage()]
        assert created and "no idle_timeout_ms (the model never speaks unprompted)" in created[0]
        await run.stop()


async def test_a_session_updated_that_misreports_is_reported_field_by_field(
    daemon: RunDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="voice-agent")

    def warnings(about: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and about in r.getMessage()]

    async def until(about: str, count: int = 1) -> list[str]:
        for _ in range(200):
            if len(warnings(about)) >= count:
                break
            await asyncio.sleep(0.05)
        return warnings(about)

    async with daemon([], faults="misreport=voice@realtime,misreport=output_audio_format@realtime") as run:
        await run.serving()
        mismatches = await until("session.updated differs", 2)
        assert any("output_audio_format: asked 'pcm', the server runs with 'g711_ulaw'" in m for m in mismatches)
        assert any("voice: asked 'Tina', the server runs with 'Ethan'" in m for m in mismatches)
        assert "session.updated differs" in (run.daemon.status.last_error or "")
        # A voice change mid-session the server does not take applies from the next session.
        await run.mode.set_voice("Serena")
        later = await until("used from the next session")
        assert any("asked 'Serena'" in m for m in later)
        assert run.mode.voice == "Serena"
        await run.stop()
