"""Config validation applies the capability table: refused → exit 78 naming key and fix; disputed →
a start-up warning citing both sides; what the table supports passes silently (SPEC §13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, settings_from_dict
from agent.daemon import preflight
from agent.voices.plan import check_voice_config, describe_with_sources, plan_voice

ROOT = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path, region: str = "intl", mode: str = "pipeline", **voice: object):
    wav = tmp_path / "me.wav"
    wav.write_bytes(b"RIFF")
    voice = {"family": "cosyvoice" if mode == "pipeline" else "qwen", **voice}
    if voice.get("sample") == "local":
        voice["sample"] = str(wav)
    return settings_from_dict({"mode": mode, "dashscope": {"region": region}, "voice": voice}, "kiosk.yaml")


@pytest.mark.unit
def test_a_local_cosyvoice_sample_in_intl_is_refused_with_the_upload_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        check_voice_config(_settings(tmp_path, sample="local"))
    assert str(e.value) == (
        "kiosk.yaml: voice.sample: temporary upload of the local sample (oss://): not supported in "
        "region intl; set dashscope.region: cn, or host the sample and set voice.sample_url")


@pytest.mark.unit
def test_cosyvoice_design_in_intl_is_refused_naming_the_region(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^kiosk.yaml: voice.design_prompt: CosyVoice voice design "
                                          r"for cosyvoice-v3-flash: not supported in region intl; "
                                          r"set dashscope.region: cn$"):
        check_voice_config(_settings(tmp_path, design_prompt="a calm announcer"))


@pytest.mark.unit
def test_qwen_cloning_on_a_model_that_cannot_clone_is_refused_naming_the_family(tmp_path: Path) -> None:
    s = settings_from_dict({"voice": {"family": "qwen", "sample_url": "https://x/y.wav"},
                            "omni": {"model": "qwen3-omni-flash-realtime"}}, "kiosk.yaml")
    with pytest.raises(ConfigError, match=r"omni.model: Qwen voice cloning .* use voice.family: preset"):
        check_voice_config(s)


@pytest.mark.unit
def test_a_disputed_capability_is_a_warning_that_cites_both_sides(tmp_path: Path) -> None:
    warnings = check_voice_config(_settings(tmp_path, sample_url="https://example.com/me.wav"))
    clone = [w for w in warnings if w.capability == "cosyvoice_clone"]
    assert len(clone) == 1
    text = describe_with_sources(clone[0])
    assert text.startswith("voice.sample_url: CosyVoice cloning for cosyvoice-v3-flash: the documents disagree")
    assert "set dashscope.region: cn" in text
    assert "000_ebed7f82bbcc202c" in text and "001_e195bb62868c127a" in text  # no and yes
    assert preflight(_settings(tmp_path, sample_url="https://example.com/me.wav")) == warnings


@pytest.mark.unit
def test_the_same_configuration_in_cn_passes_without_warnings(tmp_path: Path) -> None:
    assert check_voice_config(_settings(tmp_path, region="cn", sample="local")) == []
    assert check_voice_config(_settings(tmp_path, region="cn", design_prompt="a calm announcer")) == []


@pytest.mark.unit
def test_a_system_preset_on_v35_is_refused_naming_voice_preset(tmp_path: Path) -> None:
    s = settings_from_dict({"mode": "pipeline", "dashscope": {"region": "cn"},
                            "pipeline": {"tts_model": "cosyvoice-v3.5-flash"},
                            "voice": {"family": "preset", "preset": "longanyang"}}, "kiosk.yaml")
    with pytest.raises(ConfigError, match=r"voice.preset: cosyvoice-v3.5-flash has no system voices"):
        check_voice_config(s)


@pytest.mark.unit
def test_enrollment_planning_still_runs_where_only_the_table_refuses(tmp_path: Path) -> None:
    # The gate is a start-up check; `voices ensure` and the tests can still reach the service.
    plan = plan_voice(_settings(tmp_path, sample="local"))
    assert (plan.family, plan.source) == ("cosyvoice", "sample")


def test_run_exits_78_and_check_lists_the_refusal(tmp_path: Path) -> None:
    wav = tmp_path / "me.wav"
    wav.write_bytes(b"RIFF")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mode: pipeline\nvoice: {{family: cosyvoice, design_prompt: calm}}\n"
                   f"state_dir: '{tmp_path / 'state'}'\n"
                   "dashscope: {api_key: sk-x, http_url: 'http://127.0.0.1:9'}\n"
                   "audio: {input: {backend: 'null'}, output: {backend: 'null'}}\n")
    env = {k: v for k, v in os.environ.items() if k != "VOICE_AGENT_CONFIG"}
    r = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert r.returncode == 78, r.stderr
    assert "voice.design_prompt: CosyVoice voice design" in r.stderr and "set dashscope.region: cn" in r.stderr
    r = subprocess.run([sys.executable, "-m", "agent", "check", "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert r.returncode == 1, r.stderr
    [line] = [ln for ln in r.stdout.splitlines() if "cosyvoice_design" in ln]
    assert "not supported in region intl" in line
    fix = r.stdout.splitlines()[r.stdout.splitlines().index(line) + 1]
    assert fix.strip() == "fix: set dashscope.region: cn"


async def test_the_daemon_logs_a_disputed_capability_as_a_warning_at_start_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    from dataclasses import replace

    from tests.support.rig import rig, settings_for

    def settings(base: str):  # type: ignore[no-untyped-def]
        s = settings_for("pipeline", base, tmp_path)
        return replace(s, voice=replace(s.voice, family="cosyvoice", preset=None,
                                        sample_url="https://example.com/kiosk.wav"))

    caplog.set_level(logging.WARNING, "voice-agent")
    async with rig(tmp_path, settings) as r:
        await r.until(lambda: r.daemon.mode is not None, 10, "serving")
        [line] = [rec.getMessage() for rec in caplog.records
                  if "cosyvoice_clone" in rec.getMessage() or "CosyVoice cloning" in rec.getMessage()]
        assert line.startswith("voice.sample_url: CosyVoice cloning for cosyvoice-v3-flash: the documents disagree")
        assert "000_ebed7f82bbcc202c" in line and "001_e195bb62868c127a" in line
        assert await r.stop() == 0
