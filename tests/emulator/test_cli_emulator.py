"""`voice-agent emulator` as a real process: URL on the first line, auth, clean SIGTERM exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest


def _request(url: str, key: str | None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize(
    ("args", "env_key", "key"),
    [
        (["--api-key", "sk-cli"], None, "sk-cli"),
        ([], "sk-from-env", "sk-from-env"),
        ([], None, "sk-emulator"),
    ],
)
def test_emulator_command(args, env_key, key) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    if env_key:
        env["DASHSCOPE_API_KEY"] = env_key
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            "emulator",
            "--port",
            "0",
            "--faults",
            "latency=1ms",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        status, body = _request(url + "/_emulator/faults", key)
        assert status == 200 and body["spec"] == "latency=1ms"
        status, body = _request(url + "/_emulator/faults", "sk-wrong")
        assert status == 401 and body["code"] == "InvalidApiKey"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "GET /_emulator/faults" in proc.stderr.read()  # requests are logged to stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_faults_spec_exits_with_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "emulator", "--port", "0", "--faults", "latency=5"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode != 0 and proc.stdout == ""
    assert "needs a unit" in proc.stderr
