"""`voice-agent voices ...` through the real argument parser, against a threaded emulator."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.cli import build_parser
from agent.emulator.server import EmulatorThread
from agent.voices.cache import VoiceCache
from agent.voices.cli import main_voices
from tests.support.emulator import API_KEY, ENROLL_FAST, options
from tests.support.samples import speech
from tests.support.samples import write_sample as write_wav
from tests.support.voices import fast_options


@pytest.fixture(autouse=True)
def _drop_cli_logging() -> Iterator[None]:
    """The CLI installs a stderr handler on the root logger; don't leak it into other tests."""
    yield
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == "voice-agent":
            root.removeHandler(h)


def config(tmp_path: Path, base_url: str, *, family: str = "qwen", api_key: str = API_KEY, **voice) -> str:
    if "sample" not in voice and family != "preset":
        voice["sample"] = str(write_wav(tmp_path / "me.wav", speech(12.0, 24000), 24000))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "mode": "pipeline" if family == "cosyvoice" else "omni",
        "dashscope": {"api_key": api_key, "http_url": base_url},
        "voice": {"family": family, "name": "kiosk", **voice},
        "state_dir": str(tmp_path / "state"),
        "log": {"level": "info"},
    }))
    return str(path)


def voices(*argv: str) -> int:
    args = build_parser().parse_args(["voices", *argv])
    return main_voices(args, options=fast_options())


@pytest.mark.parametrize("family", ["qwen", "cosyvoice"])
def test_ensure_list_show_delete(emulator_thread: EmulatorThread, tmp_path: Path, family: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, emulator_thread.base_url, family=family)
    assert voices("ensure", "--config", cfg) == 0
    out = capsys.readouterr()
    voice_id = out.out.strip()
    store = emulator_thread.context.stores.qwen_voices if family == "qwen" else emulator_thread.context.stores.cosy_voices
    assert list(store) == [voice_id]

    assert voices("ensure", "--config", cfg, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["voice_id"], doc["outcome"], doc["verified"]) == (voice_id, "cached", True)

    assert voices("list", "--config", cfg) == 0
    table = capsys.readouterr().out
    header, row = table.splitlines()[:2]
    assert header.split()[:3] == ["VOICE", "ID", "TARGET"]
    assert row.startswith(voice_id) and row.rstrip().endswith("in use")
    assert "1 " + family + " voice(s)" in table

    assert voices("list", "--config", cfg, "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["family"] == family
    assert [(v["voice_id"], v["note"]) for v in listed["voices"]] == [(voice_id, "in use")]

    assert voices("show", voice_id, "--config", cfg) == 0
    shown = capsys.readouterr().out
    assert voice_id in shown and "in use" in shown and "digest" in shown
    assert voices("show", voice_id, "--config", cfg, "--json") == 0
    assert json.loads(capsys.readouterr().out)["voice_id"] == voice_id

    assert voices("delete", voice_id, "--config", cfg) == 0
    assert capsys.readouterr().out.strip() == f"deleted {voice_id}"
    assert store == {} and VoiceCache(tmp_path / "state").load() == []
    assert voices("show", voice_id, "--config", cfg) == 1
    assert voices("delete", voice_id, "--config", cfg) == 1
    assert "not" in capsys.readouterr().err


def test_create_makes_a_new_voice_the_one_in_use(emulator_thread: EmulatorThread, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, emulator_thread.base_url)
    assert voices("ensure", "--config", cfg) == 0
    first = capsys.readouterr().out.strip()
    assert voices("create", "--config", cfg) == 0
    second = capsys.readouterr().out.strip()
    assert second != first and set(emulator_thread.context.stores.qwen_voices) == {first, second}
    assert voices("ensure", "--config", cfg) == 0
    assert capsys.readouterr().out.strip() == second


def test_config_errors_exit_78_without_requests(emulator_thread: EmulatorThread, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    cfg = config(tmp_path, emulator_thread.base_url, sample=str(bad))
    assert voices("ensure", "--config", cfg) == 78
    err = capsys.readouterr().err
    assert "configuration error: voice.sample: " in err and "not a WAV, MP3 or M4A" in err
    assert emulator_thread.context.request_log.records() == []

    cfg = config(tmp_path, emulator_thread.base_url, family="preset", preset="Tina")
    assert voices("list", "--config", cfg) == 78
    assert "preset" in capsys.readouterr().err
    assert voices("ensure", "--config", cfg) == 0
    assert capsys.readouterr().out.strip() == "Tina"


def test_wrong_key_exits_78_and_never_prints_a_key(emulator_thread: EmulatorThread, tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    wrong = "sk-notthekey-5555555555"
    cfg = config(tmp_path, emulator_thread.base_url, api_key=wrong)
    assert voices("ensure", "--config", cfg) == 78
    assert voices("list", "--config", cfg) == 78
    out = capfd.readouterr()
    assert "region" in out.err and wrong not in out.out + out.err and API_KEY not in out.out + out.err


def test_unverified_ensure_prints_the_cached_id_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with EmulatorThread(options=options(**ENROLL_FAST)) as et:
        cfg = config(tmp_path, et.base_url)
        assert voices("ensure", "--config", cfg) == 0
        voice_id = capsys.readouterr().out.strip()
    assert voices("ensure", "--config", cfg) == 1  # emulator gone
    out = capsys.readouterr()
    assert out.out.strip() == voice_id and "could not be verified" in out.err


def test_python_m_agent_voices(emulator_thread: EmulatorThread, tmp_path: Path) -> None:
    """The installed entry point, once agent.cli dispatches `voices` to main_voices."""
    cfg = config(tmp_path, emulator_thread.base_url)
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    res = subprocess.run([sys.executable, "-m", "agent", "voices", "ensure", "--config", cfg],
                         capture_output=True, text=True, timeout=60, env=env)
    if "not available in this version yet" in res.stderr:
        pytest.skip("agent.cli does not dispatch `voices` to agent.voices.cli.main_voices yet")
    assert res.returncode == 0, res.stderr
    voice_id = res.stdout.strip()
    assert voice_id in emulator_thread.context.stores.qwen_voices
    assert API_KEY not in res.stdout + res.stderr
    res = subprocess.run([sys.executable, "-m", "agent", "voices", "list", "--config", cfg, "--json"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 0 and json.loads(res.stdout)["voices"][0]["voice_id"] == voice_id
