"""connect → serve → on error wait with backoff → reconnect: the loop of every realtime session.

Omni mode's conversation and pipeline mode's speech recognition are both long-lived realtime
WebSocket sessions that fail the same ways, so they share one discipline (SPEC §5.3): a refused
key waits minutes and says so; any other loss waits a jittered backoff that starts under a second
and resets once a session has stayed up `STABLE_AFTER_S`; a rotation reconnects at once. The
status always says why the session is down, and the loop never spins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from agent.backoff import Backoff
from agent.realtime import protocol as p
from agent.realtime.connection import AuthFailed, ConnectFailed
from agent.secrets import redact
from agent.status import AgentState, Status
from agent.uplink import MicUplink

STABLE_AFTER_S = 30.0  # a session that lived this long resets the backoff
AUTH_BACKOFF_S = (60.0, 600.0)  # a refused key is retried after minutes, not seconds


class SessionLoop:
    """Runs one session after another for a mode; `what` names the session in status and logs."""

    def __init__(self, what: str, status: Status, log: logging.Logger, *, auth_prefix: str = "") -> None:
        self.what = what
        self.status = status
        self.log = log
        self.auth_prefix = auth_prefix
        self.backoff = Backoff(first=0.5, cap=30.0, stable_s=STABLE_AFTER_S)
        self.auth_backoff = Backoff(first=AUTH_BACKOFF_S[0], cap=AUTH_BACKOFF_S[1])

    def connected(self) -> None:
        """A session is up: if it stays up `STABLE_AFTER_S`, past failures are forgotten."""
        self.backoff.connected()

    async def run(
        self,
        uplink: MicUplink,
        serve: Callable[[], Awaitable[None]],
        disconnected: Callable[[], None],
        stopping: Callable[[], bool],
    ) -> None:
        """Serve sessions until `stopping()`; `serve` returns on rotation and raises on a loss.

        The microphone uplink runs for the loop's whole life, across reconnects, so that it can
        keep a pre-roll while no session is attached.
        """
        mic = asyncio.create_task(uplink.run(), name=f"{self.what} uplink")
        try:
            await self._sessions(serve, disconnected, stopping)
        finally:
            uplink.stopping = True
            mic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mic

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
                await asyncio.sleep(delay)
            self.status.reconnects += 1
