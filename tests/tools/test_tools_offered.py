"""`voice-agent tools` and `check`: what the model is offered, and a model without tools."""

from __future__ import annotations

import io
import json

import pytest

from agent.check.local import check_tools
from agent.cli import main
from agent.config import parse_settings
from agent.tools.builtin import SPECS
from agent.tools.cli import tools_command

pytestmark = pytest.mark.unit


def test_tools_lists_the_builtins_with_their_descriptions_and_says_no_mcp_is_configured() -> None:
    out = io.StringIO()
    assert tools_command(parse_settings("tools: {builtin: [time, volume]}\n"), out=out) == 0
    text = out.getvalue()
    assert text.splitlines()[0] == "Tools offered to qwen3.5-omni-flash-realtime (omni mode):"
    assert "  time  " in text and "  volume  " in text and "timer" not in text
    assert SPECS["volume"].description in text
    assert text.rstrip().endswith("MCP servers: none configured (tools.mcp)")


def test_a_model_without_function_calling_is_offered_nothing_and_check_says_why() -> None:
    s = parse_settings("omni: {model: qwen3-omni-flash-realtime}\n")
    out = io.StringIO()
    tools_command(s, as_json=True, out=out)
    doc = json.loads(out.getvalue())
    assert doc["tools"] == [] and not doc["takes_tools"]
    assert doc["mcp_servers"] == {}
    line = check_tools(s)
    assert line.ok and "qwen3-omni-flash-realtime has no function calling" in line.detail
    assert "runs without tools" in line.detail


def test_pipeline_models_take_tools() -> None:
    s = parse_settings("mode: pipeline\nvoice: {family: cosyvoice}\n")
    assert check_tools(s).detail.startswith("time, timer, volume")


def test_a_bad_builtin_name_exits_78_naming_the_key(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tools: {builtin: [time, weather]}\n")
    assert main(["tools", "--config", str(cfg)]) == 78
    assert "tools.builtin: unknown built-in tool 'weather'" in capsys.readouterr().err
