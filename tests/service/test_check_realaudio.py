"""`voice-agent check` through the real audio path: PortAudio → ALSA pulse plugin → a private
PulseAudio server with null sinks (shared/reference/real-audio-testing.md). Proves the sounddevice
branch finds the default devices and opens them at the daemon's rates.

Under CI (`$CI` set) a missing PulseAudio or PortAudio is a failure: .ci/run installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agent.check import run_checks
from agent.config import settings_from_dict

pytestmark = pytest.mark.realaudio

SERVER_PA = """.fail
load-module module-native-protocol-unix auth-anonymous=1 socket={d}/native
load-module module-null-sink sink_name=agent_out rate=24000 channels=1 format=s16le norewinds=1
load-module module-null-sink sink_name=mic_feed rate=16000 channels=1 format=s16le norewinds=1
set-default-sink agent_out
set-default-source mic_feed.monitor
"""


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is missing under CI: .ci/run must install it")
    pytest.skip(f"{tool} not installed")


@pytest.fixture
def pulse(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    pulseaudio, pactl = _need("pulseaudio"), _need("pactl")
    d = Path(tempfile.mkdtemp(prefix="va-pa-", dir="/tmp"))
    d.chmod(0o700)
    env = {
        "XDG_RUNTIME_DIR": str(d),
        "PULSE_SERVER": f"unix:{d}/native",
        "PULSE_COOKIE": str(d / "cookie"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    (d / "server.pa").write_text(SERVER_PA.format(d=d))
    proc = subprocess.Popen(
        [pulseaudio, "--daemonize=no", "-n", "-F", str(d / "server.pa"), "--exit-idle-time=-1",
         "--use-pid-file=no", "--realtime=no", "--high-priority=no",
         f"--log-target=file:{d}/pulseaudio.log"],
        env={**os.environ, **env, "HOME": str(d)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while subprocess.run([pactl, "info"], capture_output=True).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (d / "pulseaudio.log").read_text() if (d / "pulseaudio.log").exists() else ""
                pytest.fail(f"private PulseAudio did not start:\n{log}")
            time.sleep(0.05)
        yield d
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(d, ignore_errors=True)
        if "sounddevice" in sys.modules:  # forget this server's devices before later tests
            from agent.audio.devices import load_portaudio

            load_portaudio().reinitialize()


def _reinit_portaudio() -> None:
    from agent.audio.devices import load_portaudio

    try:
        load_portaudio().reinitialize()
    except Exception as e:  # PortAudio missing: only acceptable outside CI
        if os.environ.get("CI"):
            pytest.fail(f"PortAudio unusable under CI: {e}")
        pytest.skip(f"PortAudio unusable: {e}")


async def test_check_opens_the_default_devices(pulse: Path, tmp_path: Path) -> None:
    _reinit_portaudio()  # sounddevice enumerated devices at import, before this server existed
    s = settings_from_dict(
        {
            "dashscope": {"api_key": "sk-emulator", "http_url": "http://127.0.0.1:9"},
            "state_dir": str(tmp_path / "state"),
            "voice": {"family": "preset", "preset": "Cherry"},
            "audio": {"input": {"backend": "sounddevice"}, "output": {"backend": "sounddevice"}},
        }
    )
    results = {r.name: r for r in await run_checks(s, timeout=1)}
    mic, speaker = results["audio input"], results["audio output"]
    assert mic.ok, mic
    assert speaker.ok, speaker
    assert "16000 Hz" in mic.detail and "24000 Hz" in speaker.detail, (mic, speaker)

    s = replace(s, audio=replace(s.audio, input=replace(s.audio.input, device="definitely-not-a-card")))
    results = {r.name: r for r in await run_checks(s, timeout=1)}
    assert not results["audio input"].ok
    assert "no input device matches" in results["audio input"].detail
