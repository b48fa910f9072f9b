"""Configuration: defaults, strict validation, ${ENV} expansion, secrets — SPEC §4, §7."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, Settings, load_settings, parse_settings
from agent.endpoints import resolve_endpoints
from agent.secrets import redact, resolve_api_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.unit
def test_example_config_lists_every_key_with_its_default() -> None:
    example = load_settings(ROOT / "config" / "voice-agent.yaml")
    defaults = Settings()
    example = dataclasses.replace(example, source=defaults.source)
    assert dataclasses.asdict(example) == dataclasses.asdict(defaults)


@pytest.mark.unit
def test_empty_file_means_all_defaults() -> None:
    s = parse_settings("", "empty.yaml")
    assert s.mode == "omni"
    assert s.audio.jitter.target_ms == 80
    assert s.omni.turn_detection.silence_duration_ms == 800
    assert s.omni.idle_timeout_ms is None  # never sent: the model does not speak unprompted


@pytest.mark.unit
def test_idle_timeout_is_accepted_for_qwen35_with_server_vad() -> None:
    assert parse_settings("omni:\n  idle_timeout_ms: 15000\n").omni.idle_timeout_ms == 15000


@pytest.mark.unit
def test_unknown_key_is_named_with_the_closest_valid_one() -> None:
    with pytest.raises(ConfigError) as e:
        parse_settings("audio:\n  jiter: {target_ms: 60}\n", "my.yaml")
    assert "my.yaml" in str(e.value)
    assert "'audio.jiter'" in str(e.value)
    assert "did you mean 'audio.jitter'" in str(e.value)


@pytest.mark.unit
def test_unknown_top_level_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'mdoe'; did you mean 'mode'"):
        parse_settings("mdoe: omni\n", "x.yaml")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("mode: duplex\n", "mode"),
        ("audio:\n  chunk_ms: fast\n", "audio.chunk_ms"),
        ("audio:\n  chunk_ms: 5\n", "audio.chunk_ms"),
        ("log:\n  transcripts: maybe\n", "log.transcripts"),
        ("audio:\n  jitter: {target_ms: 20, min_ms: 40, max_ms: 400}\n", "audio.jitter"),
        ("audio: [1, 2]\n", "audio"),
        ("audio:\n  output: {backend: file}\n", "audio.output.path"),
        ("voice:\n  family: preset\n", "voice.preset"),
        ("dashscope:\n  http_url: ftp://x\n", "dashscope.http_url"),
        ("omni:\n  session_max_minutes: 150\n", "omni.session_max_minutes"),
        ("omni:\n  idle_timeout_ms: 1000\n", "omni.idle_timeout_ms"),
        ("omni:\n  idle_timeout_ms: 10000\n  model: qwen3-omni-flash-realtime\n", "omni.idle_timeout_ms"),
        ("omni:\n  idle_timeout_ms: 10000\n  turn_detection: {type: semantic_vad}\n", "omni.idle_timeout_ms"),
    ],
)
def test_invalid_values_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_settings(text, "bad.yaml")
    assert key in str(e.value)
    assert str(e.value).startswith("bad.yaml")


@pytest.mark.unit
def test_malformed_yaml_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"broken.yaml: invalid YAML \(line 3, column 1\): found"):
        parse_settings("mode: omni\nlog:\n\tlevel: info\n", "broken.yaml")


@pytest.mark.unit
def test_env_references_are_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VA_TEST_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("VA_TEST_CHUNK", "60")
    s = parse_settings(
        "dashscope:\n  http_url: ${VA_TEST_URL}\naudio:\n  chunk_ms: ${VA_TEST_CHUNK}\n"
        "voice:\n  name: ${VA_TEST_UNSET:-lobby}\n"
    )
    assert s.dashscope.http_url == "http://127.0.0.1:9999"
    assert s.audio.chunk_ms == 60
    assert s.voice.name == "lobby"


@pytest.mark.unit
def test_unset_env_reference_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VA_NOPE", raising=False)
    with pytest.raises(ConfigError, match=r"dashscope.workspace.*\$\{VA_NOPE\} is not set"):
        parse_settings("dashscope:\n  workspace: ${VA_NOPE}\n")


@pytest.mark.unit
def test_device_accepts_index_or_name() -> None:
    assert parse_settings("audio:\n  output: {device: 3}\n").audio.output.device == 3
    assert parse_settings("audio:\n  output: {device: USB}\n").audio.output.device == "USB"


@pytest.mark.unit
def test_region_selects_base_urls_and_overrides_win() -> None:
    intl = resolve_endpoints(parse_settings("").dashscope)
    assert intl.http_base == "https://dashscope-intl.aliyuncs.com"
    assert intl.realtime_ws("m") == "wss://dashscope-intl.aliyuncs.com/api-ws/v1/realtime?model=m"
    cn = resolve_endpoints(parse_settings("dashscope: {region: cn}").dashscope)
    assert cn.inference_ws == "wss://dashscope.aliyuncs.com/api-ws/v1/inference"
    emu = resolve_endpoints(parse_settings("dashscope: {http_url: 'http://127.0.0.1:8700/'}").dashscope)
    assert emu.ws_base == "ws://127.0.0.1:8700"
    assert emu.customization == "http://127.0.0.1:8700/api/v1/services/audio/tts/customization"


@pytest.mark.unit
class TestSecrets:
    @pytest.fixture(autouse=True)
    def _clean_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
        monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)

    def test_order_config_then_env_then_file_then_credential(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        keyfile = tmp_path / "key"
        keyfile.write_text("sk-fromfile0001\n")
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "dashscope-api-key").write_text("sk-fromcred0001")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
        s = parse_settings(f"dashscope: {{api_key_file: {keyfile}}}")
        assert resolve_api_key(s) == "sk-fromfile0001"
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-fromenv00001")
        assert resolve_api_key(s) == "sk-fromenv00001"
        s2 = parse_settings(f"dashscope: {{api_key: sk-fromcfg00001, api_key_file: {keyfile}}}")
        assert resolve_api_key(s2) == "sk-fromcfg00001"
        monkeypatch.delenv("DASHSCOPE_API_KEY")
        assert resolve_api_key(parse_settings("")) == "sk-fromcred0001"

    def test_missing_key_is_a_config_error_naming_the_options(self) -> None:
        with pytest.raises(ConfigError, match=r"dashscope.api_key: no API key found"):
            resolve_api_key(parse_settings(""))

    def test_unreadable_key_file_names_the_key(self, tmp_path: Path) -> None:
        s = parse_settings(f"dashscope: {{api_key_file: {tmp_path / 'missing'}}}")
        with pytest.raises(ConfigError, match=r"dashscope.api_key_file: cannot read"):
            resolve_api_key(s)

    def test_redaction_removes_the_key_everywhere(self) -> None:
        s = parse_settings("dashscope: {api_key: sk-0123456789abcdef}")
        key = resolve_api_key(s)
        assert key is not None
        text = f"GET wss://x/?key={key} failed: Bearer {key}"
        assert key not in redact(text)
        assert "sk-other12345678" not in redact("token sk-other12345678")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("VOICE_AGENT_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        cwd=ROOT,
    )


def test_cli_exits_78_naming_an_unknown_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mode: omni\nlog:\n  levle: debug\n")
    r = _cli("run", "--config", str(cfg))
    assert r.returncode == 78, r.stderr
    assert "log.levle" in r.stderr and "log.level" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_help_lists_every_command() -> None:
    r = _cli("--help")
    assert r.returncode == 0
    for cmd in ("run", "demo", "emulator", "voices", "devices", "check", "status", "say", "ask",
                "interrupt", "mute", "unmute", "tools", "listen", "talk", "forget"):
        assert cmd in r.stdout


def test_cli_without_command_is_a_usage_error() -> None:
    assert _cli().returncode == 2
