"""Function calling end to end, in both modes: the daemon against the emulator on loopback.

The emulator's scripted model calls a declared tool when the user's words name it and reads
the result back (agent/emulator/tool_script.py), over the realtime protocol (omni) and the
native text-generation stream (pipeline). Turns are asked as text (`ask`), so these tests
exercise the tools and not the emulator's recognizer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import DaemonControl
from agent.listen.earcons import earcon
from agent.tools.spec import ToolResult, ToolSpec
from tests.support.audio import OUT_RATE, locate, read_wav
from tests.support.daemon import RunDaemon, Running
from tests.support.emulator import GENERATION
from tests.support.integration import scrape, subscribed, value
from tests.support.modes import sentence_audio
from tests.support.rig import free_port

MODES = pytest.mark.parametrize("daemon_mode", ["omni", "pipeline"])
TEXT = {"pipeline__input": "text"}


async def until(pred: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def serving(run: Running) -> Any:
    """The mode, connected (omni: its realtime session is open)."""
    mode = await run.serving()
    if hasattr(mode, "runner"):
        await until(lambda: mode.runner.conn is not None, what="the realtime session")
    return mode


async def ask(run: Running, text: str, timeout: float = 20.0) -> Any:
    mode = await serving(run)
    await mode.ask(text)
    return await run.next_turn(timeout)


@MODES
async def test_a_time_question_is_answered_through_the_time_tool(daemon: RunDaemon, tmp_path: Path) -> None:
    async with daemon(**TEXT) as run:
        await serving(run)
        events = await subscribed(tmp_path / "control.sock", lambda e: e["event"] == "turn")
        before = dt.datetime.now().astimezone()
        turn = await ask(run, "What time is it?")
        status = run.daemon.status.as_dict()
        seen = await asyncio.wait_for(events, 10)
    said = {f"It is {t:%H:%M} on {t:%A}" for t in (before, dt.datetime.now().astimezone())}
    assert any(s in turn.answered for s in said), turn.answered
    assert not turn.interrupted and turn.error is None
    assert status["tools"] == {"calls": 1, "errors": 0, "mcp_servers": {}}
    assert status["turns"] == 1
    (tool,) = [e for e in seen if e["event"] == "tool"]  # SPEC §12, for kiosks and LED rings
    assert (tool["name"], tool["arguments"], tool["ok"]) == ("time", {}, True) and tool["ms"] >= 0


@MODES
async def test_malformed_tool_arguments_are_answered_with_an_error_result(daemon: RunDaemon) -> None:
    port = free_port()
    async with daemon(**TEXT, metrics__listen=f"127.0.0.1:{port}") as run:
        turn = await ask(run, "Set a timer for five seconds with broken arguments.")
        status = run.daemon.status.as_dict()
        after = await ask(run, "What time is it?")  # the daemon serves on
        _, _, body = await scrape(port)
    assert "Sorry, that did not work" in turn.answered and "not valid JSON" in turn.answered
    assert status["tools"]["calls"] == 1 and status["tools"]["errors"] == 1
    assert after.answered.startswith("It is")
    assert value(body, "voice_agent_tool_calls_total") == 2
    assert value(body, "voice_agent_tool_errors_total") == 1


@MODES
async def test_a_timer_set_before_a_restart_rings_on_time_until_interrupted(
        daemon: RunDaemon, tmp_path: Path) -> None:
    async with daemon(**TEXT) as run:
        asked_at = time.time()
        turn = await ask(run, "Set a tea timer for six seconds.")
        saved = json.loads((tmp_path / "state" / "timers.json").read_text())
        assert await run.stop() == 0
    assert "The tea timer is set for 6 seconds" in turn.answered
    assert [t["name"] for t in saved["timers"]] == ["tea"]
    assert (tmp_path / "state" / "timers.json").stat().st_mode & 0o777 == 0o600

    async with daemon(**TEXT) as run:  # a new process would do the same: the file is the state
        await serving(run)
        ringer = run.daemon.ringer
        await until(lambda: ringer.ringing == ["tea"], timeout=15.0, what="the timer to ring")
        rang_at = time.time()
        await until(lambda: ringer.lines_spoken >= 2, timeout=20.0, what="the line twice")
        await DaemonControl(run.daemon).interrupt()
        assert ringer.ringing == []
        spoken = ringer.lines_spoken
        await asyncio.sleep(3.0)
        assert ringer.lines_spoken == spoken and ringer.ringing == [], "nothing rings after interrupt"
        saved_after = json.loads((tmp_path / "state" / "timers.json").read_text())
        assert await run.stop() == 0
    due = saved["timers"][0]["due"]
    assert asked_at + 6.0 <= due <= asked_at + 8.0
    assert due <= rang_at <= due + 1.0, rang_at - due
    assert saved_after == {"timers": []}
    out = read_wav(run.output)
    line_at, corr = locate(out, sentence_audio("The tea timer is done.")[0])
    assert corr > 0.99, "the spoken line is in the speaker output"
    _, corr = locate(out[max(0, line_at - OUT_RATE): line_at], earcon("timer"))
    assert corr > 0.99, "the timer earcon plays just before it"


class SlowClock:
    """A tool source (as an MCP server would be) whose `time` takes `delay_s` to answer."""

    def __init__(self, delay_s: float) -> None:
        self.name = "clock"
        self.delay_s = delay_s
        self.started = asyncio.Event()
        self.finished = asyncio.Event()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def specs(self) -> list[ToolSpec]:
        return [ToolSpec("time", "The current time (slowly).")]

    def status(self) -> str:
        return "up"

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        self.started.set()
        try:
            await asyncio.sleep(self.delay_s)
            return ToolResult("It is five past ten.")
        finally:
            self.finished.set()


@pytest.fixture
def slow_clock(monkeypatch: pytest.MonkeyPatch) -> SlowClock:
    """The clock served through the registry's MCP seam (one `tools.mcp` entry)."""
    clock = SlowClock(1.5)
    monkeypatch.setattr("agent.tools.factory.mcp_sources", lambda entries, *_: [clock])
    return clock


SLOW = {**TEXT, "tools__builtin": ["timer", "volume"],
        "tools__mcp": [{"name": "clock", "command": ["clock-server"]}]}


async def cut_off_during_the_call(run: Running, clock: SlowClock) -> Any:
    """Ask the time, barge in while the slow clock runs; the cut-off turn, once the late result is in."""
    mode = await serving(run)
    await mode.ask("What time is it?")
    await asyncio.wait_for(clock.started.wait(), 10.0)
    await DaemonControl(run.daemon).interrupt()
    turn = await run.next_turn(10.0)
    await asyncio.wait_for(clock.finished.wait(), 5.0)
    return turn


@MODES
async def test_barge_in_during_a_tool_call_ends_the_turn_and_the_late_result_is_not_spoken(
        daemon: RunDaemon, slow_clock: SlowClock) -> None:
    async with daemon(**SLOW) as run:
        turn = await cut_off_during_the_call(run, slow_clock)
        with pytest.raises(asyncio.TimeoutError):  # no answer to the late result
            await run.next_turn(2.5)
        status = run.daemon.status.as_dict()
        llm_requests = run.requests(GENERATION)
        after = await ask(run, "What time is it?")  # the next turn is clean
    assert turn.interrupted and "five past ten" not in turn.answered
    assert status["barge_ins"] == 1 and status["tools"]["mcp_servers"] == {"clock": "up"}
    if run.daemon.settings.mode == "pipeline":
        assert llm_requests == 1, "no follow-up request with the late result"
    assert "five past ten" in after.answered


@MODES
async def test_a_late_tool_result_after_a_barge_in_is_remembered_in_its_own_turn(
        daemon: RunDaemon, slow_clock: SlowClock) -> None:
    async with daemon(**SLOW) as run:
        cut = await cut_off_during_the_call(run, slow_clock)
        await ask(run, "Tell me a joke.")
        memory = run.daemon.memory
        assert memory is not None
        turns = memory.turns
    assert cut.interrupted
    asked, joke = turns
    assert asked.user == "What time is it?" and asked.interrupted
    assert asked.tools == ("time {} -> It is five past ten.",), "filed under the turn that called it"
    assert joke.user == "Tell me a joke." and joke.tools == ()


async def test_an_omni_model_without_function_calling_runs_without_tools(daemon: RunDaemon) -> None:
    async with daemon(mode="omni", omni__model="qwen3-omni-flash-realtime",
                      voice={"family": "preset", "preset": "Cherry"}) as run:
        mode = await serving(run)
        offered = mode.configure_event()["session"]
        turn = await ask(run, "What time is it?")
        status = run.daemon.status.as_dict()
    assert "tools" not in offered
    assert turn.answered.startswith("I am only an emulator")  # the model's own words, no tool
    assert status["tools"]["calls"] == 0 and status["turns"] == 1


@pytest.mark.parametrize("daemon_mode", ["pipeline"])
async def test_pipeline_speech_before_a_call_plays_before_the_answer_to_its_result(daemon: RunDaemon) -> None:
    async with daemon(**TEXT) as run:
        turn = await ask(run, "What time is it, please?")
        await asyncio.sleep(0.5)
        assert await run.stop() == 0
    assert turn.answered.startswith("Sure, one moment. It is "), turn.answered
    out = read_wav(run.output)
    before, corr = locate(out, sentence_audio("Sure, one moment.")[0])
    assert corr > 0.99
    answer = sentence_audio(turn.answered)[1]
    after, corr = locate(out, answer)
    assert corr > 0.99 and after > before


@MODES
async def test_a_spoken_time_question_is_answered_through_the_time_tool(daemon: RunDaemon) -> None:
    async with daemon([(0.5, "What time is it?")]) as run:
        turn = await run.next_turn(30.0)
        status = run.daemon.status.as_dict()
    assert turn.heard == "What time is it?" and turn.answered.startswith("It is "), turn.answered
    assert status["tools"]["calls"] == 1 and turn.latency_ms is not None

