"""`say` and `ask` through the control socket in both modes, and the pipeline demo."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from agent.controlclient import request
from agent.emulator.answers import answer_for
from agent.emulator.speech import synthesize
from agent.status import AgentState
from tests.support.audio import OUT_RATE, locate, read_wav
from tests.support.daemon import RunDaemon
from tests.support.emulator import GENERATION, INFERENCE
from tests.support.modes import sentence_audio

BYE = "Goodbye."
THANKS = "Thank you very much."
NOTICE = "Attention please. The doors close at nine tonight."


async def control(run_work: Path, cmd: str, text: str | None = None) -> dict:
    doc = {"cmd": cmd} if text is None else {"cmd": cmd, "text": text}
    return await asyncio.to_thread(request, run_work / "control.sock", doc, 10.0)


async def wait_quiet(player: object, timeout: float = 20.0) -> None:
    async def quiet() -> None:
        while player.activity.busy(time.monotonic()):  # type: ignore[attr-defined]
            await asyncio.sleep(0.05)

    await asyncio.wait_for(quiet(), timeout)


async def test_ask_and_say_through_the_control_socket(daemon: RunDaemon, tmp_path: Path) -> None:
    async with daemon(pipeline__input="text") as run:
        mode = await run.serving()
        mode.llm.parameters["max_tokens"] = 6
        assert await control(tmp_path, "ask", BYE) == {"ok": True}
        assert await control(tmp_path, "say", NOTICE) == {"ok": True}  # queued behind the answer
        turn = await run.next_turn()
        await asyncio.sleep(0.2)
        await wait_quiet(mode.engine.player)
        llm_calls = run.requests(GENERATION)
        synthesis_sockets = run.requests(INFERENCE)
        status = (await control(tmp_path, "status"))["status"]
        await run.stop()
    assert turn.heard == BYE and turn.error is None
    assert turn.answered == " ".join(answer_for(BYE).split()[:6])
    assert llm_calls == 1, "say asks no LLM"
    assert synthesis_sockets == 1, "both went through the one warm synthesis socket"
    assert status["mode"] == "pipeline" and status["turns"] == 1 and status["state"] == "idle"
    # The announcement is spoken verbatim, after the answer and not over it.
    out = read_wav(run.output)
    answer = sentence_audio(turn.answered)
    notice = sentence_audio(NOTICE)
    answer_end = 0
    for ref in answer:
        start, corr = locate(out, ref)
        assert corr > 0.99
        answer_end = start + len(ref)
    say_start, corr = locate(out, notice[0])
    assert corr > 0.99 and answer_end - 2 <= say_start < answer_end + OUT_RATE // 2
    start, corr = locate(out, notice[1])
    assert corr > 0.99 and start == say_start + len(notice[0])


async def test_say_in_omni_mode_uses_cosyvoice_and_waits_for_the_answer(daemon: RunDaemon, tmp_path: Path) -> None:
    async with daemon([(0.5, THANKS)], mode="omni", voice={"family": "preset", "preset": "Tina"},
    ) as run:
        async def speaking() -> None:
            while run.daemon.status.state is not AgentState.SPEAKING:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(speaking(), 15)
        assert await control(tmp_path, "say", NOTICE) == {"ok": True}
        turn = await run.next_turn()
        await asyncio.sleep(0.2)
        await wait_quiet(run.daemon.engine.player)  # type: ignore[union-attr]
        llm_calls = run.requests(GENERATION)
        synthesis_sockets = run.requests(INFERENCE)
        await run.stop()
    assert turn.heard == THANKS and not turn.interrupted
    assert llm_calls == 0 and synthesis_sockets == 1
    out = read_wav(run.output)
    answer = synthesize(answer_for(THANKS), OUT_RATE)
    start, corr = locate(out, answer)
    assert corr > 0.99, "the Omni answer played whole: the announcement cut nothing short"
    notice = sentence_audio(NOTICE)
    say_start, corr = locate(out, notice[0])
    assert corr > 0.99 and say_start >= start + len(answer) - 2, "the announcement followed it"


def test_the_pipeline_demo_runs_offline_and_prints_its_turns(tmp_path: Path) -> None:
    out = tmp_path / "demo.wav"
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    res = subprocess.run(
        [sys.executable, "-m", "agent", "demo", "--mode", "pipeline", "--output", str(out)],
        capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "turn 1: heard    “What's the weather like today?”" in res.stdout
    assert "turn 2: heard    “Tell me a joke.”" in res.stdout
    assert res.stdout.count("LLM first token") == 3 and "2/2 turns answered" in res.stdout
    assert "a timer was set through the timer tool and rang" in res.stdout  # the third turn
    with wave.open(str(out), "rb") as w:
        assert w.getframerate() == OUT_RATE and w.getnframes() > 10 * OUT_RATE


async def test_stop_mid_answer_ends_the_sessions_politely_and_fast(
    daemon: RunDaemon, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with daemon([(0.5, THANKS)]) as run:
        async def speaking() -> None:
            while run.daemon.status.state is not AgentState.SPEAKING:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(speaking(), 15)
        await asyncio.sleep(0.5)
        started = time.monotonic()
        assert await run.stop() == 0
        elapsed = time.monotonic() - started
    assert elapsed < 4.0
    assert "ASR session finished" in caplog.text, "session.finish was sent and acknowledged"
    with wave.open(str(run.output), "rb") as w:  # the header is final
        assert len(w.readframes(w.getnframes())) == 2 * w.getnframes() > 0
