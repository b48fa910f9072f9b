"""The registry, the built-ins and the timers, without sockets (pure and asyncio only)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, parse_settings
from agent.tools.builtin import BuiltinSource, duration_text
from agent.tools.registry import ToolRegistry
from agent.tools.spec import ToolResult, ToolSpec
from agent.tools.timers import Ringer, Timers, TimerStore

pytestmark = pytest.mark.unit


class Source:
    """A tool source with fixed tools; `call` answers by name (or hangs, or raises)."""

    def __init__(self, name: str, tools: list[str], behaviour: str = "ok") -> None:
        self.name = name
        self.tools = tools
        self.behaviour = behaviour
        self.called: list[tuple[str, dict[str, Any]]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def specs(self) -> list[ToolSpec]:
        return [ToolSpec(t, f"{t} from {self.name}") for t in self.tools]

    def status(self) -> str:
        return "up"

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        self.called.append((name, arguments))
        if self.behaviour == "hang":
            await asyncio.sleep(60)
        if self.behaviour == "raise":
            raise RuntimeError("the light switch is unplugged")
        if self.behaviour == "refuse":  # an error result in the source's own words
            return ToolResult("the light switch is unplugged", True)
        return ToolResult(f"{self.name}.{name} done")


def test_clashing_names_get_the_source_name_as_prefix_and_route_to_their_source() -> None:
    first, second = Source("builtin", ["time", "timer"]), Source("ha", ["time", "turn_on"])
    reg = ToolRegistry([first, second])
    assert [s.name for s in reg.specs()] == ["time", "timer", "ha_time", "turn_on"]
    assert asyncio.run(reg.call("ha_time", "{}")) == ToolResult("ha.time done")
    assert second.called == [("time", {})] and first.called == []


def test_a_source_coming_up_or_going_down_is_passed_on_to_the_registry_listeners() -> None:
    class Changing(Source):
        def __init__(self) -> None:
            super().__init__("home", [])
            self.on_change: list[Any] = []

    home, fixed = Changing(), Source("builtin", ["time"])
    reg = ToolRegistry([fixed, home])
    seen: list[list[str]] = []
    reg.on_change.append(lambda: seen.append([s.name for s in reg.specs()]))
    reg.on_change.append(lambda: 1 / 0)  # a broken listener does not stop the others or the source
    home.tools = ["light_set"]
    for hook in home.on_change:
        hook()
    home.tools = []
    for hook in home.on_change:
        hook()
    assert seen == [["time", "light_set"], ["time"]]


def test_an_error_result_always_tells_the_model_it_is_an_error() -> None:
    reg = ToolRegistry([Source("home", ["light_set"], "refuse")])
    result = asyncio.run(reg.call("light_set", "{}"))
    assert result == ToolResult("error: the light switch is unplugged", True)


@pytest.mark.parametrize("arguments, why", [
    ('{"seconds": ', "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('"five"', "must be a JSON object"),
])
def test_malformed_arguments_become_an_error_result_and_the_tool_is_not_run(arguments: str, why: str) -> None:
    src = Source("builtin", ["timer"])
    reg = ToolRegistry([src])
    result = asyncio.run(reg.call("timer", arguments))
    assert result.is_error and why in result.text and src.called == []
    assert reg.status() == {"calls": 1, "errors": 1, "mcp_servers": {}}


def test_a_hanging_or_failing_tool_is_an_error_result_within_the_timeout() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    reg = ToolRegistry([Source("slow", ["wait"], "hang"), Source("bad", ["switch"], "raise")],
                       timeout_s=0.2, publish=lambda e, **f: events.append((e, f)))

    async def both() -> tuple[ToolResult, ToolResult, ToolResult]:
        return (await reg.call("wait", None), await reg.call("switch", {}), await reg.call("nope", ""))

    hung, failed, unknown = asyncio.run(both())
    assert hung == ToolResult("error: wait did not answer within 0.2 s", True)
    assert failed.is_error and "unplugged" in failed.text
    assert unknown.is_error and "no tool named 'nope'" in unknown.text
    assert reg.status()["errors"] == 3 and reg.status()["mcp_servers"] == {"slow": "up", "bad": "up"}
    assert [(e, f["name"], f["ok"]) for e, f in events] == [
        ("tool", "wait", False), ("tool", "switch", False), ("tool", "nope", False)]
    assert events[0][1]["ms"] >= 200


def test_time_says_the_local_date_time_and_zone() -> None:
    zone = dt.timezone(dt.timedelta(hours=1), "CET")
    src = BuiltinSource(["time"], now=lambda: dt.datetime(2026, 12, 3, 14, 5, tzinfo=zone))
    assert asyncio.run(src.call("time", {})) == ToolResult(
        "It is 14:05 on Thursday, 3 December 2026 (CET, UTC+01:00).")


def test_volume_reads_and_sets_through_the_one_volume_control() -> None:
    levels = [70]

    def volume(level: int | None) -> int:
        if level is not None:
            if not 0 <= level <= 100:
                raise ValueError(f"volume level must be 0-100, got {level}")
            levels.append(level)
        return levels[-1]

    src = BuiltinSource(["volume"], volume=volume)
    assert asyncio.run(src.call("volume", {})).text == "The volume is 70."
    assert asyncio.run(src.call("volume", {"level": 40.0})).text == "The volume is now 40."
    bad = asyncio.run(src.call("volume", {"level": 400}))
    assert bad.is_error and "0-100" in bad.text and levels == [70, 40]


def test_timers_are_set_listed_cancelled_and_saved_atomically_0600(tmp_path: Path) -> None:
    now = [1000.0]

    async def run() -> tuple[list[str], list[Any]]:
        timers = Timers(TimerStore(tmp_path), clock=lambda: now[0])
        src = BuiltinSource(["timer"], timers=timers)
        out = [
            (await src.call("timer", {"action": "set", "name": "Tea timer", "seconds": 300})).text,
            (await src.call("timer", {"action": "set", "seconds": 90})).text,
            (await src.call("timer", {"action": "list"})).text,
            (await src.call("timer", {"action": "cancel", "name": "tea"})).text,
            (await src.call("timer", {"action": "cancel", "name": "egg"})).text,
        ]
        saved = json.loads((tmp_path / "timers.json").read_text())["timers"]
        await timers.stop()
        return out, saved

    out, saved = asyncio.run(run())
    assert out == ["The tea timer is set for 5 minutes.",
                   "Timer set for 1 minute 30 seconds.",
                   "Running timers: 90 second: 1 minute 30 seconds left; tea: 5 minutes left.",
                   "The tea timer is cancelled.",
                   "error: there is no timer called egg"]
    assert saved == [{"name": "90 second", "due": 1090.0}]
    assert os.stat(tmp_path / "timers.json").st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["timers.json"]  # no temp file left


def test_saved_timers_ring_after_a_restart_and_stale_or_corrupt_ones_do_not(tmp_path: Path) -> None:
    store = TimerStore(tmp_path)
    now = 5000.0
    store.path.write_text(json.dumps({"timers": [
        {"name": "pasta", "due": now + 0.05}, {"name": "late", "due": now - 10},
        {"name": "yesterday", "due": now - 86400}]}))
    rang: list[str] = []

    async def due(name: str) -> None:
        rang.append(name)

    async def run() -> None:
        timers = Timers(store, due, clock=lambda: now)
        await timers.start()
        await asyncio.sleep(0.2)  # the clock is frozen: `pasta` waits its 50 ms, `late` is overdue
        await timers.stop()

    asyncio.run(run())
    assert sorted(rang) == ["late", "pasta"]
    store.path.write_text("{not json")
    assert store.load() == [] and any(p.name.startswith("timers.json.corrupt-") for p in tmp_path.iterdir())


def test_the_ringer_repeats_earcon_and_line_until_stopped_or_the_limit() -> None:
    class Line:
        def __init__(self) -> None:
            self.done = asyncio.Event()
            self.done.set()
            self.interrupted = False

    async def run(stop_after: float | None) -> tuple[int, list[str]]:
        earcons: list[int] = []
        lines: list[str] = []

        async def say(text: str) -> Line:
            lines.append(text)
            return Line()

        ringer = Ringer(lambda: earcons.append(1), say, limit_s=0.5, gap_s=0.05)
        await ringer.ring("tea")
        await ringer.ring("egg")  # joins the ringing
        if stop_after is not None:
            await asyncio.sleep(stop_after)
            assert ringer.stop()
        await asyncio.sleep(0.7)
        await ringer.close()
        return len(earcons), lines

    stopped, lines = asyncio.run(run(0.12))
    assert 1 <= stopped <= 3 and lines[0] == "The tea and the egg timers are done."
    unstopped, _ = asyncio.run(run(None))
    assert unstopped > stopped and unstopped <= 0.5 / 0.05 + 1  # it gives up at the limit


def test_duration_text() -> None:
    assert [duration_text(s) for s in (1, 59, 60, 3725)] == [
        "1 second", "59 seconds", "1 minute", "1 hour 2 minutes 5 seconds"]


@pytest.mark.parametrize("doc, key", [
    ("tools: {builtin: [time, clock]}", "tools.builtin"),
    ("tools: {builtin: [time, time]}", "tools.builtin"),
    ("tools: {timeout_s: 0}", "tools.timeout_s"),
    ("tools: {mcp: [{name: ha}]}", "tools.mcp[0]"),
    ("tools: {mcp: [{name: ha, url: 'ftp://x'}]}", "tools.mcp[0].url"),
    ("tools: {mcp: [{name: 'a b', command: [x]}]}", "tools.mcp[0].name"),
    ("tools: {mcp: [{name: a, command: [x]}, {name: a, command: [y]}]}", "tools.mcp[1].name"),
    ("tools: {mcp: [{name: a, command: x}]}", "tools.mcp[0].command"),
    ("tools: {mcp: [{name: a, command: [x], url: 'http://h'}]}", "tools.mcp[0]"),
    ("tools: {mcp: [{name: a, comand: [x]}]}", "tools.mcp[0].comand"),
])
def test_bad_tools_config_names_the_key(doc: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_settings(doc)


def test_tools_config_accepts_both_mcp_shapes() -> None:
    s = parse_settings("tools:\n  builtin: []\n  timeout_s: 3\n  mcp:\n"
                       "    - {name: light, command: [python, light.py], env: {LEVEL: '1'}}\n"
                       "    - {name: ha, url: 'http://ha.local:8123/api/mcp', token_file: /etc/ha.token,"
                       " allow: [HassTurnOn]}\n")
    light, ha = s.tools.mcp
    assert (light.command, light.env, light.url) == (("python", "light.py"), {"LEVEL": "1"}, None)
    assert (ha.url, ha.token_file, ha.allow) == ("http://ha.local:8123/api/mcp", "/etc/ha.token", ("HassTurnOn",))
    assert s.tools.builtin == () and s.tools.timeout_s == 3.0
