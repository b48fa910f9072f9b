"""The realtime session runner's discipline, with fake connections and no real time.

`SessionRunner` takes its `sleep` as a seam: here it records the delay and only yields to the
event loop, so backoffs of seconds or minutes cost nothing and can be asserted exactly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.realtime import protocol as p
from agent.realtime.connection import AuthFailed
from agent.realtime.session import SessionConnection, SessionRunner, SessionTimings
from agent.status import AgentState, Status

pytestmark = pytest.mark.unit

log = logging.getLogger("test.session")
FINISHED = p.SessionFinished("session.finished", {})


class FakeConnection:
    """A session whose server events the test scripts; `session.finish` is acknowledged."""

    def __init__(self, *, server_closes: bool = False, acknowledges_finish: bool = True) -> None:
        self.sent: list[dict[str, Any]] = []
        self.events_in: asyncio.Queue[p.ServerEvent | None] = asyncio.Queue()
        self.finished = False
        self.closed = False
        self.acknowledges_finish = acknowledges_finish
        self.close_code: int | None = None
        self.close_reason: str | None = None
        if server_closes:
            self.close_code, self.close_reason = 1000, "bye"
            self.events_in.put_nowait(None)

    async def send(self, event: dict[str, Any]) -> None:
        self.sent.append(event)
        if event["type"] == "session.finish" and self.acknowledges_finish:
            self.events_in.put_nowait(FINISHED)

    async def events(self) -> AsyncIterator[p.ServerEvent]:
        while (event := await self.events_in.get()) is not None:
            yield event

    async def finish(self) -> None:
        self.finished = True
        await self.close()

    async def close(self) -> None:
        self.closed = True


class Strategy:
    """A mode as the runner sees it; records the hooks it was called with."""

    what = "test session"
    name = "test"
    auth_prefix = "test: "
    rotation_poll_s = 1.0
    close_code_in_error = True

    def __init__(self, conns: list[FakeConnection | Exception]) -> None:
        self.conns = conns
        self.opened_conns: list[SessionConnection] = []
        self.events: list[p.ServerEvent] = []
        self.calls: list[str] = []
        self.rotate_after_polls: int | None = None
        self.polls = 0

    async def open(self) -> SessionConnection:
        item = self.conns.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def configure_event(self) -> dict[str, Any]:
        return {"type": "session.update", "session": {}}

    def opened(self, conn: SessionConnection) -> None:
        self.calls.append("opened")
        self.opened_conns.append(conn)

    async def on_event(self, event: p.ServerEvent) -> None:
        self.events.append(event)

    def rotation_due(self, now: float) -> bool:
        self.polls += 1
        return self.rotate_after_polls is not None and self.polls >= self.rotate_after_polls

    def closed(self) -> None:
        self.calls.append("closed")

    def disconnected(self) -> None:
        self.calls.append("disconnected")


class Sleeps:
    """The runner's sleep: records each delay, lets other tasks run, passes no real time."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.on_backoff: Any = None

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if delay != Strategy.rotation_poll_s and self.on_backoff is not None:
            self.on_backoff()
        for _ in range(3):
            await asyncio.sleep(0)

    @property
    def backoffs(self) -> list[float]:
        return [d for d in self.delays if d != Strategy.rotation_poll_s]


def runner_for(strategy: Strategy, sleeps: Sleeps) -> tuple[SessionRunner, Status]:
    status = Status("omni")
    return SessionRunner(strategy, status, log, clock=lambda: 0.0, sleep=sleeps), status


async def test_a_rotation_finishes_the_old_session_politely_and_reconnects_at_once() -> None:
    first, second = FakeConnection(), FakeConnection()
    strategy = Strategy([first, second])
    strategy.rotate_after_polls = 2
    sleeps = Sleeps()
    runner, status = runner_for(strategy, sleeps)

    def stop_in_second_session(conn: SessionConnection) -> None:
        Strategy.opened(strategy, conn)
        if conn is second:
            runner.request_stop()
            second.events_in.put_nowait(None)

    strategy.opened = stop_in_second_session  # type: ignore[method-assign]
    await asyncio.wait_for(runner.run(), 5)
    assert first.finished and first.closed, "a rotated session ends with session.finish"
    assert [e["type"] for e in first.sent] == ["session.update"]
    assert sleeps.backoffs == [], "a rotation reconnects without a backoff"
    assert status.reconnects == 1 and status.last_error is None
    assert strategy.calls == ["opened", "closed", "disconnected", "opened", "closed", "disconnected"]
    assert second.closed and not second.finished and runner.conn is None


async def test_a_session_the_server_closes_is_a_loss_that_goes_through_the_backoff() -> None:
    closing, replacement = FakeConnection(server_closes=True), FakeConnection()
    strategy = Strategy([closing, replacement])
    sleeps = Sleeps()
    runner, status = runner_for(strategy, sleeps)
    states: list[str] = []
    status.on_change = states.append
    sleeps.on_backoff = lambda: states.append(f"backing off, connected={status.connected}")

    async def stop_when_replaced() -> None:
        while not strategy.opened_conns or strategy.opened_conns[-1] is not replacement:
            await asyncio.sleep(0)
        await runner.stop(timeout=1.0)

    await asyncio.wait_for(asyncio.gather(runner.run(), stop_when_replaced()), 5)
    assert closing.closed and not closing.finished
    assert len(sleeps.backoffs) == 1 and 0.25 <= sleeps.backoffs[0] <= 0.5  # first step: < 1 s
    assert any("reconnecting in" in s for s in states)
    assert "backing off, connected=False" in states
    assert status.last_error == "test session lost: the server closed the session (1000 bye)"
    assert status.reconnects == 1
    assert {"type": "session.finish"} in replacement.sent and replacement.closed


async def test_stop_sends_session_finish_and_returns_once_the_server_acknowledged_it() -> None:
    conn = FakeConnection()
    strategy = Strategy([conn])
    runner, status = runner_for(strategy, Sleeps())
    task = asyncio.create_task(runner.run())
    while runner.conn is None:
        await asyncio.sleep(0)
    conn.events_in.put_nowait(p.parse_event('{"type": "session.updated", "session": {}}'))
    await asyncio.wait_for(runner.stop(timeout=1.0), 1.0)
    await asyncio.wait_for(task, 1.0)
    assert [e["type"] for e in conn.sent] == ["session.update", "session.finish"]
    assert [e.type for e in strategy.events] == ["session.updated"], "session.finished is the runner's"
    assert conn.closed and status.last_error is None and status.reconnects == 0


async def test_stop_is_bounded_when_the_server_never_acknowledges() -> None:
    conn = FakeConnection(acknowledges_finish=False)
    runner, _ = runner_for(Strategy([conn]), Sleeps())
    task = asyncio.create_task(runner.run())
    while runner.conn is None:
        await asyncio.sleep(0)
    await runner.stop(timeout=0.05)
    assert runner.stopping and not conn.closed  # the reader still owns the socket
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert conn.closed


async def test_a_refused_key_backs_off_for_minutes_and_says_so() -> None:
    assert SessionTimings().auth_backoff_s == (60.0, 600.0)  # what is shipped
    strategy = Strategy([AuthFailed("the server refused the API key (HTTP 401)")])
    sleeps = Sleeps()
    runner, status = runner_for(strategy, sleeps)
    sleeps.on_backoff = runner.request_stop
    await asyncio.wait_for(runner.run(), 5)
    assert len(sleeps.backoffs) == 1 and 30.0 <= sleeps.backoffs[0] <= 60.0
    assert status.last_error is not None
    assert status.last_error.startswith("test: authentication failed: the server refused the API key")
    assert strategy.calls == ["disconnected"] and status.state is AgentState.RECONNECTING


async def test_the_background_task_lives_across_sessions_and_ends_with_the_runner() -> None:
    strategy = Strategy([FakeConnection(server_closes=True), FakeConnection(server_closes=True)])
    sleeps = Sleeps()
    runner, _ = runner_for(strategy, sleeps)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def background() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    sleeps.on_backoff = lambda: runner.request_stop() if len(sleeps.backoffs) == 2 else None
    await asyncio.wait_for(runner.run(background), 5)
    assert started.is_set() and cancelled.is_set()
    assert len(strategy.opened_conns) == 2
