"""The config schema owns the family ↔ mode rule; the voice section's other checks run at start-up.

`agent.config` is the base layer every module imports, so it must not call up into enrollment
(`agent.voices.plan`). A family that cannot speak in the mode is schema data and is rejected by
the loader; a missing sample file or a too-long design prompt is found by `check_voice_config`,
which the composition root (CLI `run` / `check` / `voices`, `daemon.preflight`) calls — with the
same exit-78 message as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import FAMILIES_FOR_MODE, ConfigError, parse_settings
from agent.daemon import preflight
from agent.voices.plan import check_voice_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.unit
@pytest.mark.parametrize(("mode", "family"), [("omni", "cosyvoice"), ("pipeline", "qwen")])
def test_the_loader_rejects_a_family_that_does_not_fit_the_mode(mode: str, family: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_settings(f"mode: {mode}\nvoice: {{family: {family}}}\n", "kiosk.yaml")
    message = str(e.value)
    assert message.startswith("kiosk.yaml: voice.family: ")
    assert f"'{family}' does not fit mode '{mode}'" in message
    assert f"use voice.family {' or '.join(FAMILIES_FOR_MODE[mode])}" in message


@pytest.mark.unit
def test_every_mode_accepts_its_own_families_and_preset() -> None:
    for mode, families in FAMILIES_FOR_MODE.items():
        assert "preset" in families
        for family in families:
            extra = ", preset: Tina" if family == "preset" else ""
            s = parse_settings(f"mode: {mode}\nvoice: {{family: {family}{extra}}}\n")
            assert (s.mode, s.voice.family) == (mode, family)


@pytest.mark.unit
def test_a_missing_sample_is_a_start_up_check_not_a_schema_error(tmp_path: Path) -> None:
    missing = tmp_path / "nobody.wav"
    s = parse_settings(f"voice: {{family: qwen, sample: '{missing}'}}\n", "kiosk.yaml")
    with pytest.raises(ConfigError, match=r"^kiosk.yaml: voice.sample: file not found: "):
        check_voice_config(s)
    with pytest.raises(ConfigError, match=r"voice.sample: file not found"):
        preflight(s)  # a Daemon built without the CLI still refuses it before touching anything


@pytest.mark.unit
def test_a_too_long_design_prompt_is_found_at_start_up() -> None:
    s = parse_settings("mode: pipeline\nvoice: {family: cosyvoice, design_prompt: '" + "x" * 501 + "'}\n")
    with pytest.raises(ConfigError, match=r"voice.design_prompt: describe the voice in 1–500"):
        check_voice_config(s)


def test_importing_the_config_does_not_import_enrollment() -> None:
    code = "import sys, agent.config; print(sorted(m for m in sys.modules if m.startswith('agent.voices')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [["run"], ["check"], ["voices", "list"]])
def test_the_cli_exits_78_naming_a_missing_sample(tmp_path: Path, command: list[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"voice: {{family: qwen, sample: '{tmp_path / 'gone.wav'}'}}\n")
    env = {k: v for k, v in os.environ.items() if k != "VOICE_AGENT_CONFIG"}
    r = subprocess.run([sys.executable, "-m", "agent", *command, "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert r.returncode == 78, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"voice-agent: configuration error: {cfg}: voice.sample: file not found: {tmp_path / 'gone.wav'}"
    ]


def test_the_cli_exits_78_naming_voice_family_when_it_does_not_fit_the_mode(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mode: pipeline\nvoice: {family: qwen}\n")
    env = {k: v for k, v in os.environ.items() if k != "VOICE_AGENT_CONFIG"}
    r = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert r.returncode == 78, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"voice-agent: configuration error: {cfg}: voice.family: 'qwen' does not fit mode 'pipeline'")
