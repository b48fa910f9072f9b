"""Omni mode end to end: the real daemon, file audio, the emulator over loopback (issue 5)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from agent.daemon import DaemonTimings
from agent.realtime.connection import RealtimeTimings
from agent.status import AgentState
from tests.support.audio import OUT_RATE, locate, read_wav, rms
from tests.support.daemon import RunDaemon
from tests.support.modes import answer_audio, realtime_connects

QUESTION = "Thank you very much."
SECOND = "Goodbye."


async def test_the_answer_lands_in_the_speaker_file_in_order_without_gaps(daemon: RunDaemon, tmp_path: Path) -> None:
    async with daemon([(0.5, QUESTION)]) as run:
        turn = await run.next_turn()
        assert turn.heard == QUESTION
        assert turn.answered.startswith("You are very welcome.")
        assert turn.latency_ms is not None and 0 < turn.latency_ms < 3000
        assert await run.stop() == 0
    out = read_wav(run.output)
    ref = answer_audio(QUESTION)
    start, corr = locate(out, ref)
    assert corr > 0.99, "the answer is played exactly as the server sent it"
    # Block by block (100 ms): every block of the answer is where it belongs — no gap, no reorder.
    block = OUT_RATE // 10
    for i in range(0, len(ref) - block, block):
        want, got = ref[i : i + block], out[start + i : start + i + block]
        if rms(want) > 100:
            assert np.allclose(got, want, atol=2), f"block at {i / OUT_RATE:.1f} s differs"
    status = run.daemon.status.as_dict()
    assert status["audio"]["underruns"] == 0
    assert status["turns"] == 1
    assert status["latency_ms"]["last"] == pytest.approx(turn.latency_ms, abs=0.1)


async def test_barge_in_silences_the_speaker_within_a_device_period(daemon: RunDaemon, tmp_path: Path) -> None:
    # The user asks, then talks over the answer 1.5 s after it starts.
    answer_s = len(answer_audio(QUESTION)) / OUT_RATE
    async with daemon([(0.5, QUESTION), (4.5, SECOND)]) as run:
        first = await run.next_turn()
        second = await run.next_turn()
        t0 = run.timeline_start()
        barge_at = run.daemon.mode.last_speech_started_at  # type: ignore[union-attr]
        await run.stop()
    assert first.interrupted and not second.interrupted
    assert second.heard == SECOND
    out = read_wav(run.output)
    ref = answer_audio(QUESTION)
    start, corr = locate(out[: int(4.5 * OUT_RATE)], ref[: OUT_RATE])
    assert corr > 0.99
    cut = int((barge_at - t0) * OUT_RATE)
    period = int(0.020 * OUT_RATE)  # the file backend's device period
    fade = int(0.012 * OUT_RATE)
    after = out[cut + period + fade : cut + period + fade + int(0.5 * OUT_RATE)]
    assert rms(after) < 5, "silent one period (+ fade) after speech_started"
    # Nothing of the interrupted answer after the cut, anywhere in the file.
    played = (cut - start) / OUT_RATE
    assert 0.5 < played < answer_s
    rest = ref[int((played + 0.2) * OUT_RATE) :]
    for i in range(0, len(rest) - OUT_RATE, OUT_RATE):
        chunk = rest[i : i + OUT_RATE]
        if rms(chunk) > 500:
            _, c = locate(out, chunk)
            assert c < 0.5, "late audio of the cancelled response never reaches the speaker"
    heard = run.daemon.status.heard_ms_last_interrupted
    assert heard is not None and abs(heard - played * 1000) < 150
    assert run.daemon.status.barge_ins == 1


async def test_a_dropped_connection_mid_answer_reconnects_and_the_next_turn_is_answered(
    daemon: RunDaemon, tmp_path: Path,
) -> None:
    # The first session dies after a few events (mid-answer); the user asks again later.
    async with daemon([(0.5, QUESTION), (9.0, SECOND)], faults="drop_after=12@realtime*once"
    ) as run:
        turn = await run.next_turn(timeout=40)
        while turn.heard != SECOND:
            turn = await run.next_turn(timeout=40)
        assert turn.answered.startswith("Goodbye!")
        assert run.daemon.status.reconnects >= 1
        assert realtime_connects(run.emulator) >= 2
        await run.stop()


async def test_a_half_open_connection_is_detected_and_replaced(
    daemon: RunDaemon, tmp_path: Path
) -> None:
    # Keepalive scaled down: a silent peer is noticed within 1.5 s (shipped: 40 s).
    keepalive = DaemonTimings(realtime=RealtimeTimings(ping_interval_s=0.5, ping_timeout_s=1.0))
    async with daemon([(5.0, QUESTION)], faults="half_open=2@realtime*once", timings=keepalive
    ) as run:
        turn = await run.next_turn(timeout=30)
        assert turn.heard == QUESTION
        assert realtime_connects(run.emulator) >= 2
        await run.stop()


async def test_a_refused_key_backs_off_for_minutes_and_says_so(daemon: RunDaemon, tmp_path: Path) -> None:
    async with daemon([], api_key="sk-wrong-key-0123456") as run:
        await asyncio.sleep(3.0)
        status = run.daemon.status.as_dict()
        assert realtime_connects(run.emulator) == 1, "no tight retry loop"
        assert status["state"] == AgentState.RECONNECTING.value
        assert "authentication failed" in status["last_error"]
        assert "retrying in" in status["last_error"]
        assert not status["connected"]
        assert "sk-wrong-key" not in repr(status)
        assert await run.stop() == 0


async def test_sigterm_finishes_the_session_and_exits_0_within_5_s_with_a_valid_wav(
    tmp_path: Path,
) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys
    import wave

    import yaml

    from tests.support.audio import script
    from tests.support.emulator import API_KEY, start_emulator
    from tests.support.settings import build_settings

    emulator = await start_emulator()
    base = emulator.base_url
    try:
        script(tmp_path / "user.wav", [(0.3, QUESTION)])
        s = build_settings("omni", base_url=base, work=tmp_path)
        cfg = {
            "mode": "omni",
            "dashscope": {"http_url": base, "api_key": API_KEY},
            "voice": {"family": "preset", "preset": "Tina"},
            "audio": {"input": {"backend": "file", "path": s.audio.input.path},
                      "output": {"backend": "file", "path": s.audio.output.path}, "echo": "none"},
            "state_dir": str(tmp_path / "state"),
            "control": {"socket": str(tmp_path / "control.sock")},
        }
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(tmp_path / "c.yaml")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        # Wait until it is serving (the control socket says connected), mid-answer if possible.
        deadline = time.monotonic() + 20
        connected = False
        while time.monotonic() < deadline and not connected:
            await asyncio.sleep(0.2)
            r = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "agent", "status", "--socket",
                                 str(tmp_path / "control.sock")], capture_output=True, text=True)
            connected = r.returncode == 0 and json.loads(r.stdout).get("connected") is True
        assert connected, proc.stderr.read() if proc.poll() is not None else "never connected"
        await asyncio.sleep(2.5)  # into the answer
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 10)
        elapsed = time.monotonic() - t
        err = proc.stderr.read()
    finally:
        await emulator.stop()
    assert code == 0, err
    assert elapsed < 5.0
    assert "realtime session finished" in err, "session.finish was sent and acknowledged"
    assert API_KEY not in err
    with wave.open(str(tmp_path / "speaker.wav"), "rb") as w:
        frames = w.getnframes()
        assert w.getframerate() == OUT_RATE
        assert len(w.readframes(frames)) == 2 * frames  # the header matches the data
    assert frames > OUT_RATE * 2


def test_the_demo_runs_offline_answers_both_questions_and_writes_an_audible_wav(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    out = tmp_path / "demo.wav"
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    r = subprocess.run([sys.executable, "-m", "agent", "demo", "--output", str(out)],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2/2 turns answered" in r.stdout
    assert "answered “Timer set for 3 seconds.”" in r.stdout  # through the timer tool
    assert "a timer was set through the timer tool and rang" in r.stdout
    assert "heard    “What's the weather like today?”" in r.stdout
    pcm = read_wav(out)
    assert len(pcm) > 10 * OUT_RATE and rms(pcm) > 300  # an audible answer, not silence
