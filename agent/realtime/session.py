"""The life of every realtime session (omni's conversation, pipeline mode's speech recognition).

Both are long-lived realtime WebSocket sessions that fail the same ways, so they share one
discipline (SPEC §5.3), written once here:

- `SessionRunner` serves one session: open → configure (`session.update`) → the mode attaches
  its uplink → the socket's only reader races the rotation policy → a rotation ends politely
  (`session.finish`), anything else closes. A session the *server* ended, even cleanly, is a
  loss that goes through the backoff, never an instant reconnect (a server that closes every
  session at once would otherwise be hammered in a tight loop). `stop()` ends it politely,
  bounded, for SIGTERM.
- `SessionLoop` runs one session after another: a refused key waits minutes and says so; any
  other loss waits a jittered backoff that starts under a second and resets once a session has
  stayed up `SessionTimings.stable_after_s`; a rotation reconnects at once. The status always
  says why the session is down (and a new session clears that error once it has lived
  `SESSION_PROVEN_S`), and the loop never spins.

What differs between the modes is a small `SessionStrategy`: how to open and configure, what to
do with each event, when a rotation is due, and the names in status and logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.backoff import Backoff
from agent.realtime import protocol as p
from agent.realtime.connection import AuthFailed, ConnectFailed
from agent.secrets import redact
from agent.status import AgentState, Status


@dataclass(frozen=True)
class SessionTimings:
    """The session loop's retry policy (seconds); tests pass short ones, users cannot set them."""

    backoff_first_s: float = 0.5  # the first retry after a blip: barely noticed
    backoff_cap_s: float = 30.0
    stable_after_s: float = 30.0  # a session that lived this long resets the backoff
    auth_backoff_s: tuple[float, float] = (60.0, 600.0)  # a refused key: minutes, not seconds


DEFAULT_SESSION_TIMINGS = SessionTimings()


class SessionConnection(Protocol):
    """What the runner needs of a connection (`RealtimeConnection`, or a fake in tests)."""

    @property
    def close_code(self) -> int | None: ...

    @property
    def close_reason(self) -> str | None: ...

    async def send(self, event: dict[str, Any]) -> None: ...

    def events(self) -> AsyncIterator[p.ServerEvent]: ...

    async def finish(self) -> None: ...

    async def close(self) -> None: ...


class SessionStrategy(Protocol):
    """The mode-specific part of a session; every hook but `open` and `on_event` is synchronous."""

    @property
    def what(self) -> str:
        """Names the session in the status: "realtime session"."""

    @property
    def name(self) -> str:
        """Names it in logs: "realtime" → "rotating the realtime session …"."""

    @property
    def auth_prefix(self) -> str:
        """Goes before "authentication failed" in the status."""

    @property
    def rotation_poll_s(self) -> float:
        """How often `rotation_due` is asked."""

    @property
    def close_code_in_error(self) -> bool:
        """A session the server closed reports the close code in the status (omni, not ASR)."""

    async def open(self) -> SessionConnection: ...

    def configure_event(self) -> dict[str, Any]: ...

    # Optional: `seed_events() -> list[dict]`, sent right after `configure_event` (omni mode's
    # remembered turns); a strategy without it sends nothing more.

    def opened(self, conn: SessionConnection) -> None:
        """The session is configured: update the status, log, attach the uplink."""

    async def on_event(self, event: p.ServerEvent) -> None:
        """One server event (not `session.finished`); raising ends the session as a loss."""

    def rotation_due(self, now: float) -> bool: ...

    def closed(self) -> None:
        """The session is over (any reason): detach the uplink before the socket closes."""

    def disconnected(self) -> None:
        """After every session (the status already says `connected: false`), before any wait."""


class SessionLoop:
    """Runs one session after another for a mode; `what` names the session in status and logs."""

    def __init__(self, what: str, status: Status, log: logging.Logger, *, auth_prefix: str = "",
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 timings: SessionTimings = DEFAULT_SESSION_TIMINGS) -> None:
        self.what = what
        self.sleep = sleep
        self.status = status
        self.log = log
        self.auth_prefix = auth_prefix
        self.backoff = Backoff(first=timings.backoff_first_s, cap=timings.backoff_cap_s,
                               stable_s=timings.stable_after_s)
        self.auth_backoff = Backoff(*timings.auth_backoff_s)

    def connected(self) -> None:
        """A session is up: if it stays up `stable_after_s`, past failures are forgotten."""
        self.backoff.connected()

    async def run(
        self,
        serve: Callable[[], Awaitable[None]],
        disconnected: Callable[[], None],
        stopping: Callable[[], bool],
        background: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Serve sessions until `stopping()`; `serve` returns on rotation and raises on a loss.

        `background` (the microphone uplink) runs for the loop's whole life, across reconnects,
        so that it can keep a pre-roll while no session is attached.
        """
        task = None if background is None else asyncio.create_task(background(), name=f"{self.what} uplink")
        try:
            await self._sessions(serve, disconnected, stopping)
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _sessions(
        self,
        serve: Callable[[], Awaitable[None]],
        disconnected: Callable[[], None],
        stopping: Callable[[], bool],
    ) -> None:
        while not stopping():
            try:
                await serve()
                if stopping():
                    return
                delay = 0.0  # rotation: reconnect at once
                self.auth_backoff.reset()
            except AuthFailed as e:
                delay = self.auth_backoff.next_delay()
                self.status.error(f"{self.auth_prefix}authentication failed: {e}; check "
                                  f"dashscope.api_key and region; retrying in {delay:.0f} s")
                self.log.error("%s: authentication failed: %s; check dashscope.api_key and region "
                               "(keys are region-specific); retrying in %.0f s", self.what, e, delay)
            except (ConnectFailed, p.ProtocolError, OSError, asyncio.TimeoutError) as e:
                delay = self.backoff.next_delay()
                why = redact(str(e)) or e.__class__.__name__
                self.status.error(f"{self.what} lost: {why}")
                self.log.warning("%s lost: %s; reconnecting in %.1f s", self.what, why, delay)
            finally:
                disconnected()
            if stopping():
                return
            if delay:
                self.status.set_state(AgentState.RECONNECTING, f"reconnecting in {delay:.1f} s")
                await self.sleep(delay)
            self.status.reconnects += 1


class SessionRunner:
    """Serves a mode's sessions one after another; see the module docstring."""

    def __init__(self, strategy: SessionStrategy, status: Status, log: logging.Logger, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 timings: SessionTimings = DEFAULT_SESSION_TIMINGS) -> None:
        """`clock` and `sleep` are seams for tests (no real time passes in tests/realtime)."""
        self.strategy = strategy
        self.status = status
        self.log = log
        self.clock = clock
        self.sleep = sleep
        self.loop = SessionLoop(strategy.what, status, log, auth_prefix=strategy.auth_prefix, sleep=sleep,
                                timings=timings)
        self.conn: SessionConnection | None = None  # the configured session, while served
        self.stopping = False
        self._closed = asyncio.Event()
        self._closed.set()

    async def run(self, background: Callable[[], Awaitable[None]] | None = None) -> None:
        """Connect, serve, reconnect with backoff — until stopped or cancelled."""
        await self.loop.run(self.serve_one, self._disconnected, lambda: self.stopping, background)

    def _disconnected(self) -> None:
        self.status.connected = False
        self.strategy.disconnected()

    async def serve_one(self) -> None:
        """One session; returns on rotation or stop, raises when the session was lost."""
        s = self.strategy
        conn = await s.open()
        self._closed.clear()
        tasks: list[asyncio.Task[None]] = []
        rotated = False
        try:
            await conn.send(s.configure_event())
            for event in getattr(s, "seed_events", list)():  # optional hook: context to restore
                await conn.send(event)
            self.conn = conn
            self.loop.connected()
            self.status.connected = True
            s.opened(conn)  # the uplink's pre-roll goes first: words spoken during the outage count
            reader = asyncio.create_task(self._read(conn), name=f"{s.name} reader")
            rotate = asyncio.create_task(self._rotate_when_due(), name=f"{s.name} rotate")
            tasks = [reader, rotate,
                     asyncio.create_task(self.status.clear_error_when_proven(), name=f"{s.name} proven")]
            # Rotation must not wait for the next server event: a quiet session sends none.
            await asyncio.wait({reader, rotate}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # a lost session raises here
            else:
                rotated = not self.stopping
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            s.closed()
            self.conn = None
            if rotated:
                await conn.finish()  # nobody else reads this socket any more
            else:
                await conn.close()
            self._closed.set()
        if not self.stopping and not rotated:
            why = "the server closed the session"
            if s.close_code_in_error:
                why = f"{why} ({conn.close_code} {conn.close_reason or ''})".replace(" )", ")")
            raise ConnectFailed(why)

    async def _read(self, conn: SessionConnection) -> None:
        """The socket's only reader while the session is served."""
        async for event in conn.events():
            if isinstance(event, p.SessionFinished):
                self.log.info("%s session finished", self.strategy.name)
                return  # our own session.finish (stop) was acknowledged
            await self.strategy.on_event(event)

    async def _rotate_when_due(self) -> None:
        """Resolve once the strategy says a rotation is due (the session then ends politely)."""
        started = self.clock()
        while True:
            await self.sleep(self.strategy.rotation_poll_s)
            now = self.clock()
            if self.strategy.rotation_due(now):
                self.log.info("rotating the %s session after %.0f minutes", self.strategy.name,
                              (now - started) / 60)
                return

    def request_stop(self) -> None:
        """From now on no session is started and the current one's end is not a loss."""
        self.stopping = True

    async def stop(self, timeout: float = 2.0) -> None:
        """SIGTERM: end the session politely (`session.finish`), bounded by `timeout`.

        The reader stays the socket's only reader: it sees `session.finished` (or the close) and
        the session ends; we only wait for that, so shutdown stays under 5 s.
        """
        self.stopping = True
        conn = self.conn
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.send(p.session_finish())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closed.wait(), timeout)
