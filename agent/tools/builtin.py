"""The built-in tools (`tools.builtin`): `time`, `timer`, `volume` as one `ToolSource`.

Results are short sentences, because the model reads them back in its own words: "It is 14:05
on Thursday, 3 December 2026 (CET, UTC+01:00)." The volume tool acts through the same
`Integration.volume` as the control socket's `volume` command, so the level, its file and the
`volume` event stay one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from agent.tools.spec import ToolResult, ToolSpec
from agent.tools.timers import Timers

SPECS: dict[str, ToolSpec] = {
    "time": ToolSpec(
        "time",
        "The current local date, time and time zone of the device. Use it whenever the user "
        "asks what time or what day it is.",
        {"type": "object", "properties": {}},
    ),
    "timer": ToolSpec(
        "timer",
        "Set, list or cancel named countdown timers on the device. When a timer is done the "
        "device rings and says which timer is done.",
        {
            "type": "object",
            "properties": {
                "action": {"type": "string", "enum": ["set", "list", "cancel"],
                           "description": "set a timer, list the running ones, or cancel one"},
                "name": {"type": "string",
                         "description": "a short name, e.g. tea or pasta (set, cancel)"},
                "seconds": {"type": "number", "description": "duration in seconds (set)"},
            },
            "required": ["action"],
        },
    ),
    "volume": ToolSpec(
        "volume",
        "Get or set the speaker volume of the device, 0 (mute) to 100 (loudest).",
        {
            "type": "object",
            "properties": {"level": {"type": "integer", "minimum": 0, "maximum": 100,
                                     "description": "the new level; leave out to read it"}},
        },
    ),
}


def duration_text(seconds: float) -> str:
    """`90` → "1 minute 30 seconds" (for results and default timer names)."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    parts = [(h, "hour"), (m, "minute"), (sec, "second")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words) or "0 seconds"


def _default_name(seconds: float) -> str:
    """A nameless timer is called by its duration: "the 5 minute timer is done"."""
    s = int(round(seconds))
    for unit, size in (("hour", 3600), ("minute", 60)):
        if s >= size and s % size == 0:
            return f"{s // size} {unit}"
    return f"{s} second"


class BuiltinSource:
    """`ToolSource` named "builtin" for the configured subset of time, timer, volume."""

    name = "builtin"

    def __init__(
        self,
        enabled: tuple[str, ...] | list[str],
        *,
        timers: Timers | None = None,
        volume: Callable[[int | None], int] | None = None,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now().astimezone(),
    ) -> None:
        self.enabled = [n for n in enabled if n in SPECS]
        self.timers = timers
        self.volume = volume
        self.now = now

    async def start(self) -> None:
        if self.timers is not None and "timer" in self.enabled:
            await self.timers.start()

    async def stop(self) -> None:
        if self.timers is not None:
            await self.timers.stop()

    def specs(self) -> list[ToolSpec]:
        return [SPECS[n] for n in self.enabled]

    def status(self) -> str:
        return "up"

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        if name not in self.enabled:
            return ToolResult(f"error: there is no built-in tool named {name!r}", True)
        try:
            if name == "time":
                return self._time()
            if name == "timer":
                return self._timer(arguments)
            return self._volume(arguments)
        except ValueError as e:
            return ToolResult(f"error: {e}", True)

    def _time(self) -> ToolResult:
        t = self.now()
        zone = t.tzname() or "local time"
        offset = t.strftime("%z")
        utc = f"UTC{offset[:3]}:{offset[3:]}" if offset else ""
        return ToolResult(f"It is {t:%H:%M} on {t:%A}, {t.day} {t:%B %Y} ({zone}"
                          f"{', ' + utc if utc and utc != 'UTC+00:00' else ''}).")

    def _timer(self, args: dict[str, Any]) -> ToolResult:
        if self.timers is None:
            raise ValueError("timers are not available")
        action = args.get("action", "set" if "seconds" in args else "list")
        if action == "list":
            running = self.timers.list()
            if not running:
                return ToolResult("No timers are running.")
            return ToolResult("Running timers: " + "; ".join(
                f"{n}: {duration_text(left)} left" for n, left in running) + ".")
        name = _name(args.get("name"))
        if action == "cancel":
            if not name:
                raise ValueError("name the timer to cancel")
            if self.timers.cancel(name):
                return ToolResult(f"The {name} timer is cancelled.")
            return ToolResult(f"error: there is no timer called {name}", True)
        if action != "set":
            raise ValueError(f"action must be set, list or cancel, got {action!r}")
        seconds = args.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError("set needs seconds (a number)")
        if not name:
            self.timers.set(_default_name(seconds), float(seconds))
            return ToolResult(f"Timer set for {duration_text(seconds)}.")
        self.timers.set(name, float(seconds))
        return ToolResult(f"The {name} timer is set for {duration_text(seconds)}.")

    def _volume(self, args: dict[str, Any]) -> ToolResult:
        if self.volume is None:
            raise ValueError("the volume cannot be changed here")
        level = args.get("level")
        if level is None:
            return ToolResult(f"The volume is {self.volume(None)}.")
        if isinstance(level, float) and level.is_integer():
            level = int(level)
        return ToolResult(f"The volume is now {self.volume(level)}.")


def _name(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("name must be text")
    name = re.sub(r"\s+", " ", value).strip().lower()  # "Tea" and "tea" are one timer
    name = re.sub(r"(?i)\s*timer$", "", name)  # "tea timer" → "tea"
    if len(name) > 40:
        raise ValueError("name is too long (40 characters at most)")
    return name
