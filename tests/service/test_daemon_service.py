"""The real daemon under a fake systemd: READY after audio, STATUS lines, SIGINT, no key leaks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.support.emulator import start_emulator

ROOT = Path(__file__).resolve().parents[2]
WRONG_KEY = "sk-not-the-right-key-4711"


def _silence_wav(path: Path) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(16000))


async def test_ready_after_audio_status_lines_sigint_and_no_key_anywhere(tmp_path: Path) -> None:
    emulator = await start_emulator(api_key="sk-emulator-service-test")
    base = emulator.base_url
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp_path / "notify.sock"
    notify.bind(str(notify_path))
    notify.setblocking(False)
    try:
        _silence_wav(tmp_path / "mic.wav")
        cfg = {
            "mode": "omni",
            # A key the service refuses: the daemon must serve on, say why, and never print it.
            "dashscope": {"http_url": base, "api_key": WRONG_KEY},
            "voice": {"family": "preset", "preset": "Tina"},
            "audio": {"input": {"backend": "file", "path": str(tmp_path / "mic.wav")},
                      "output": {"backend": "file", "path": str(tmp_path / "out.wav")}},
            "state_dir": str(tmp_path / "state"),
            "control": {"socket": str(tmp_path / "control.sock")},
            "log": {"level": "debug"},
        }
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
        env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
        env["NOTIFY_SOCKET"] = str(notify_path)
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--config", str(tmp_path / "c.yaml")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )
        messages: list[str] = []
        out_existed_at_ready = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                msg = notify.recv(4096).decode()
            except BlockingIOError:
                await asyncio.sleep(0.05)
                continue
            messages.append(msg)
            if "READY=1" in msg and out_existed_at_ready is None:
                out_existed_at_ready = (tmp_path / "out.wav").exists()
            if any("authentication failed" in m for m in messages):
                break
        assert any("READY=1" in m for m in messages), messages
        assert out_existed_at_ready, "READY is sent only once the audio streams are open"
        assert any(m.startswith("STATUS=") for m in messages)
        status = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "agent", "status", "--socket",
                             str(tmp_path / "control.sock")],
            capture_output=True, text=True, cwd=ROOT)
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert doc["state"] == "reconnecting" and "authentication failed" in doc["last_error"]
        t = time.monotonic()
        proc.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(proc.wait, 10)
        elapsed = time.monotonic() - t
        stdout, stderr = proc.communicate()
        while True:
            try:
                messages.append(notify.recv(4096).decode())
            except BlockingIOError:
                break
    finally:
        notify.close()
        await emulator.stop()
    assert code == 0 and elapsed < 5.0
    assert any("STOPPING=1" in m for m in messages)
    everything = stdout + stderr + status.stdout + status.stderr + "".join(messages)
    assert WRONG_KEY not in everything
    assert "authentication failed" in stderr
