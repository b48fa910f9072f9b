"""Omni: a response the service fails (`response.done` status "failed"), through the daemon.

The real daemon against the emulator on loopback with the `response_failed` fault: the first
answer of the realtime session ends after its first audio chunk with status "failed". The user
hears the error earcon, `status` says the service failed the response (and why), the same
session answers the next question normally, which clears that error, and nothing reconnects.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from agent.emulator.answers import answer_for
from agent.listen.earcons import earcon
from tests.omni.test_failed_turn_earcon import BYE, JOKE, connected, error_earcon_at
from tests.support.audio import read_wav
from tests.support.daemon import RunDaemon
from tests.support.emulator import REALTIME

WHY = ("the service failed the response (server_error internal_error: "
       "The response failed (injected by the emulator).)")


@pytest.mark.parametrize("daemon_mode", ["omni"])
async def test_a_failed_response_plays_the_error_earcon_shows_why_and_the_next_turn_is_answered(
        daemon: RunDaemon, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with daemon(faults="response_failed@realtime") as run:
        mode = await connected(run)
        await mode.ask(JOKE)
        failed = await run.next_turn(30)
        shown = run.daemon.status.as_dict()
        await asyncio.sleep(0.5)  # the earcon plays out before the next answer
        await mode.ask(BYE)
        after = await run.next_turn(30)
        cleared = run.daemon.status.as_dict()
        await asyncio.sleep(0.5)
        assert await run.stop() == 0
    assert failed.error == WHY and failed.interrupted
    assert shown["last_error"] == WHY, "status says why the turn got no answer"
    assert after.error is None and not after.interrupted
    assert after.answered == answer_for(BYE)
    assert cleared["last_error"] is None, "an answer that completed clears it"
    assert cleared["turns"] == 2
    assert run.requests(REALTIME) == 1, "the session was fine: no reconnect"
    assert any(r.levelno == logging.WARNING and r.getMessage() == WHY for r in caplog.records)
    out = read_wav(run.output)
    at, corr = error_earcon_at(run)
    assert corr > 0.99, "the error earcon was played"
    assert len(np.flatnonzero(out[at + len(earcon("error")):])) > 0, "the next answer followed"
