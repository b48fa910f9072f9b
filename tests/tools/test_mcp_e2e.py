"""An MCP light switch called by voice, end to end in both modes (SPEC §11, issue 16).

The daemon starts `mcp_light.py` (a stdio server written with the `mcp` SDK) from its
`tools.mcp` entry `home`; the emulator's scripted model hears "turn on the light", calls the
declared tool with `light` in its name and reads the result back. The server writes its state to
a file, so the test sees what the server itself was asked. A server that hangs: the call's
timeout (`tools.timeout_s`) goes back to the model as the result, the assistant says so, and
the daemon serves the next turn. A server that comes up after the realtime session opened is
offered to that session at once (omni re-sends `session.update`), without a reconnect.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from agent.cli import main  # noqa: E402
from agent.controlclient import request  # noqa: E402
from agent.tools.spec import ToolResult, ToolSpec  # noqa: E402
from tests.support.daemon import RunDaemon, Running  # noqa: E402

LIGHT = str(Path(__file__).with_name("mcp_light.py"))
MODES = pytest.mark.parametrize("daemon_mode", ["omni", "pipeline"])
TEXT = {"pipeline__input": "text"}


def home(state: Path, **env: str) -> list[dict[str, Any]]:
    """The `tools.mcp` list: the light switch as server `home`, writing its state to `state`."""
    return [{"name": "home", "command": [sys.executable, LIGHT],
             "env": {"LIGHT_STATE": str(state), **env}}]


async def until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def home_up(run: Running) -> Any:
    """The mode serving, with `home` up and its light offered to the model."""
    mode = await run.serving()
    await until(lambda: run.daemon.status.as_dict()["tools"]["mcp_servers"].get("home") == "up",
                30.0, "the home MCP server to be up")
    if hasattr(mode, "runner"):  # omni: its realtime session is open
        await until(lambda: mode.runner.conn is not None, 15.0, "the realtime session")
    return mode


async def ask(run: Running, text: str, timeout: float = 30.0) -> Any:
    mode = await home_up(run)
    await mode.ask(text)
    return await run.next_turn(timeout)


@MODES
async def test_the_light_is_switched_by_voice_through_an_mcp_server(
        daemon: RunDaemon, tmp_path: Path) -> None:
    state = tmp_path / "light.json"
    async with daemon(**TEXT, tools__mcp=home(state)) as run:
        on = await ask(run, "Turn on the light.")
        seen_on = json.loads(state.read_text())
        off = await ask(run, "Please turn the light off.")
        seen_off = json.loads(state.read_text())
        reply = await asyncio.to_thread(request, tmp_path / "control.sock", {"cmd": "status"}, 3.0)
        status = reply["status"]  # `voice-agent status`, over the control socket
    assert seen_on == {"on": True, "calls": 1}, "the server itself was asked to switch it on"
    assert "the light is on" in on.answered.lower(), on.answered
    assert seen_off == {"on": False, "calls": 2}
    assert "the light is off" in off.answered.lower(), off.answered
    assert status["tools"] == {"calls": 2, "errors": 0, "mcp_servers": {"home": "up"}}
    # Memory has what the tool said, for the next session (SPEC §11 "tool results in short").
    notes = [n for t in run.daemon.memory.turns for n in t.tools]
    assert notes == ['light_set {"on": true} -> the light is on',
                     'light_set {"on": false} -> the light is off']


@MODES
async def test_a_hanging_mcp_server_times_out_into_the_answer_and_the_daemon_serves_on(
        daemon: RunDaemon, tmp_path: Path) -> None:
    state = tmp_path / "light.json"
    async with daemon(**TEXT, tools__mcp=home(state, LIGHT_HANG="1"), tools__timeout_s=1.5) as run:
        t0 = time.monotonic()
        turn = await ask(run, "Turn on the light.")
        took = time.monotonic() - t0
        asked = json.loads(state.read_text())
        status = run.daemon.status.as_dict()
        after = await ask(run, "What time is it?")
    assert asked == {"on": False, "calls": 1, "hanging": True}, "the call reached the server"
    assert turn.answered.startswith("Sorry, that did not work"), turn.answered
    assert "light_set" in turn.answered and "1.5 s" in turn.answered, turn.answered
    assert not turn.interrupted and turn.error is None
    assert 1.5 <= took < 10.0, took
    assert status["tools"]["calls"] == 1 and status["tools"]["errors"] == 1
    assert status["tools"]["mcp_servers"] == {"home": "up"}, "one slow call does not take it down"
    assert after.answered.startswith("It is "), after.answered
    light_note, time_note = [n for t in run.daemon.memory.turns for n in t.tools]
    assert light_note.startswith('light_set {"on": true} -> failed: ') and "1.5 s" in light_note
    assert time_note.startswith("time {} -> It is ")


def test_voice_agent_tools_lists_the_light_and_says_the_server_answered(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(json.dumps({"tools": {"builtin": ["time"], "mcp": home(tmp_path / "light.json"),
                                         "timeout_s": 30}}))
    assert main(["tools", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and "MCP" not in line]
    assert "light_set" in listed and "light_get" in listed and "time" in listed, out
    assert "Switch the light on or off." in out
    assert "  home: answered" in out


class LateSwitch:
    """A tool source (as an MCP server is) that comes up only when the test says so."""

    def __init__(self) -> None:
        self.name = "home"
        self.up = False
        self.on_change: list[Any] = []
        self.calls: list[dict[str, Any]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def come_up(self) -> None:
        self.up = True
        for hook in self.on_change:
            hook()

    def specs(self) -> list[ToolSpec]:
        return [ToolSpec("light_set", "Switch the light.", {
            "type": "object", "properties": {"on": {"type": "boolean"}}})] if self.up else []

    def status(self) -> str:
        return "up" if self.up else "down"

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        self.calls.append(arguments)
        return ToolResult(f"the light is {'on' if arguments.get('on') else 'off'}")


@MODES
async def test_a_server_that_comes_up_after_the_session_opened_is_offered_at_once(
        daemon: RunDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    switch = LateSwitch()
    monkeypatch.setattr("agent.tools.factory.mcp_sources", lambda entries, *_: [switch])
    mcp = [{"name": "home", "command": ["late-server"]}]
    async with daemon(**TEXT, tools__mcp=mcp) as run:
        mode = await run.serving()
        if hasattr(mode, "runner"):
            await until(lambda: mode.runner.conn is not None, 15.0, "the realtime session")
        await mode.ask("Turn on the light.")  # nothing to call yet: the model just talks
        before = await run.next_turn(30.0)
        switch.come_up()  # no reconnect, no rotation: the open session must learn of it
        await asyncio.sleep(0.3)
        after = await ask(run, "Turn on the light.")
        reconnects = run.daemon.status.as_dict().get("reconnects")
    assert "the light is on" not in before.answered.lower()
    assert switch.calls == [{"on": True}]
    assert "the light is on" in after.answered.lower(), after.answered
    assert not reconnects
