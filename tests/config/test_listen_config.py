"""The `listen` section (SPEC §4, §10): defaults, refusals with exit 78 naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, ListenSettings, parse_settings
from agent.listen.runtime import effective_mode, frontend_config, manual_turns

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_listen_defaults_are_the_spec_defaults() -> None:
    assert parse_settings("").listen == ListenSettings(
        mode="always", wake_word="okay_nabu", wake_threshold=None, follow_up_s=6.0,
        preroll_ms=400, vad=False, end_of_turn="server", earcons=True)


@pytest.mark.unit
def test_every_listen_key_is_read() -> None:
    s = parse_settings(
        "listen: {mode: wake_word, wake_word: hey_jarvis, wake_threshold: 0.8, follow_up_s: 3,"
        " preroll_ms: 250, vad: true, earcons: false}")
    assert s.listen == ListenSettings("wake_word", "hey_jarvis", 0.8, 3.0, 250, True, "server", False)


@pytest.mark.unit
@pytest.mark.parametrize(("yaml", "key"), [
    ("listen: {mode: sometimes}", "listen.mode"),
    ("listen: {wake_threshold: 1.5}", "listen.wake_threshold"),
    ("listen: {preroll_ms: -1}", "listen.preroll_ms"),
    ("listen: {follow_up_s: 1000}", "listen.follow_up_s"),
    ("listen: {wakeword: alexa}", "listen.wakeword"),
])
def test_bad_listen_values_name_the_key(yaml: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_settings(yaml, "c.yaml")


@pytest.mark.unit
def test_local_end_of_turn_is_accepted_and_the_daemon_commits_the_turns() -> None:
    s = parse_settings("listen: {end_of_turn: local}", "c.yaml")
    assert s.listen.end_of_turn == "local"
    assert effective_mode(s) == "always" and manual_turns(s), "no server VAD: the decider ends turns"


@pytest.mark.unit
def test_local_end_of_turn_with_the_wake_word_holds_each_wake_turn_until_its_question_starts() -> None:
    s = parse_settings("listen: {end_of_turn: local, mode: wake_word}", "c.yaml")
    assert effective_mode(s) == "wake_word" and manual_turns(s)
    assert frontend_config(s).hold_wake, "the commit must not carry the wake word (docs/turn.md)"
    assert not frontend_config(parse_settings("listen: {mode: wake_word}", "c.yaml")).hold_wake, \
        "with server VAD the service segments the question itself"


@pytest.mark.unit
def test_omni_without_turn_detection_commits_its_own_turns() -> None:
    s = parse_settings("omni: {turn_detection: {type: none}}")
    assert effective_mode(s) == "push_to_talk" and manual_turns(s)
    assert not manual_turns(parse_settings(""))
    assert manual_turns(parse_settings("mode: pipeline\nvoice: {family: cosyvoice}\n"
                                       "listen: {mode: push_to_talk}"))


def _run(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


@pytest.mark.parametrize("model", ["missing.json", "corrupt.tflite"])
def test_unreadable_wake_word_model_exits_78_naming_the_key(tmp_path: Path, model: str) -> None:
    (tmp_path / "corrupt.json").write_text(
        '{"model": "corrupt.tflite", "micro": {"probability_cutoff": 0.9, "sliding_window_size": 5}}')
    (tmp_path / "corrupt.tflite").write_bytes(b"\0\0\0\0TFL3" + b"\xff" * 64)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dashscope: {{api_key: sk-test}}\nstate_dir: {tmp_path}/state\n"
                   f"audio: {{input: {{backend: 'null'}}, output: {{backend: 'null'}}}}\n"
                   f"listen: {{mode: wake_word, wake_word: {tmp_path / model}}}\n")
    r = _run(cfg)
    assert r.returncode == 78, r.stderr
    assert "listen.wake_word" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
