"""The live event stream (SPEC §12): one JSON object per line, fanned out to subscribers.

Kiosk screens show captions from it and LED daemons follow `state`, so it carries exactly the
SPEC §12 events, each with `event` and `t` (Unix time):

    state(state) · wake(word, score) · transcript(role, text, final)
    turn(latency_ms, interrupted, heard_ms) · tool(name, arguments, ok, ms)
    volume(level) · error(message)

The daemon must never wait for an integrator's program: `publish()` is synchronous, encodes the
line once and appends it to each subscriber's bounded backlog (O(subscribers), no awaiting, no
I/O). A subscriber whose backlog is full is dropped on the spot: its backlog is replaced by one
last `error` line saying why, and it ends after that line. Memory per subscriber is therefore at
most `backlog` lines plus whatever its transport already holds.

The bus lives on the event loop's thread (the modes, the Status adapter and the control socket
run there). A publish from another thread (a wake-word or audio thread) is handed to the loop
with `call_soon_threadsafe`, so backlogs are only ever touched by one thread. `Subscription` is
an async iterator of encoded lines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from agent.secrets import redact

log = logging.getLogger("voice-agent.events")

BACKLOG = 256  # lines a subscriber may fall behind before it is dropped
EVENTS: dict[str, tuple[str, ...]] = {
    "state": ("state",),
    "wake": ("word", "score"),
    "transcript": ("role", "text", "final"),
    "turn": ("latency_ms", "interrupted", "heard_ms"),
    "tool": ("name", "arguments", "ok", "ms"),
    "volume": ("level",),
    "error": ("message",),
}
# Replayed to each new subscriber first, so an LED driver knows the state (and a volume slider
# the level) without waiting for the next change.
STICKY = ("state", "volume")


def encode(event: str, t: float, fields: dict[str, Any]) -> bytes:
    """One event as a JSON line (UTF-8, newline-terminated, API keys redacted)."""
    doc = {"event": event, "t": round(t, 3), **fields}
    text = json.dumps(doc, ensure_ascii=False, default=str, separators=(",", ":"))
    return (redact(text) + "\n").encode("utf-8")


class Subscription:
    """One subscriber's bounded backlog of encoded lines; `async for line in sub` reads it.

    Iteration ends when the subscriber is closed (by itself, by the bus on shutdown, or after the
    last line of a drop).
    """

    def __init__(self, bus: EventBus, backlog: int) -> None:
        self._bus = bus
        self._lines: deque[bytes] = deque()
        self._limit = backlog
        self._ready = asyncio.Event()
        self.closed = False
        self.dropped = False

    def __len__(self) -> int:
        return len(self._lines)

    def push(self, line: bytes) -> None:
        """Bus side: append a line, or drop this subscriber if it is `backlog` lines behind."""
        if self.closed:
            return
        if len(self._lines) >= self._limit:
            self._drop(f"subscriber too slow: more than {self._limit} events behind; dropped")
            return
        self._lines.append(line)
        self._ready.set()

    def _drop(self, message: str) -> None:
        self.dropped = True
        self._lines.clear()
        self._lines.append(encode("error", time.time(), {"message": message}))
        self.close()
        log.warning("event subscriber dropped: %s", message)

    def close(self) -> None:
        """No more lines; what is queued is still delivered, then iteration ends."""
        if self.closed:
            return
        self.closed = True
        self._bus._remove(self)
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        while not self._lines:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._lines.popleft()


class EventBus:
    """Fan-out of SPEC §12 events to subscribers with bounded backlogs (see module docstring)."""

    def __init__(self, backlog: int = BACKLOG, clock: Callable[[], float] = time.time) -> None:
        self.backlog = backlog
        self._clock = clock
        self._subs: list[Subscription] = []
        self._sticky: dict[str, bytes] = {}
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self.published = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, event: str, **fields: Any) -> None:
        """Send one event to every subscriber now. Never blocks, never raises for a subscriber.

        Field names are checked against SPEC §12: a typo would silently break integrators.
        """
        names = EVENTS.get(event)
        if names is None:
            raise ValueError(f"unknown event {event!r}; one of: {', '.join(EVENTS)}")
        if set(fields) != set(names):
            raise ValueError(f"event {event!r} takes fields {', '.join(names)}; got {', '.join(fields)}")
        if self._loop is not None and threading.get_ident() != self._thread:
            try:
                self._loop.call_soon_threadsafe(lambda: self.publish(event, **fields))
            except RuntimeError:  # the loop is closed: the daemon is stopping
                pass
            return
        self.published += 1
        for listener in self._listeners:
            try:
                listener(event, fields)
            except Exception:  # an in-process listener (metrics) must not break the publisher
                log.exception("event listener failed on %s", event)
        if not self._subs and event not in STICKY:
            return
        line = encode(event, self._clock(), fields)
        if event in STICKY:
            self._sticky[event] = line
        for sub in list(self._subs):  # a push may drop (and remove) a subscriber
            sub.push(line)

    def bind_loop(self) -> None:
        """Remember the running loop as the bus's home (called by `subscribe`; call it at start
        if events may be published from other threads before anyone subscribes)."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # not in a loop (a synchronous test): nothing to bind
            return
        self._thread = threading.get_ident()

    def listen(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """Call `listener(event, fields)` synchronously on every event (in-process consumers
        such as metrics: no encoding, no backlog). It must be quick and must not raise."""
        self._listeners.append(listener)

    def subscribe(self, replay: bool = True) -> Subscription:
        """A new subscriber; with `replay` its first lines are the latest `state` and `volume`."""
        self.bind_loop()
        sub = Subscription(self, self.backlog)
        if replay:
            for event in STICKY:
                line = self._sticky.get(event)
                if line is not None:
                    sub.push(line)
        self._subs.append(sub)
        return sub

    def close(self) -> None:
        """Daemon shutdown: every subscriber gets what is queued, then its stream ends."""
        for sub in list(self._subs):
            sub.close()

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
