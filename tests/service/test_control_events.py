"""`subscribe` and `volume` over the real control socket (SPEC §6, §12)."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from agent.control import ControlServer, IntegrationHandler
from agent.controlclient import events_command, volume_command
from agent.events import EventBus
from tests.service.control_fakes import Client, FakeHandler


class EventsHandler(FakeHandler):
    """The fake daemon with an event bus and a volume."""

    def __init__(self) -> None:
        super().__init__()
        self.events = EventBus()
        self.level = 100

    def volume(self, level: int | None) -> int:
        self.calls.append(("volume", level))
        if level is not None:
            self.level = level
            self.events.publish("volume", level=level)
        return self.level


async def subscribe(path: Path) -> Client:
    c = await Client.connect(path)
    assert await c.request({"cmd": "subscribe"}) == {"ok": True}
    return c


async def next_event(c: Client) -> dict[str, Any]:
    return await c.reply()


async def settle(predicate, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_the_handler_with_events_and_volume_is_an_integration_handler() -> None:
    assert isinstance(EventsHandler(), IntegrationHandler)
    assert not isinstance(FakeHandler(), IntegrationHandler)


async def test_a_subscriber_gets_the_current_state_then_every_event_in_order(short_dir: Path) -> None:
    h = EventsHandler()
    h.events.publish("state", state="idle")
    async with ControlServer(h, short_dir / "c.sock") as server:
        c = await subscribe(server.path)
        first = await next_event(c)
        assert (first["event"], first["state"]) == ("state", "idle")
        await settle(lambda: h.events.subscribers == 1)
        h.events.publish("wake", word="okay_nabu", score=0.93)
        h.events.publish("state", state="listening")
        h.events.publish("transcript", role="user", text="What time", final=False)
        h.events.publish("transcript", role="user", text="What time is it?", final=True)
        h.events.publish("tool", name="time", arguments={}, ok=True, ms=3.2)
        h.events.publish("transcript", role="assistant", text="It is noon.", final=True)
        h.events.publish("turn", latency_ms=812.5, interrupted=False, heard_ms=None)
        got = [await next_event(c) for _ in range(7)]
        assert [e["event"] for e in got] == ["wake", "state", "transcript", "transcript", "tool",
                                             "transcript", "turn"]
        assert got[3] == {**got[3], "role": "user", "text": "What time is it?", "final": True}
        assert got[6]["latency_ms"] == 812.5 and got[6]["heard_ms"] is None
        assert all(abs(e["t"] - time.time()) < 5 for e in got)
        await c.close()
        await settle(lambda: h.events.subscribers == 0)


async def test_subscribers_do_not_hold_request_slots(short_dir: Path) -> None:
    h = EventsHandler()
    async with ControlServer(h, short_dir / "c.sock", max_clients=1, max_subscribers=3) as server:
        subs = [await subscribe(server.path) for _ in range(3)]
        c = await Client.connect(server.path)
        assert (await c.request({"cmd": "status"}))["ok"], "the one request slot is free"
        await c.close()
        extra = await Client.connect(server.path)
        await extra.send_raw(b'{"cmd": "subscribe"}\n')
        assert "too many subscribers" in (await extra.reply())["error"]
        for s in [*subs, extra]:
            await s.close()


async def test_shutdown_ends_every_stream_after_its_queued_lines(short_dir: Path) -> None:
    h = EventsHandler()
    server = ControlServer(h, short_dir / "c.sock")
    await server.start()
    c = await subscribe(server.path)
    await settle(lambda: h.events.subscribers == 1)
    h.events.publish("error", message="going down")
    t0 = time.monotonic()
    await server.close()
    assert time.monotonic() - t0 < 1.5
    assert (await next_event(c))["message"] == "going down"
    assert await c.closed_by_server()
    assert h.events.subscribers == 0


async def test_a_stuck_subscriber_is_dropped_and_costs_the_publisher_nothing(short_dir: Path) -> None:
    """One healthy subscriber reads everything; a second one subscribes and never reads. The
    publisher's time per event stays that of the healthy case, the stuck one's backlog never
    exceeds the bound, memory stays bounded, and it is dropped with a last error line."""
    h = EventsHandler()
    bus = h.events
    text = "x" * 500  # long captions: an unbounded backlog would be megabytes

    async def publish_batch(n: int, healthy: Client, seen: list[int], base: int) -> float:
        """Publish n events in slices (the loop runs between them); return publish time."""
        spent = 0.0
        for k in range(0, n, 50):
            t0 = time.perf_counter()
            for i in range(k, min(n, k + 50)):
                bus.publish("transcript", role="assistant", text=f"{base + i} {text}", final=False)
            spent += time.perf_counter() - t0
            await asyncio.sleep(0)
            while len(seen) < base + min(n, k + 50):  # the healthy reader keeps up
                seen.append(int((await healthy.reply())["text"].split()[0]))
        return spent

    async with ControlServer(h, short_dir / "c.sock", write_timeout=30.0) as server:
        healthy = await subscribe(server.path)
        await settle(lambda: bus.subscribers == 1)
        seen: list[int] = []
        alone = await publish_batch(2000, healthy, seen, 0)

        def connect_stuck() -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(str(server.path))
            sock.sendall(b'{"cmd": "subscribe"}\n')
            return sock

        # Time: the same 2000 events with a stuck subscriber connected from the start.
        stuck = connect_stuck()
        await settle(lambda: bus.subscribers == 2)
        stuck_sub = bus._subs[1]
        with_stuck = 0.0
        peak_backlog = 0
        for round_ in range(10):
            with_stuck += await publish_batch(200, healthy, seen, 2000 + round_ * 200)
            peak_backlog = max(peak_backlog, len(stuck_sub))
        assert stuck_sub.dropped and bus.subscribers == 1
        assert peak_backlog <= bus.backlog
        assert with_stuck < 2 * alone + 0.05, f"publish slowed: {with_stuck:.3f} s vs {alone:.3f} s"

        # Memory: another stuck subscriber, 2000 more events (5 MB of captions) under tracemalloc.
        stuck2 = connect_stuck()
        await settle(lambda: bus.subscribers == 2)
        tracemalloc.start()
        await publish_batch(2000, healthy, seen, 4000)
        _, peak_mem = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        stuck2.close()
        assert bus.subscribers == 1
        assert peak_mem < 1_000_000, f"publishing with a stuck subscriber held {peak_mem} bytes"
        assert seen == list(range(6000)), "the healthy subscriber got every event, in order"

        # The stuck client reads at last: what fitted, then the drop notice, then EOF.
        stuck.setblocking(False)
        data = bytearray()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = stuck.recv(1 << 16)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            if not chunk:
                break
            data += chunk
        stuck.close()
        lines = [json.loads(x) for x in bytes(data).splitlines()]
        assert lines[0] == {"ok": True}
        assert lines[-1]["event"] == "error" and "too slow" in lines[-1]["message"]
        numbers = [int(e["text"].split()[0]) for e in lines[1:-1]]
        assert numbers == sorted(numbers) and len(numbers) < 2000
        await healthy.close()


async def test_volume_reads_and_sets_and_validates(short_dir: Path) -> None:
    h = EventsHandler()
    async with ControlServer(h, short_dir / "c.sock") as server:
        c = await Client.connect(server.path)
        assert await c.request({"cmd": "volume"}) == {"ok": True, "volume": 100}
        assert await c.request({"cmd": "volume", "level": 40}) == {"ok": True, "volume": 40}
        assert await c.request({"cmd": "volume"}) == {"ok": True, "volume": 40}
        for bad in (101, -1, 50.5, "50", True):
            reply = await c.request({"cmd": "volume", "level": bad})
            assert not reply["ok"] and "0-100" in reply["error"], reply
        assert h.calls == [("volume", None), ("volume", 40), ("volume", None)]
        await c.close()


async def test_a_daemon_without_events_or_volume_says_so(short_dir: Path) -> None:
    async with ControlServer(FakeHandler(), short_dir / "c.sock") as server:
        c = await Client.connect(server.path)
        assert "no event stream" in (await c.request({"cmd": "subscribe"}))["error"]
        assert "no volume control" in (await c.request({"cmd": "volume"}))["error"]
        assert (await c.request({"cmd": "status"}))["ok"], "the connection still serves"
        await c.close()


async def test_cli_events_prints_json_lines_until_the_daemon_stops(short_dir: Path) -> None:
    h = EventsHandler()
    h.events.publish("state", state="idle")
    out = io.StringIO()
    server = ControlServer(h, short_dir / "c.sock")
    await server.start()
    cli = asyncio.ensure_future(asyncio.to_thread(events_command, str(server.path), None, out))
    await settle(lambda: h.events.subscribers == 1)
    h.events.publish("transcript", role="user", text="Hallo", final=True)
    await settle(lambda: out.getvalue().count("\n") == 2)
    await server.close()
    assert await asyncio.wait_for(cli, 5) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["state", "transcript"]
    assert events[1]["text"] == "Hallo"


async def test_cli_volume_prints_and_sets_the_level(short_dir: Path, capsys) -> None:
    h = EventsHandler()
    async with ControlServer(h, short_dir / "c.sock") as server:
        assert await asyncio.to_thread(volume_command, 25, str(server.path), None) == 0
        assert await asyncio.to_thread(volume_command, None, str(server.path), None) == 0
    out, err = capsys.readouterr()
    assert out.split() == ["25", "25"] and err == ""


async def test_a_half_closed_subscriber_keeps_its_stream_until_it_hangs_up(short_dir: Path) -> None:
    """`printf '{"cmd":"subscribe"}\\n' | socat - UNIX:...` ends its input but keeps reading."""
    h = EventsHandler()
    async with ControlServer(h, short_dir / "c.sock") as server:
        c = await subscribe(server.path)
        c.writer.write_eof()
        await settle(lambda: h.events.subscribers == 1)
        await asyncio.sleep(0.1)
        h.events.publish("volume", level=5)
        assert (await next_event(c))["level"] == 5
        c.writer.close()
        await settle(lambda: h.events.subscribers == 0)


async def test_events_published_from_another_thread_arrive_in_order(short_dir: Path) -> None:
    h = EventsHandler()
    async with ControlServer(h, short_dir / "c.sock") as server:
        c = await subscribe(server.path)
        await settle(lambda: h.events.subscribers == 1)

        def wake_thread() -> None:  # e.g. a wake-word engine on its own thread
            for i in range(50):
                h.events.publish("wake", word="alexa", score=i / 100)

        await asyncio.to_thread(wake_thread)
        got = [await next_event(c) for _ in range(50)]
        assert [round(e["score"] * 100) for e in got] == list(range(50))
        await c.close()


async def test_subscribe_without_a_newline_then_end_of_input_still_streams(short_dir: Path) -> None:
    """`printf '{"cmd":"subscribe"}' | socat - UNIX:...`: no newline, input ends at once."""
    h = EventsHandler()
    async with ControlServer(h, short_dir / "c.sock") as server:
        c = await Client.connect(server.path)
        await c.send_raw(b'{"cmd": "subscribe"}')
        c.writer.write_eof()
        assert await c.reply() == {"ok": True}
        await settle(lambda: h.events.subscribers == 1)
        h.events.publish("state", state="thinking")
        assert (await next_event(c))["state"] == "thinking"
        await c.close()


def test_cli_volume_refuses_a_level_outside_0_to_100(capsys) -> None:
    from agent.cli import main

    with pytest.raises(SystemExit) as e:
        main(["volume", "101"])
    assert e.value.code == 2 and "0-100" in capsys.readouterr().err
