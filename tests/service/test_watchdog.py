"""The watchdog pings only while the event loop and the audio callback make progress.

Timing uses a 0.4 s watchdog interval (pings every 0.2 s, ticks every 0.1 s) and a real
NOTIFY_SOCKET receiver that timestamps each datagram in its own thread.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from agent.watchdog import Watchdog

INTERVAL = 0.4


class Heartbeat:
    """Stands in for the audio callback: a thread that increments a counter while running."""

    def __init__(self) -> None:
        self.count = 0
        self.running = threading.Event()
        self.running.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.running.is_set():
                self.count += 1
            time.sleep(0.01)

    def __call__(self) -> int:
        return self.count

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


@pytest.fixture
def heartbeat():
    hb = Heartbeat()
    yield hb
    hb.close()


def pings_between(rx, start: float, end: float) -> int:
    return sum(1 for t in rx.ping_times() if start <= t <= end)


async def test_pings_at_half_the_interval_while_healthy(notify_socket, heartbeat) -> None:
    wd = Watchdog(INTERVAL, audio_heartbeat=heartbeat, audio_stall_s=0.3)
    wd.start()
    t0 = time.monotonic()
    await asyncio.sleep(1.2)
    await wd.stop()
    times = [t for t in notify_socket.ping_times() if t >= t0]
    assert 4 <= len(times) <= 8, times  # ~6 at 0.2 s
    gaps = [b - a for a, b in zip([t0, *times], times, strict=False)]
    assert max(gaps) < INTERVAL, gaps  # systemd would never have fired
    assert wd.unhealthy_reason is None


async def test_stops_when_audio_heartbeat_stalls_and_resumes(notify_socket, heartbeat) -> None:
    wd = Watchdog(INTERVAL, audio_heartbeat=heartbeat, audio_stall_s=0.3)
    wd.start()
    await asyncio.sleep(0.5)
    heartbeat.running.clear()  # the audio callback hangs
    stalled_at = time.monotonic()
    await asyncio.sleep(1.2)
    # After the stall limit (+ one tick of slack) there must be no ping at all.
    assert pings_between(notify_socket, stalled_at + 0.3 + 0.15, time.monotonic()) == 0
    assert wd.unhealthy_reason and "audio callback stalled" in wd.unhealthy_reason
    heartbeat.running.set()
    resumed_at = time.monotonic()
    await asyncio.sleep(0.5)
    await wd.stop()
    assert pings_between(notify_socket, resumed_at, time.monotonic()) >= 1
    assert wd.unhealthy_reason is None


async def test_audio_not_expected_keeps_pinging(notify_socket, heartbeat) -> None:
    """Device gone and being reopened on purpose: the daemon says so, the service is not killed."""
    expected = {"value": True}
    wd = Watchdog(
        INTERVAL,
        audio_heartbeat=heartbeat,
        is_audio_expected=lambda: expected["value"],
        audio_stall_s=0.3,
    )
    wd.start()
    await asyncio.sleep(0.3)
    heartbeat.running.clear()
    expected["value"] = False
    t = time.monotonic()
    await asyncio.sleep(1.0)
    assert pings_between(notify_socket, t + 0.4, time.monotonic()) >= 2
    # Back to expected, still no callbacks: a full stall period of grace, then silence.
    expected["value"] = True
    back = time.monotonic()
    await asyncio.sleep(1.0)
    await wd.stop()
    assert pings_between(notify_socket, back + 0.3 + 0.15, time.monotonic()) == 0


async def test_blocked_event_loop_sends_no_pings(notify_socket, heartbeat) -> None:
    wd = Watchdog(INTERVAL, audio_heartbeat=heartbeat, audio_stall_s=5.0, max_loop_lag_s=0.1)
    wd.start()
    await asyncio.sleep(0.5)
    blocked_at = time.monotonic()
    time.sleep(0.8)  # a synchronous call wedges the loop
    unblocked_at = time.monotonic()
    await asyncio.sleep(0.05)
    # The first tick after the stall sees the lag and does not ping.
    assert wd.last_lag_s > 0.5
    assert wd.unhealthy_reason and "event loop lagging" in wd.unhealthy_reason
    await asyncio.sleep(0.6)
    await wd.stop()
    assert pings_between(notify_socket, blocked_at + 0.01, unblocked_at) == 0
    assert pings_between(notify_socket, unblocked_at + 0.01, unblocked_at + 0.09) == 0
    assert pings_between(notify_socket, unblocked_at, time.monotonic()) >= 1, "recovers"


async def test_disabled_without_watchdog_usec(monkeypatch, notify_socket) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    wd = Watchdog(audio_heartbeat=lambda: 0)
    assert not wd.enabled
    assert wd.start() is None
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    assert Watchdog().interval_s == pytest.approx(0.4)


async def test_no_audio_probe_means_loop_only(notify_socket) -> None:
    """Null audio backends: no heartbeat callable, the watchdog watches the loop alone."""
    wd = Watchdog(INTERVAL)
    wd.start()
    await asyncio.sleep(0.7)
    await wd.stop()
    assert len(notify_socket.ping_times()) >= 3


async def test_broken_probe_reads_as_stall(notify_socket) -> None:
    def broken() -> int:
        raise RuntimeError("probe bug")

    wd = Watchdog(INTERVAL, audio_heartbeat=broken, audio_stall_s=0.2)
    wd.start()
    await asyncio.sleep(0.8)
    await wd.stop()
    assert wd.unhealthy_reason and "stalled" in wd.unhealthy_reason
    assert not [t for t in notify_socket.ping_times() if t > time.monotonic() - 0.4]
