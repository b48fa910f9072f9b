"""CosyVoice synthesis over a reused WebSocket: connect ahead, one task at a time, recover.

`SocketPool` (with `begin()`: `agent.tts.manager.SynthesisManager`) keeps one warm socket to
`/api-ws/v1/inference` so a turn never waits for a TLS handshake (200–1000 ms in mainland
China, seconds cross-border). All protocol rules live in `agent.tts.protocol`; this module only
does I/O, timing and recovery:

- **Connect ahead**: `start()` opens a socket in the background; `begin()` uses it.
- **Reuse**: one task per socket at a time, a fresh task_id per task. The server closes a socket
  60 s after its last task, so an idle socket is replaced after `idle_refresh_s` (50 s); if it was
  closed anyway, the next `begin()` reconnects transparently.
- **Recovery**: after task-failed (the server closes the socket) or any unexpected close, the
  socket is reopened in the background with `agent.backoff.Backoff` (first retry ≤ 1 s, cap 30 s;
  a rejected key backs off from 30 s to 5 min). A `begin()` that finds no socket asks for an
  immediate attempt and gets that attempt's error, never a hang.
- **Rate limit**: never more than 3 run-task per second (sliding window, the service's limit).
- **23-second rule**: the server fails a task whose text pauses for 23 s. If the producer sends no
  text for `text_gap_s` (15 s), the task is finished early (its text is spoken) and the next
  `send_text()` transparently starts a new task on the same stream; a task that has no text yet
  cannot be finished (the server rejects empty text), so its socket is closed and replaced.
- **Cancel** (barge-in): finish-task with the cancel directive; audio stops at once client-side.
  If task-finished does not come within `cancel_grace_s` the socket is closed and replaced so
  the next turn is not delayed. Where the directive is unsupported (`cancel_directive=False`:
  CosyVoice in Singapore, `capabilities.cancel_supported`, audit R4) the task is abandoned
  instead: a plain finish-task, the socket is free at once, and the next task's run-task
  pre-empts the old one on the same socket (REF §4.4) — no new handshake per barge-in. The old
  task's late audio is dropped (stray while the socket is idle; discarded before task-started).
- **Start timeout**: no task-started within `start_timeout_s` (a silently dead socket) → the
  socket is replaced and the task restarted once with the text queued so far.
- **Stall timeout**: after finish-task the server owes us audio or task-finished; nothing at all
  for `stall_timeout_s` means a half-open socket: it is replaced and the stream fails.

Errors surface as `SynthesisError(code, message)` from `send_text()` and `audio()`; the manager
has already begun recovering the socket for the next task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from agent.account import DashScopeAccount
from agent.backoff import Backoff
from agent.secrets import redact
from agent.tts.errors import SynthesisAuthError, SynthesisError
from agent.tts.protocol import SynthesisTask

log = logging.getLogger("agent.tts")


@dataclass(frozen=True)
class TtsTimings:
    """The synthesis socket's timings (seconds, see the module docstring); tests pass short ones,
    users cannot set them."""

    idle_refresh_s: float = 50.0
    text_gap_s: float = 15.0
    start_timeout_s: float = 5.0
    connect_timeout_s: float = 10.0
    cancel_grace_s: float = 1.0
    stall_timeout_s: float = 10.0
    backoff_s: tuple[float, float] = (1.0, 30.0)  # first retry, cap
    auth_backoff_s: tuple[float, float] = (30.0, 300.0)  # a refused key: minutes


DEFAULT_TTS_TIMINGS = TtsTimings()


class RateLimiter:
    """At most `limit` acquisitions in any window of `per_s` seconds (sliding window)."""

    def __init__(
        self, limit: int = 3, per_s: float = 1.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.per_s = per_s
        self.clock = clock
        self.history: deque[float] = deque(maxlen=limit)

    def delay(self) -> float:
        """Seconds to wait before the next acquisition is allowed."""
        if len(self.history) < self.limit:
            return 0.0
        return max(0.0, self.history[0] + self.per_s - self.clock())

    async def acquire(self) -> None:
        while (d := self.delay()) > 0:
            await asyncio.sleep(d)
        self.history.append(self.clock())


class FrameSink(Protocol):
    """Who receives a socket's frames while it runs a task on it (a `SynthesisStream`)."""

    async def on_frame(self, conn: Connection, frame: str | bytes) -> None:
        """A frame arrived on `conn` (in order; the reader waits for this)."""

    def on_closed(self, conn: Connection) -> None:
        """`conn` closed (for `conn.close_reason`) while this sink owned it."""


class Leaseholder(Protocol):
    """Who holds the synthesis lane (a `SynthesisStream`): `close()` cancels it."""

    ended: bool

    async def cancel(self) -> None: ...


class Connection:
    """One WebSocket, its reader task and the sink its frames go to right now.

    The connection knows nothing about streams: it delivers frames to `sink` (`FrameSink`) and
    tells the pool when it closed; the stream claims and gives back sockets through the pool.
    """

    def __init__(self, ws: ClientConnection, pool: SocketPool) -> None:
        self.ws = ws
        self.pool = pool
        self.sink: FrameSink | None = None
        self.idle_since = pool.clock()
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.planned_close = False  # we closed it on purpose: reconnect without backoff
        self.failed = False  # the server failed a task on it
        self.stray_frames = 0
        self._send_lock = asyncio.Lock()
        self.reader = asyncio.create_task(self._read(), name="cosyvoice-reader")

    @property
    def usable(self) -> bool:
        return not self.closed.is_set() and not self.planned_close and not self.failed

    async def flush(self, task: SynthesisTask) -> None:
        """Send what the protocol produced, in order (drained under the lock)."""
        async with self._send_lock:
            for message in task.data_to_send():
                await self.ws.send(message)

    def close(self, reason: str, planned: bool = True) -> None:
        """Close in the background (a dead peer must not block the caller)."""
        self.planned_close = self.planned_close or planned
        self.close_reason = self.close_reason or reason
        if not self.closed.is_set():
            task = asyncio.create_task(self.ws.close(), name="cosyvoice-close")
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                sink = self.sink
                if sink is None:
                    self.stray_frames += 1
                    log.debug("cosyvoice: frame with no task on the socket, ignored")
                    continue
                await sink.on_frame(self, frame)
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else "no close frame"
            self.close_reason = self.close_reason or f"closed ({code})"
        except Exception as e:  # never let a reader die silently with the socket half-used
            log.warning("cosyvoice: reader stopped: %s", redact(repr(e)))
            self.close_reason = self.close_reason or f"reader error: {type(e).__name__}"
            self.close("reader error", planned=False)
        finally:
            self.close_reason = self.close_reason or "closed by the server"
            self.closed.set()
            sink = self.sink
            if sink is not None:
                sink.on_closed(self)
            self.pool.poke()


class SocketPool:
    """Owns the synthesis socket (connect ahead, refresh, recover) and the one synthesis lane.

    Public API for the streams: `lease()` / `release()` the lane (one synthesis at a time),
    `socket()` for an idle socket, `claim()` / `give_back()` a socket for a task, `poke()` the
    maintainer. `agent.tts.manager.SynthesisManager` adds `begin()`.
    """

    def __init__(
        self,
        account: DashScopeAccount,
        *,
        timings: TtsTimings = DEFAULT_TTS_TIMINGS,
        cancel_directive: bool = True,
        run_tasks_per_s: int = 3,
        proxy: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = account.urls.inference_ws
        self.timings = timings
        self.cancel_directive = cancel_directive
        self.abandoned = 0  # barge-ins answered by pre-emption instead of the cancel directive
        self.clock = clock
        self.limiter = RateLimiter(run_tasks_per_s, 1.0, clock=clock)
        self.backoff = Backoff(*timings.backoff_s, clock=clock)
        self.auth_backoff = Backoff(*timings.auth_backoff_s, clock=clock)
        self.connects = 0
        self.reconnects = 0  # unplanned: failures and server closes
        self.tasks_started = 0
        self.last_error: str | None = None
        self._headers = account.ws_headers()
        self._proxy = proxy
        self._conn: Connection | None = None
        self._attempt: asyncio.Future[Connection] | None = None
        self._wake = asyncio.Event()
        self._poke = asyncio.Event()
        self._lane = asyncio.Lock()
        self.holder: Leaseholder | None = None  # who holds the lane (set by whoever leased it)
        self._runner: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.usable

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the socket in the background (idempotent); returns at once."""
        if self._runner is None and not self._closing:
            self._attempt = asyncio.get_running_loop().create_future()
            self._runner = asyncio.create_task(self._maintain(), name="cosyvoice-maintain")

    async def close(self) -> None:
        """Finish politely: cancel a running stream, close the socket, stop reconnecting."""
        self._closing = True
        if self.holder is not None:
            await self.holder.cancel()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(), 2.0)
            conn.reader.cancel()
            with contextlib.suppress(BaseException):
                await conn.reader
        if self._attempt is not None and not self._attempt.done():
            self._attempt.set_exception(SynthesisError("Closed", "synthesis manager closed"))
            self._attempt.exception()

    async def _maintain(self) -> None:
        delay = 0.0
        while not self._closing:
            conn = self._conn
            if conn is None or conn.closed.is_set() or (conn.sink is None and not conn.usable):
                if conn is not None:
                    delay = self._after_close(conn)
                    self._conn = None
                if delay > 0:  # a begin() waiting for a socket sets _wake: try at once
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                delay = await self._connect_once()
                continue
            timeout: float | None = None
            if conn.sink is None:
                timeout = conn.idle_since + self.timings.idle_refresh_s - self.clock()
                if timeout <= 0:
                    log.debug("cosyvoice: refreshing idle socket before the server's 60 s close")
                    conn.close("idle refresh")
                    await conn.closed.wait()
                    continue
            self._poke.clear()
            waiters = [asyncio.ensure_future(conn.closed.wait()),
                       asyncio.ensure_future(self._poke.wait())]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()

    def _after_close(self, conn: Connection) -> float:
        """Delay before the next connect after `conn` closed."""
        if conn.planned_close and not conn.failed:
            return 0.0
        self.reconnects += 1
        self.last_error = f"synthesis socket {conn.close_reason}"
        delay = self.backoff.next_delay()
        log.info("cosyvoice: socket %s; reconnecting in %.1f s", conn.close_reason, delay)
        return delay

    async def _connect_once(self) -> float:
        """One connect attempt; resolves waiters; returns the delay before the next attempt."""
        self._wake.clear()
        fut = self._attempt  # begin() calls waiting now get this attempt's outcome
        try:
            conn = await self._open()
        except SynthesisError as e:
            self._attempt = asyncio.get_running_loop().create_future()
            self.last_error = str(e)
            auth = isinstance(e, SynthesisAuthError)
            delay = (self.auth_backoff if auth else self.backoff).next_delay()
            log.warning("cosyvoice: %s; retrying in %.1f s", e, delay)
            if fut is not None and not fut.done():
                fut.set_exception(e)
                fut.exception()  # waiters get it; nobody waiting is fine too
            return delay
        self._conn = conn
        self._attempt = asyncio.get_running_loop().create_future()
        self.connects += 1
        self.last_error = None  # a working socket: earlier failures are history
        self.backoff.connected()
        self.auth_backoff.reset()
        if fut is not None and not fut.done():
            fut.set_result(conn)
        return 0.0

    async def _open(self) -> Connection:
        try:
            ws = await connect(
                self.url,
                additional_headers=self._headers,
                open_timeout=self.timings.connect_timeout_s,
                close_timeout=1.0,
                compression=None,  # PCM does not compress; save the CPU
                proxy=self._proxy,
                user_agent_header="voice-agent",
            )
        except InvalidStatus as e:
            status = e.response.status_code
            cls = SynthesisAuthError if status in (401, 403) else SynthesisError
            code = {401: "InvalidApiKey", 403: "AccessDenied", 429: "Throttling"}.get(
                status, f"HTTP{status}"
            )
            raise cls(code, f"WebSocket upgrade refused with HTTP {status}") from None
        except (OSError, TimeoutError, asyncio.TimeoutError, WebSocketException) as e:
            raise SynthesisError("ConnectFailed", f"{type(e).__name__}: {e}") from None
        except Exception as e:  # anything else must not end the reconnect loop
            log.warning("cosyvoice: unexpected connect error: %s", redact(repr(e)))
            raise SynthesisError("ConnectFailed", f"{type(e).__name__}: {e}") from None
        log.debug("cosyvoice: connected to %s", self.url)
        return Connection(ws, self)

    # -- the lane and the socket, for streams ---------------------------------------------------

    async def lease(self) -> None:
        """Wait for the synthesis lane (FIFO): one task on the socket at a time."""
        await self._lane.acquire()

    def release(self, holder: Leaseholder) -> None:
        """`holder` is done with the lane (call once per `lease()`)."""
        if self.holder is holder:
            self.holder = None
        self._lane.release()
        self.poke()

    def poke(self) -> None:
        """Wake the maintainer: a socket was claimed, given back or closed."""
        self._poke.set()

    def claim(self, conn: Connection, sink: FrameSink) -> None:
        """`conn` runs a task for `sink`: its frames go there from now on."""
        conn.sink = sink
        self.poke()

    def give_back(self, conn: Connection, sink: FrameSink) -> None:
        """`sink`'s task on `conn` is over: the socket is idle from now (if still `sink`'s)."""
        if conn.sink is sink:
            conn.sink = None
            conn.idle_since = self.clock()
            self.poke()

    async def socket(self) -> Connection:
        """A usable idle socket, connecting now if needed (raises that attempt's error)."""
        await self.start()
        deadline = self.clock() + self.timings.connect_timeout_s + 1.0
        while True:
            conn = self._conn
            if conn is not None and conn.usable and conn.sink is None:
                return conn
            if self._closing or self._attempt is None:
                raise SynthesisError("Closed", "synthesis manager closed")
            fut = self._attempt
            self._wake.set()
            self._poke.set()
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise SynthesisError("ConnectTimeout", "no synthesis socket in time")
            try:
                await asyncio.wait_for(asyncio.shield(fut), remaining)
            except asyncio.TimeoutError:
                raise SynthesisError("ConnectTimeout", "no synthesis socket in time") from None


__all__ = ["Connection", "FrameSink", "Leaseholder", "RateLimiter", "SocketPool"]
