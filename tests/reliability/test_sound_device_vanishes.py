"""The sound device vanishes under the running daemon, then comes back (SPEC §5.6).

With the file and null backends there is no device to lose, so this row of the fault matrix runs
the real audio path: `voice-agent run` with the sounddevice backend on a private PulseAudio
server (tests/realaudio/pulse.py; reference/real-audio-testing.md), whose process is killed —
what a crashed sound server or an unplugged USB speakerphone looks like to PortAudio. The
engine-level recovery is tested in tests/realaudio; here it is the whole daemon: it keeps its
cloud session, the status says the output is gone, and once the server is back it plays the
next answer. Should PortAudio's own thread wedge (a PortAudio bug a crash can trigger), the
daemon exits 75 by design and the test plays systemd's part (Restart=).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.controlclient import NotRunning, request
from tests.realaudio.pulse import PulseServer, missing_requirements
from tests.support.emulator import API_KEY, start_emulator
from tests.support.recovery import RECOVERY, RecoveryRow
from tests.support.rig import BYE

pytestmark = pytest.mark.realaudio
EX_WEDGED = 75


@pytest.fixture
def pulse() -> Any:
    missing = missing_requirements()
    if missing:
        msg = "the real-audio row needs: " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    srv = PulseServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def status(sock: Path) -> dict[str, Any] | None:
    try:
        reply = await asyncio.to_thread(request, sock, {"cmd": "status"}, 3.0)
    except (NotRunning, OSError, ValueError):
        return None
    return reply.get("status")


async def until(sock: Path, pred: Any, timeout: float, what: str,
                proc: asyncio.subprocess.Process | None = None) -> tuple[float, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        st = await status(sock)
        if st is not None and pred(st):
            return time.monotonic(), st
        if proc is not None and proc.returncode is not None:
            raise AssertionError(f"the daemon exited ({proc.returncode}) waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s; last status {st}")
        await asyncio.sleep(0.05)


async def test_the_daemon_survives_the_sound_server_dying_and_plays_again(
    pulse: Any, tmp_path: Path
) -> None:
    emulator = await start_emulator()
    base = emulator.base_url
    cfg = tmp_path / "config.yaml"
    sock = tmp_path / "control.sock"
    cfg.write_text(yaml.safe_dump({
        "mode": "omni",
        "dashscope": {"http_url": base, "api_key": API_KEY},
        "voice": {"family": "preset", "preset": "Tina"},
        "audio": {"input": {"backend": "sounddevice", "device": "agent_mic"},
                  "output": {"backend": "sounddevice", "device": "agent_speaker"}, "echo": "none"},
        "state_dir": str(tmp_path / "state"),
        "control": {"socket": str(sock)},
    }))
    env = pulse.child_env()
    env.pop("DASHSCOPE_API_KEY", None)
    log = open(tmp_path / "daemon.log", "ab")  # noqa: SIM115 - closed below

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", str(cfg),
            stdout=asyncio.subprocess.DEVNULL, stderr=log, env=env)

    proc = await start()
    try:
        await until(sock, lambda s: s["connected"] and s["audio"]["output_ok"], 20, "serving", proc)
        t_fault = time.monotonic()
        pulse.kill(signal.SIGKILL)
        t_detect, down = await until(sock, lambda s: not s["audio"]["output_ok"], 10, "output lost", proc)
        assert down["audio"]["last_error"], "the status says what happened to the device"
        assert down["connected"], "the cloud session is not affected"
        await asyncio.sleep(1.0)
        pulse.start()
        t_clear = time.monotonic()
        note = ""
        try:
            t_up, _ = await until(sock, lambda s: s["audio"]["output_ok"] and s["audio"]["input_ok"],
                                  25, "output back", proc)
        except AssertionError:
            if proc.returncode != EX_WEDGED:
                raise
            note = "PortAudio wedged: exit 75, restarted (systemd's part)"
            proc = await start()
            t_up, _ = await until(sock, lambda s: s["audio"]["output_ok"], 25, "output back", proc)
        _, before = await until(sock, lambda s: s["connected"], 20, "connected", proc)
        await asyncio.to_thread(request, sock, {"cmd": "ask", "text": BYE}, 10.0)
        last = before["latency_ms"]["last"]
        t_answer, _ = await until(sock, lambda s: s["turns"] > before["turns"], 30,
                                  "the next answer", proc)
        await until(sock, lambda s: s["latency_ms"]["last"] != last, 30,
                    "the next answer played out through the restarted server", proc)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
        await emulator.stop()
    RECOVERY.append(RecoveryRow(
        "omni", "sound server killed (device vanished; real PulseAudio)",
        f"audio.output_ok=false: `{str(down['audio']['last_error'])[:60]}`",
        t_detect - t_fault, t_up - t_clear, t_answer - t_clear,
        note or "next answer: whole response received (played out in full afterwards)"))
