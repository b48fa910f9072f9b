"""The error earcon of a failed turn, heard in both modes (SPEC §10, §5.3, §5.4).

The real daemon against the emulator on loopback. A turn the service or the connection ends
(omni: a fatal `error` closes the realtime session mid-answer; pipeline: the synthesis task
fails mid-answer, or the LLM refuses the request) is followed in the speaker output by the error
earcon, after what of the answer had been played. A barge-in and a refused `ask` are not
failures the user must be told of by a sound: no error earcon then.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from agent.daemon import DaemonControl
from agent.listen.earcons import earcon
from agent.omni import AskRefused
from tests.support.audio import locate, read_wav
from tests.support.daemon import RunDaemon, Running
from tests.support.emulator import REALTIME
from tests.support.modes import answer_sentences

JOKE = "Tell me a joke."
BYE = "Goodbye."
# omni: the first realtime session sends a fatal `error` and closes after 30 frames (mid-answer);
# pipeline: the first synthesis task fails after 20 audio frames (~1.4 s of the answer).
MID_ANSWER = {"omni": "error_event=30@realtime*once", "pipeline": "error_event=20@inference*once"}


def error_earcon_at(run: Running) -> tuple[int, float]:
    """Where the error earcon fits the speaker output best, and how well (1.0: exactly).

    Normalised at every offset (`locate` normalises only at the raw peak, which loud speech
    wins over a quiet earcon)."""
    out, e = read_wav(run.output).astype(np.float64), earcon("error").astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(out) + len(e))))
    raw = np.fft.irfft(np.fft.rfft(out, size) * np.conj(np.fft.rfft(e, size)), size)
    raw = raw[: len(out) - len(e) + 1]
    energy = np.concatenate([[0.0], np.cumsum(out * out)])
    window = energy[len(e):] - energy[: len(out) - len(e) + 1]
    corr = raw / np.sqrt(np.maximum(window, 1.0) * float(np.dot(e, e)))
    at = int(np.argmax(corr))
    return at, float(corr[at])


async def connected(run: Running) -> Any:
    mode = await run.serving()
    while getattr(mode, "runner", None) is not None and mode.runner.conn is None:
        await asyncio.sleep(0.02)
    return mode


async def asked(mode: Any, text: str) -> None:
    turn = await mode.ask(text)
    if turn is not None:  # pipeline: the turn; omni: its turn arrives through run.next_turn
        await asyncio.wait_for(turn.done.wait(), 30)


@pytest.mark.parametrize("daemon_mode", ["omni", "pipeline"])
async def test_a_failed_answer_is_followed_by_the_error_earcon(daemon_mode: str, daemon: RunDaemon) -> None:
    async with daemon(faults=MID_ANSWER[daemon_mode]) as run:
        mode = await connected(run)
        await asked(mode, JOKE)
        failed = await run.next_turn(30)
        mode = await connected(run)  # omni: the session reconnected
        await asked(mode, BYE)
        after = await run.next_turn(30)
        await asyncio.sleep(0.5)
        await run.stop()
    assert failed.interrupted or failed.error is not None
    assert after.error is None and not after.interrupted
    out = read_wav(run.output)
    played, corr = locate(out, answer_sentences(JOKE)[0][:12000])
    assert corr > 0.99, "the start of the failed answer was played"
    at, corr = error_earcon_at(run)
    assert corr > 0.99, "the error earcon was played"
    assert at > played, "after what of the answer was played"
    assert len(np.flatnonzero(out[at + len(earcon('error')):])) > 0, "the next answer followed"


@pytest.mark.parametrize("daemon_mode", ["omni", "pipeline"])
async def test_a_barge_in_plays_no_error_earcon(daemon: RunDaemon) -> None:
    async with daemon() as run:
        mode = await connected(run)
        await mode.ask(JOKE)
        while not run.daemon.engine.player.activity.busy(time.monotonic()):
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        await DaemonControl(run.daemon).interrupt()
        turn = await run.next_turn(30)
        await asyncio.sleep(0.8)
        await run.stop()
    assert turn.interrupted
    assert error_earcon_at(run)[1] < 0.9


async def test_an_ask_the_omni_service_refuses_plays_no_error_earcon(daemon: RunDaemon) -> None:
    async with daemon(faults="refuse_input_text@realtime") as run:
        mode = await connected(run)
        with pytest.raises(AskRefused):
            await mode.ask(JOKE)
        await asyncio.sleep(0.8)
        await run.stop()
    assert run.requests(REALTIME) == 1
    assert error_earcon_at(run)[1] < 0.9
