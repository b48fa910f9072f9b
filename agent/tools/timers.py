"""Named timers that survive a restart, and the ringing of a due one (SPEC §11 `timer`).

Timers are kept as wall-clock due times in `state_dir/timers.json`, written atomically with
mode 0600 on every change, so a daemon restarted (or a device rebooted) before a timer is due
still rings it on time; one that fell due while the daemon was down rings at start-up unless it
is older than `STALE_S` (nobody wants a yesterday's egg timer). A file that cannot be read is set
aside, never fatal, as with the volume and the voice cache.

`Ringer` plays the timer earcon and a spoken line ("The tea timer is done.") over and over until
`stop()` (the `interrupt` command, the wake word once wired, a barge-in over the line) or
`RING_LIMIT_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.statefile import atomic_write, set_aside

log = logging.getLogger("voice-agent.timers")

FILE_NAME = "timers.json"
MAX_TIMERS = 20
MAX_SECONDS = 24 * 3600.0
STALE_S = 3600.0  # a timer that fell due longer ago than this while we were down is dropped
RING_LIMIT_S = 60.0
RING_GAP_S = 1.5


@dataclass(frozen=True)
class Timer:
    name: str
    due: float  # Unix time


class TimerStore:
    """`state_dir/timers.json`: [{"name", "due"}], atomic and 0600."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / FILE_NAME

    def load(self) -> list[Timer]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as e:
            log.warning("timers: cannot read %s (%s); starting with none", self.path, e.strerror or e)
            return []
        try:
            doc = json.loads(raw)
            timers = [Timer(str(t["name"]), float(t["due"])) for t in doc["timers"]]
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            aside = set_aside(self.path)
            log.warning("timers: %s is unreadable (%s); moved to %s", self.path, e, aside.name)
            return []
        return timers[:MAX_TIMERS]

    def save(self, timers: list[Timer]) -> None:
        doc = {"timers": [{"name": t.name, "due": t.due} for t in timers]}
        atomic_write(self.path, json.dumps(doc).encode())


class Timers:
    """The running timers: set, list, cancel; `on_due(name)` when one is due."""

    def __init__(
        self,
        store: TimerStore | None,
        on_due: Callable[[str], Awaitable[Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.on_due = on_due
        self.clock = clock
        self._timers: dict[str, Timer] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Load the saved timers and schedule them (overdue ones ring now, stale ones go)."""
        now = self.clock()
        for t in self.store.load() if self.store is not None else []:
            if t.due < now - STALE_S:
                log.info("timers: %s fell due %.0f s ago while stopped; dropped", t.name, now - t.due)
                continue
            self._add(t)
        self._save()
        if self._timers:
            log.info("timers: %d restored (%s)", len(self._timers), ", ".join(self._timers))

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()

    def set(self, name: str, seconds: float) -> Timer:
        if not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be between 1 and {MAX_SECONDS:.0f}")
        if name not in self._timers and len(self._timers) >= MAX_TIMERS:
            raise ValueError(f"there are already {MAX_TIMERS} timers; cancel one first")
        self.cancel(name, save=False)
        timer = Timer(name, self.clock() + seconds)
        self._add(timer)
        self._save()
        return timer

    def list(self) -> list[tuple[str, float]]:
        """(name, seconds left) in due order."""
        now = self.clock()
        return [(t.name, max(0.0, t.due - now)) for t in sorted(self._timers.values(), key=lambda t: t.due)]

    def cancel(self, name: str, *, save: bool = True) -> bool:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
        found = self._timers.pop(name, None) is not None
        if found and save:
            self._save()
        return found

    def _add(self, timer: Timer) -> None:
        self._timers[timer.name] = timer
        self._tasks[timer.name] = asyncio.get_running_loop().create_task(
            self._wait(timer), name=f"timer-{timer.name}")

    async def _wait(self, timer: Timer) -> None:
        await asyncio.sleep(max(0.0, timer.due - self.clock()))
        self._tasks.pop(timer.name, None)
        self._timers.pop(timer.name, None)
        self._save()
        log.info("timer %s is done", timer.name)
        if self.on_due is not None:
            await self.on_due(timer.name)

    def _save(self) -> None:
        if self.store is None:
            return
        try:
            self.store.save(list(self._timers.values()))
        except OSError as e:
            log.warning("timers: cannot save %s: %s", self.store.path, e.strerror or e)


class Ringer:
    """Rings due timers: earcon + spoken line, repeated until `stop()` or `limit_s`.

    `earcon()` queues the timer earcon in the player; `say(text)` speaks a line and returns
    something with `done` (an `asyncio.Event`) and `interrupted` (an `Announcement`): a line the
    user talked over stops the ringing too.
    """

    def __init__(
        self,
        earcon: Callable[[], None],
        say: Callable[[str], Awaitable[Any]],
        limit_s: float = RING_LIMIT_S,
        gap_s: float = RING_GAP_S,
    ) -> None:
        self.earcon = earcon
        self.say = say
        self.limit_s = limit_s
        self.gap_s = gap_s
        self.ringing: list[str] = []
        self.lines_spoken = 0  # over the daemon's life (tests and logs read it)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def ring(self, name: str) -> None:
        """Start ringing for `name` (joins a ringing already going on)."""
        if name not in self.ringing:
            self.ringing.append(name)
        if self._task is None or self._task.done():
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="timer-ringer")

    def stop(self) -> bool:
        """Silence the ringing; True if something was ringing."""
        was = bool(self.ringing)
        self._stop.set()
        self.ringing.clear()
        return was

    async def close(self) -> None:
        self.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        warned = False
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                names = " and ".join(f"the {n}" for n in self.ringing) or "the"
                line = f"{names[0].upper()}{names[1:]} timer{'s are' if len(self.ringing) > 1 else ' is'} done."
                self.earcon()
                try:
                    ann = await self.say(line)
                    await asyncio.wait_for(_either(ann.done, self._stop), max(0.1, deadline - time.monotonic()))
                    if getattr(ann, "interrupted", False):
                        log.info("timer ringing stopped: the line was interrupted")
                        break
                    if ann.done.is_set():
                        self.lines_spoken += 1
                except asyncio.TimeoutError:
                    break
                except Exception as e:  # no voice (yet): the earcon alone still rings
                    if not warned:
                        log.warning("timer: cannot speak the line: %s", e)
                        warned = True
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.gap_s)
        finally:
            self.ringing.clear()


async def _either(a: asyncio.Event, b: asyncio.Event) -> None:
    ta, tb = asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())
    try:
        await asyncio.wait({ta, tb}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ta.cancel()
        tb.cancel()
