"""`voice-agent demo --wake-word`: offline, the background talk (with its question) is ignored and
the wake word opens the one turn that is answered."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("mode", ["omni", "pipeline"])
def test_the_wake_word_demo_ignores_background_talk_and_answers_after_the_wake_word(
    tmp_path: Path, mode: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    r = subprocess.run([sys.executable, "-m", "agent", "demo", "--wake-word", "--mode", mode,
                        "--output", str(tmp_path / "demo.wav")],
                       capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1/1 turns answered" in r.stdout
    assert "Tell me a joke" not in r.stdout.split("turn 1:")[1], "the un-woken question was ignored"
    m = re.search(r"listen   1 wake word\(s\) heard; ([\d.]+) s of the ([\d.]+) s", r.stdout)
    assert m, r.stdout
    sent, heard = float(m.group(1)), float(m.group(2))
    assert 1.5 < sent < 6.0 and heard > sent + 7.0, "the background talk never went upstream"
