"""Every shipped file in config/ loads with the daemon's own settings loader (SPEC §4).

Why: an example that no longer parses (a renamed key, a stale fragment) is copied by users and
fails at their first start with exit 78. New files in config/ are covered without touching this
test; the MCP example is also read the way the daemon reads each server (`McpServerConfig`).
"""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from agent.config import check_family_fits_mode, load_settings
from agent.tools.mcp_config import McpServerConfig

pytestmark = pytest.mark.unit

CONFIG = Path(__file__).resolve().parents[2] / "config"
EXAMPLES = sorted(CONFIG.glob("*.yaml")) + sorted(CONFIG.glob("*.yml"))


def test_the_config_directory_holds_the_examples_the_docs_name() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"voice-agent.yaml", "emulator.yaml", "tools-mcp.example.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_in_config_loads_with_the_settings_loader(
        path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    question = tmp_path / "question.wav"  # emulator.yaml's file microphone must exist
    with wave.open(str(question), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * 1600)
    monkeypatch.setenv("VOICE_AGENT_INPUT_WAV", str(question))
    settings = load_settings(path)
    check_family_fits_mode(settings)  # the voice fits the mode, as `run` checks at start
    assert settings.source == str(path)


def test_the_mcp_example_declares_an_http_and_a_stdio_server_with_an_allow_list() -> None:
    tools = load_settings(CONFIG / "tools-mcp.example.yaml").tools
    servers = [McpServerConfig.parse(m, f"tools.mcp[{i}]") for i, m in enumerate(tools.mcp)]
    home, notes = servers
    assert (home.kind, home.url, home.token_file) == (
        "http", "http://homeassistant.local:8123/api/mcp", "/etc/voice-agent/ha-token")
    assert home.allow == ("HassTurnOn", "HassTurnOff", "GetLiveContext")
    assert (notes.kind, notes.allow) == ("stdio", None)
    assert notes.command[0] == "python3" and notes.env
