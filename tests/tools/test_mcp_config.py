"""One `tools.mcp` entry checked, and MCP tools shown to DashScope (agent.tools.mcp_config)."""

from __future__ import annotations

import importlib.metadata
from types import SimpleNamespace

import pytest

from agent.config import ConfigError
from agent.tools import mcp_config
from agent.tools.mcp_config import McpServerConfig, result_text, tool_name, tool_parameters

pytestmark = pytest.mark.unit


def test_a_stdio_entry_and_an_http_entry() -> None:
    stdio = McpServerConfig.parse({"name": "light", "command": ["python3", "light.py"],
                                   "env": {"LEVEL": 3}, "allow": ["light_set"]})
    assert (stdio.kind, stdio.command, dict(stdio.env), stdio.allow) == (
        "stdio", ("python3", "light.py"), {"LEVEL": "3"}, ("light_set",))
    http = McpServerConfig.parse({"name": "home", "url": "http://ha.local:8123/api/mcp",
                                  "token_file": "/etc/voice-agent/ha-token"})
    assert (http.kind, http.allow) == ("http", None)
    # The registry may hand over its own parsed entry object.
    again = McpServerConfig.parse(SimpleNamespace(name="home", url=http.url, token_file=None,
                                                  command=None, env=None, allow=None))
    assert again.url == http.url


@pytest.mark.parametrize(("entry", "key"), [
    ({"command": ["x"]}, "tools.mcp[0].name"),
    ({"name": "a b", "command": ["x"]}, "tools.mcp[0].name"),
    ({"name": "x"}, "either 'command'"),
    ({"name": "x", "command": ["x"], "url": "http://h/"}, "either 'command'"),
    ({"name": "x", "url": "ftp://h/"}, "tools.mcp[0].url"),
    ({"name": "x", "command": [1]}, "tools.mcp[0].command"),
    ({"name": "x", "command": ["x"], "token_file": "t"}, "tools.mcp[0].token_file"),
    ({"name": "x", "url": "http://h/", "env": {"A": "1"}}, "tools.mcp[0].env"),
    ({"name": "x", "command": ["x"], "allow": "light_set"}, "tools.mcp[0].allow"),
    ({"name": "x", "command": ["x"], "tokenfile": "t"}, "unknown key 'tokenfile'"),
    ("light", "each server is a mapping"),
])
def test_a_bad_entry_names_its_key(entry: object, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        McpServerConfig.parse(entry, "tools.mcp[0]")


def test_names_and_schemas_fit_dashscope() -> None:
    assert tool_name("HassTurnOn") == "HassTurnOn"
    assert tool_name("home.light/set") == "home_light_set"
    assert len(tool_name("x" * 200)) == 64
    assert tool_parameters(None) == {"type": "object", "properties": {}}
    # Home Assistant's schemas come without `required`; a `$schema` key is dropped.
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "properties": {"name": {"type": "string"}}}
    assert tool_parameters(schema) == {"type": "object", "properties": {"name": {"type": "string"}}}


def test_a_result_is_one_string_for_the_model() -> None:
    text = SimpleNamespace(type="text", text="kitchen light on")
    image = SimpleNamespace(type="image", data="...")
    assert result_text([text, image], None) == "kitchen light on\n[image]"
    assert result_text([], {"on": True}) == '{"on": true}'
    assert result_text([], None) == "(no result)"
    assert len(result_text([SimpleNamespace(type="text", text="x" * 10_000)], None)) == 4000


def test_a_missing_or_wrong_mcp_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def absent(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mcp_config.importlib.metadata, "version", absent)
    assert "tools.mcp" in (mcp_config.mcp_missing() or "") and "voice-agent[mcp]" in (mcp_config.mcp_missing() or "")
    monkeypatch.setattr(mcp_config.importlib.metadata, "version", lambda name: "1.29.0")
    assert "mcp>=2.3,<3" in (mcp_config.mcp_missing() or "")
    monkeypatch.setattr(mcp_config.importlib.metadata, "version", lambda name: "2.3.0")
    assert mcp_config.mcp_missing() is None


def test_configured_servers_without_the_package_stop_the_daemon_at_preflight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agent.daemon import _mcp_problem

    monkeypatch.setattr(mcp_config, "mcp_missing", lambda: "tools.mcp: not installed")
    none = SimpleNamespace(tools=SimpleNamespace(mcp=[]))
    some = SimpleNamespace(tools=SimpleNamespace(mcp=[{"name": "light", "command": ["x"]}]))
    assert _mcp_problem(none) is None  # type: ignore[arg-type]
    assert _mcp_problem(some) == "tools.mcp: not installed"  # type: ignore[arg-type]
