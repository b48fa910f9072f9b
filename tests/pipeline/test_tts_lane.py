"""The synthesis pool's public API without sockets: the lane, socket hand-over, frame delivery.

A fake WebSocket (an async iterator of frames) stands in for the server; nothing here listens,
connects or sleeps for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agent.tts.connection import Connection, SocketPool
from tests.support.emulator import account_at

pytestmark = pytest.mark.unit


class FakeWs:
    """Yields `frames`, then ends as if the server closed the socket."""

    def __init__(self, frames: list[str | bytes]) -> None:
        self.frames = frames
        self.release = asyncio.Event()  # frames flow once set

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        await self.release.wait()
        for frame in self.frames:
            yield frame

    async def close(self) -> None:
        self.release.set()


class Sink:
    """A `FrameSink` that records what reached it."""

    def __init__(self) -> None:
        self.frames: list[str | bytes] = []
        self.closed: list[Connection] = []

    async def on_frame(self, conn: Connection, frame: str | bytes) -> None:
        self.frames.append(frame)

    def on_closed(self, conn: Connection) -> None:
        self.closed.append(conn)


class Holder:
    """A `Leaseholder` that records being cancelled."""

    def __init__(self) -> None:
        self.ended = False
        self.cancelled = False

    async def cancel(self) -> None:
        self.cancelled = True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool(clock: Clock | None = None) -> SocketPool:
    return SocketPool(account_at("http://unused.invalid", "k"), clock=clock or Clock())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_lane_admits_one_holder_at_a_time_in_order() -> None:
    p = pool()
    order: list[str] = []

    async def use(name: str, holder: Holder) -> None:
        await p.lease()
        p.holder = holder
        order.append(f"{name} in")
        await settle()
        order.append(f"{name} out")
        p.release(holder)

    a, b, c = Holder(), Holder(), Holder()
    await asyncio.gather(use("a", a), use("b", b), use("c", c))
    assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]
    assert p.holder is None


async def test_release_by_an_earlier_holder_keeps_the_current_one() -> None:
    p = pool()
    first, second = Holder(), Holder()
    await p.lease()
    p.holder = second  # a newer holder was registered (as begin() does)
    p.release(first)
    assert p.holder is second


async def test_close_cancels_the_lane_holder() -> None:
    p = pool()
    holder = Holder()
    await p.lease()
    p.holder = holder
    await p.close()
    assert holder.cancelled


async def test_a_connection_delivers_frames_to_its_sink_and_reports_the_close() -> None:
    clock = Clock()
    p = pool(clock)
    ws = FakeWs(["started", b"\x01\x02", "finished"])
    conn = Connection(ws, p)  # type: ignore[arg-type]
    sink = Sink()
    p.claim(conn, sink)
    ws.release.set()
    await asyncio.wait_for(conn.closed.wait(), 1.0)
    assert sink.frames == ["started", b"\x01\x02", "finished"]
    assert sink.closed == [conn] and conn.close_reason == "closed by the server"


async def test_frames_with_no_sink_are_counted_as_stray() -> None:
    p = pool()
    ws = FakeWs(["late", b"\x00\x00"])
    conn = Connection(ws, p)  # type: ignore[arg-type]
    ws.release.set()
    await asyncio.wait_for(conn.closed.wait(), 1.0)
    assert conn.stray_frames == 2


async def test_give_back_only_by_the_sink_that_holds_the_socket() -> None:
    clock = Clock()
    p = pool(clock)
    conn = Connection(FakeWs([]), p)  # type: ignore[arg-type]
    owner, stale = Sink(), Sink()
    p.claim(conn, owner)
    clock.now = 130.0
    p.give_back(conn, stale)
    assert conn.sink is owner and conn.idle_since == 100.0
    p.give_back(conn, owner)
    assert conn.sink is None and conn.idle_since == 130.0
    conn.reader.cancel()
    await asyncio.gather(conn.reader, return_exceptions=True)

