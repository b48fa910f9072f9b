"""The server→client side of an emulated WebSocket: ordered frames, injected faults, closing.

Both WebSocket endpoints send through an `Outbox`. Producers enqueue frames without blocking (so
a barge-in can end a response with its `*.done` events in one synchronous step), and a single
writer task sends them in order. Faults from the connection's `ConnectionFaults` are applied
here, in one place: per-message latency and jitter (as network delay, which shifts frames without
throttling throughput), a slow-start stall, an abrupt drop after N frames, going silent
(half-open), one malformed text frame, one unexpected binary frame, one oversized frame, and a
fatal error frame followed by a close.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agent.emulator.faults import ConnectionFaults

FatalFrames = Callable[[], list[str]]


@dataclass
class _Close:
    code: int
    message: bytes


_NATURAL = object()  # in-stream marker: the endpoint's natural point for uncounted faults
_Item = object  # a str or bytes frame, a (JSON, binary) pair, a _Close, or _NATURAL


class Outbox:
    """Ordered, fault-injecting sender for one aiohttp WebSocket connection."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        faults: ConnectionFaults,
        fatal_frames: FatalFrames,
        fatal_close_code: int = 1011,
        on_sent: Callable[[str | bytes], None] | None = None,
    ) -> None:
        self._ws = ws
        self._request = request
        self._faults = faults
        self._fatal_frames = fatal_frames
        self._fatal_close_code = fatal_close_code
        self._on_sent = on_sent  # the emulator's observation hook, bound to this connection
        self._queue: asyncio.Queue[tuple[float, _Item]] = asyncio.Queue()
        self._rng = random.Random()
        self._loop = asyncio.get_running_loop()
        self._last_due = 0.0
        self._natural = False
        self._done: set[str] = set()
        self.sent = 0  # frames actually written (injected ones included)
        self.dead = False  # dropped, closed, or silent: nothing more will be written
        self._task = asyncio.create_task(self._run(), name="emulator-ws-outbox")

    @property
    def silent(self) -> bool:
        """Half-open: from now on nothing is sent, not even pongs; the socket stays open."""
        return self._faults.is_silent(self.sent)

    async def answer_ping(self, data: bytes) -> None:
        """Pong unless half-open (a dead peer does not answer pings; that is how it is found)."""
        if not self.silent and not self.dead:
            await self._ws.pong(data)

    # --- producer side (synchronous, never blocks) ---

    def send_json(self, obj: dict[str, Any]) -> None:
        self._put(json.dumps(obj, ensure_ascii=False))

    def send_text(self, text: str) -> None:
        self._put(text)

    def send_bytes(self, data: bytes) -> None:
        self._put(bytes(data))

    def send_pair(self, obj: dict[str, Any], data: bytes) -> None:
        """A JSON event and the binary frame that belongs to it: nothing is injected between."""
        self._put((json.dumps(obj, ensure_ascii=False), bytes(data)))

    def close(self, code: int = 1000, message: str = "") -> None:
        """Close the socket after everything queued so far has been written."""
        self._put(_Close(code, message.encode("utf-8")[:120]))

    def mark_natural_point(self) -> None:
        """From here on (in stream order) faults given no message count are due."""
        self._put(_NATURAL)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait (at most `timeout` s) until every queued frame was sent, dropped or discarded."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except asyncio.TimeoutError:
            pass

    async def stop(self) -> None:
        """Stop the writer (the connection is over)."""
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    def _put(self, item: _Item) -> None:
        delay = self._faults.latency_s
        if self._faults.jitter_s:
            delay += self._rng.uniform(0.0, self._faults.jitter_s)
        due = self._loop.time() + delay
        self._queue.put_nowait((due, item))

    # --- writer ---

    async def _run(self) -> None:
        await self._faults.start_stall()
        while True:
            due, item = await self._queue.get()
            try:
                if self._ws.closed and not isinstance(item, _Close):
                    self.dead = True  # the peer is gone: nothing more can be written
                if not self.dead:
                    # frames leave in order: one delayed frame holds back the ones behind it
                    self._last_due = max(self._last_due, due)
                    wait = self._last_due - self._loop.time()
                    if wait > 0 and item is not _NATURAL:
                        await asyncio.sleep(wait)
                    await self._write(item)
            except (ConnectionError, RuntimeError):
                self.dead = True  # the peer went away mid-write
            finally:
                self._queue.task_done()

    async def _write(self, item: _Item) -> None:
        if item is _NATURAL:
            self._natural = True
        elif isinstance(item, _Close):
            self.dead = True
            await self._ws.close(code=item.code, message=item.message)
            return
        else:
            for frame in item if isinstance(item, tuple) else (item,):
                if self._faults.should_drop(self.sent):
                    self._abort()
                    return
                if self.silent:
                    self.dead = True
                    return
                await self._send(frame)
        await self._inject()

    async def _send(self, frame: str | bytes) -> None:
        if isinstance(frame, str):
            await self._ws.send_str(frame)
        else:
            await self._ws.send_bytes(frame)
        self.sent += 1
        if self._on_sent is not None:
            self._on_sent(frame)

    async def _inject(self) -> None:
        """Frames due after what was just written (an error event also ends the connection)."""
        f = self._faults
        if f.malformed and self._due("malformed", f.malformed_after):
            await self._send('{"type": "response.audio.delta", "delta": "AAAA')  # cut-off JSON
        if f.binary_frame and self._due("binary", f.binary_frame_after):
            await self._send(b"\x00\xffnot-json\x00" * 3)
        if f.oversized and self._due("oversized", None):
            pad = "x" * max(0, f.oversized_bytes - 64)
            await self._send(json.dumps({"type": "emulator.oversized", "padding": pad}))
        if f.error_event and self._due("error", f.error_after):
            for frame in self._fatal_frames():
                await self._send(frame)
            self.dead = True
            await self._ws.close(code=self._fatal_close_code, message=b"injected error")

    def _due(self, name: str, after: int | None) -> bool:
        if name in self._done:
            return False
        ready = self._natural if after is None else self.sent >= after
        if ready:
            self._done.add(name)
        return ready

    def _abort(self) -> None:
        self.dead = True
        transport = self._request.transport
        if transport is not None:
            transport.abort()
