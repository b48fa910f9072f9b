"""Offline parts: state dir resolution, family ↔ mode, prefix mapping, service-error mapping."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.config import ConfigError, settings_from_dict
from agent.secrets import register_secret
from agent.statedir import open_state_dir, resolve_state_dir
from agent.voices import check_voice_config
from agent.voices.errors import (
    AuthError,
    EnrollmentError,
    QuotaError,
    SampleError,
    ServiceReply,
    ServiceUnavailable,
    VoiceNotFound,
    classify,
)
from agent.voices.plan import cosy_prefix, plan_voice, voice_matches
from tests.support.emulator import API_KEY

pytestmark = pytest.mark.unit


def _settings(**raw: object):
    return settings_from_dict(raw, "cfg.yaml")


# --- state dir ------------------------------------------------------------------------------------


def test_state_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert resolve_state_dir(_settings())[0] == tmp_path / "home/.local/state/voice-agent"
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/sd1:{tmp_path}/sd2")
    assert resolve_state_dir(_settings())[0] == tmp_path / "sd1"
    assert resolve_state_dir(_settings(state_dir=str(tmp_path / "cfg")))[0] == tmp_path / "cfg"


def test_state_dir_is_created_0700(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "umask", os.umask)  # restore afterwards
    old = os.umask(0o000)
    try:
        path = open_state_dir(_settings(state_dir=str(tmp_path / "a/b/state")))
    finally:
        os.umask(old)
    assert path == tmp_path / "a/b/state"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_existing_state_dir_keeps_its_mode(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    d.mkdir(mode=0o750)
    os.chmod(d, 0o750)
    open_state_dir(_settings(state_dir=str(d)))
    assert stat.S_IMODE(d.stat().st_mode) == 0o750


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: state_dir: .*not a directory"):
        open_state_dir(_settings(state_dir=str(f)))
    with pytest.raises(ConfigError, match="state_dir: .*cannot create"):
        open_state_dir(_settings(state_dir=str(f / "sub")))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_state_dir_not_writable(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    os.chmod(d, 0o500)
    try:
        with pytest.raises(ConfigError, match="not writable"):
            open_state_dir(_settings(state_dir=str(d)))
    finally:
        os.chmod(d, 0o700)


# --- family / mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "family", "fits"),
    [("omni", "cosyvoice", "qwen or preset"), ("pipeline", "qwen", "cosyvoice or preset")],
)
def test_family_must_fit_the_mode(mode: str, family: str, fits: str) -> None:
    with pytest.raises(ConfigError) as e:
        check_voice_config(_settings(mode=mode, voice={"family": family}))
    msg = str(e.value)
    assert msg.startswith("cfg.yaml: voice.family: ") and f"mode '{mode}'" in msg and fits in msg


def test_fitting_families_pass() -> None:
    check_voice_config(_settings(mode="omni", voice={"family": "qwen"}))
    check_voice_config(_settings(mode="pipeline", voice={"family": "cosyvoice"}))
    check_voice_config(_settings(mode="pipeline", voice={"family": "preset", "preset": "longanyang"}))


def test_target_models_follow_the_mode(tmp_path: Path) -> None:
    omni = plan_voice(_settings(mode="omni", omni={"model": "qwen3.5-omni-plus-realtime"}))
    assert (omni.family, omni.target_model, omni.request_name) == ("qwen", "qwen3.5-omni-plus-realtime", "kiosk")
    pipe = plan_voice(_settings(mode="pipeline", voice={"family": "cosyvoice", "name": "Front_Desk"},
                                pipeline={"tts_model": "cosyvoice-v3-plus"}))
    assert (pipe.target_model, pipe.request_name) == ("cosyvoice-v3-plus", "frontdesk")


def test_design_and_language_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="voice.design_prompt: voice design is available for cosyvoice"):
        check_voice_config(_settings(voice={"design_prompt": "a calm voice"}))
    with pytest.raises(ConfigError, match="voice.design_prompt: describe the voice in 1–500"):
        check_voice_config(_settings(mode="pipeline", voice={"family": "cosyvoice", "design_prompt": "x" * 501}))
    with pytest.raises(ConfigError, match="voice.language: 'es' is not supported here; use one of zh, en, fr"):
        check_voice_config(_settings(mode="pipeline", voice={"family": "cosyvoice", "language": "es"}))
    check_voice_config(_settings(voice={"language": "es"}))  # qwen speaks Spanish
    for code in ("vi", "th", "ar", "he", "tl", "ur"):  # S004's 29 codes, not only the first 10 (R12)
        check_voice_config(_settings(voice={"language": code}))
    with pytest.raises(ConfigError, match="voice.sample: file not found"):
        check_voice_config(_settings(voice={"sample": str(tmp_path / "missing.wav")}))


def test_cosy_prefix_mapping() -> None:
    assert cosy_prefix("kiosk") == "kiosk"
    assert cosy_prefix("Front_Desk") == "frontdesk"
    a, b = cosy_prefix("frontdesk1"), cosy_prefix("frontdesk2")
    assert a != b and a.startswith("front") and len(a) == 9 and a.isalnum() and a.islower()
    assert cosy_prefix("___").startswith("v") and len(cosy_prefix("___")) == 9
    for name in ("kiosk", "Front_Desk", "frontdesk1", "___", "A" * 16):
        p = cosy_prefix(name)
        assert 1 <= len(p) <= 9 and p == cosy_prefix(name) and p.isalnum() and p == p.lower()


def test_voice_matching() -> None:
    q = plan_voice(_settings(omni={"model": "qwen3.5-omni-flash-realtime"}))
    assert voice_matches(q, "qwen-omni-vc-kiosk-voice-20250812105009984-838b", "qwen3.5-omni-flash-realtime")
    assert voice_matches(q, "qwen-tts-vc-kiosk-voice-20250812105009984-838b", "qwen3.5-omni-flash-realtime")
    assert not voice_matches(q, "qwen-omni-vc-kiosk-voice-1-8", "qwen3.5-omni-plus-realtime")
    assert not voice_matches(q, "qwen-omni-vc-kiosk_2-voice-1-8", "qwen3.5-omni-flash-realtime")
    c = plan_voice(_settings(mode="pipeline", voice={"family": "cosyvoice", "sample_url": "https://x/a.wav"}))
    assert voice_matches(c, "cosyvoice-v3-flash-kiosk-0a1b2c3d", None)
    assert not voice_matches(c, "cosyvoice-v3-flash-vd-kiosk-0a1b2c3d", None)  # designed, not cloned
    assert not voice_matches(c, "cosyvoice-v3-plus-kiosk-0a1b2c3d", None)
    assert not voice_matches(c, "cosyvoice-v3-flash-kiosk2-0a1b2c3d", None)


# --- service errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls", "advice"),
    [
        (401, "InvalidApiKey", AuthError, "keys are region-specific"),
        (400, "Throttling.AllocationQuota", QuotaError, "`voice-agent voices delete ID`"),
        (429, "Throttling.AllocationQuota", QuotaError, "`voice-agent voices list`"),
        (400, "Audio.AudioRateError", SampleError, "24 kHz or more"),
        (400, "Audio.PreprocessError", SampleError, "continuous clear speech"),
        (400, "Audio.DecoderError", SampleError, "16-bit PCM mono WAV"),
        (400, "BadRequest.InputDownloadFailed", SampleError, "publicly reachable"),
        (400, "BadRequest.ResourceNotExist", VoiceNotFound, "does not exist"),
        (429, "Throttling.RateQuota", ServiceUnavailable, "busy"),
        (503, "ServiceUnavailable", ServiceUnavailable, "busy"),
        (500, "InternalError", ServiceUnavailable, "busy"),
        (403, "AccessDenied", EnrollmentError, "activation"),
        (404, "ModelNotFound", EnrollmentError, "pipeline.tts_model"),
        (400, "InvalidParameter", EnrollmentError, "InvalidParameter"),
    ],
)
def test_service_errors_map_to_actions(status: int, code: str, cls: type, advice: str) -> None:
    err = classify(ServiceReply(status, code, "the message", "rid-1"), what="create voice")
    assert type(err) is cls
    assert advice in str(err) and "rid-1" in str(err) and code in str(err)
    assert err.retryable == (cls is ServiceUnavailable)


def test_sample_errors_are_config_errors() -> None:
    err = classify(ServiceReply(400, "Audio.DurationLimitError", "too long"), what="create")
    assert isinstance(err, ConfigError) and str(err).startswith("voice.sample: ")


def test_service_text_is_redacted() -> None:
    register_secret(API_KEY)
    err = classify(ServiceReply(401, "InvalidApiKey", f"Incorrect API key provided: {API_KEY}"), what="list")
    assert API_KEY not in str(err) and "***" in str(err)
    err = classify(ServiceReply(400, "InvalidParameter", "key sk-abcdef0123456789 bad"), what="list")
    assert "sk-abcdef0123456789" not in str(err)
