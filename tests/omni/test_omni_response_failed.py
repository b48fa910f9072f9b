"""Omni: a response the service fails (`response.done` status "failed"), through the daemon.

The real daemon against the emulator on loopback with the `response_failed` fault: the first
answer of the realtime session ends after its first audio chunk with status "failed". The user
hears the error earcon, `status` says the service failed the response (and why), the same
session answers the next question normally, which clears that error, and nothing reconnects.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.emulator.answers import answer_for
from agent.emulator.observe import ReceivedFrame
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


class ClientEvents:
    """Every realtime client event the emulator received (its `on_received` hook), parsed."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def hooks(self) -> dict[str, Any]:
        return {"on_received": self._on_received}

    def _on_received(self, frame: ReceivedFrame, t: float) -> None:
        if frame.peer.endpoint == "realtime":
            self.events.append(json.loads(frame.data))

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [e["item"] for e in self.events
                if e.get("type") == "conversation.item.create" and e["item"].get("type") == kind]


@pytest.mark.parametrize("daemon_mode", ["omni"])
async def test_a_calling_response_that_fails_mid_arguments_runs_no_tool_and_fails_its_turn_once(
        daemon: RunDaemon, tmp_path: Path) -> None:
    # The first calling response of the session fails while the timer call's arguments stream:
    # the item ends `incomplete` with half of them, then `response.done` says "failed".
    client = ClientEvents()
    async with daemon(faults="call_failed@realtime", emulator_options=client.hooks()) as run:
        mode = await connected(run)
        await mode.ask("Set a tea timer for six seconds.")
        failed = await run.next_turn(30)
        shown = run.daemon.status.as_dict()
        await asyncio.sleep(0.5)  # the earcon plays out before the next answer
        await mode.ask("What time is it?")  # the next call works, in the same session
        after = await run.next_turn(30)
        cleared = run.daemon.status.as_dict()
        await asyncio.sleep(0.5)
        assert await run.stop() == 0
    assert failed.error == WHY and failed.interrupted
    assert shown["last_error"] == WHY and shown["tools"]["calls"] == 0, (
        "a call whose arguments the service never finished is not run")
    assert not (tmp_path / "state" / "timers.json").exists() or "tea" not in (
        tmp_path / "state" / "timers.json").read_text()
    outputs = client.items("function_call_output")
    assert len(outputs) == 1 and outputs[0]["output"].startswith("It is"), (
        "no result went back for the failed response's call; the next call's did")
    assert after.error is None and after.answered.startswith("It is")
    assert cleared["last_error"] is None and cleared["turns"] == 2 and cleared["tools"]["calls"] == 1
    assert run.requests(REALTIME) == 1, "the session was fine: no reconnect"
    at, corr = error_earcon_at(run)
    assert corr > 0.99, "the error earcon was played"
    e = earcon("error").astype(np.float64)
    rest = read_wav(run.output).astype(np.float64)[at + len(e):]
    assert best_fit(rest, e) < 0.9, "the error earcon was played once"


def best_fit(out: np.ndarray, e: np.ndarray) -> float:
    """The best normalised correlation of `e` anywhere in `out` (1.0: an exact copy)."""
    if len(out) < len(e):
        return 0.0
    size = 1 << int(np.ceil(np.log2(len(out) + len(e))))
    raw = np.fft.irfft(np.fft.rfft(out, size) * np.conj(np.fft.rfft(e, size)), size)
    raw = raw[: len(out) - len(e) + 1]
    energy = np.concatenate([[0.0], np.cumsum(out * out)])
    window = energy[len(e):] - energy[: len(out) - len(e) + 1]
    return float(np.max(raw / np.sqrt(np.maximum(window, 1.0) * float(np.dot(e, e)))))
