"""Engine watchdog and device recovery against a fake PortAudio (deterministic, no sound server).

The real thing (PortAudio + a PulseAudio server that dies) is in tests/realaudio; these cover
the paths a real server rarely takes on demand: repeated open failures with backoff, a callback
that silently stops, and a driver that never returns from close.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from agent.audio import engine as engmod
from agent.audio.backend import Stream
from agent.audio.devices import DeviceInfo
from agent.config import AudioSettings, StreamSettings


class FakeStream(Stream):
    def __init__(self, pa: FakePA, kind: str, rate: int, cb) -> None:
        super().__init__()
        self.kind, self.samplerate, self.blocksize, self.latency = kind, rate, 0, 0.02
        self.description = f"0: fake {kind}"
        self.pa, self.cb = pa, cb
        self.stop_calling = threading.Event()
        self.closed = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        buf = np.zeros(self.samplerate // 100, np.int16)
        while not self.closed.is_set() and not self.stop_calling.is_set():
            if self.kind == "output":
                self.cb(buf, time.monotonic(), 0.02, False)
            else:
                self.cb(buf, time.monotonic(), False)
            time.sleep(0.01)

    def close(self) -> None:
        if self.pa.hang_close:
            self.pa.release.wait()  # a wedged driver: does not return (until the test ends)
        self.closed.set()


class FakePA:
    DEFAULT_LATENCY_S = 0.04

    def __init__(self) -> None:
        self.rows = [DeviceInfo(0, "fake card", "ALSA", 1, 1, 48000.0)]
        self.reinits = 0
        self.open_failures = 0  # fail this many opens
        self.opens: list[float] = []
        self.hang_close = False
        self.release = threading.Event()
        self.streams: list[FakeStream] = []

    def query(self):
        return list(self.rows)

    def reinitialize(self) -> bool:
        self.reinits += 1
        return True

    def negotiate_rate(self, dev, kind, preferred):
        return preferred

    def _open(self, kind, rate, cb):
        self.opens.append(time.monotonic())
        if self.open_failures > 0:
            self.open_failures -= 1
            raise RuntimeError("Error opening stream: Device unavailable")
        st = FakeStream(self, kind, rate, cb)
        self.streams.append(st)
        return st

    def PortAudioOutput(self, dev, rate, render, latency):  # noqa: N802 - mirrors the module
        return self._open("output", rate, render)

    def PortAudioInput(self, dev, rate, capture, latency):  # noqa: N802
        return self._open("input", rate, capture)


@pytest.fixture
def fake(monkeypatch):
    pa = FakePA()
    monkeypatch.setattr(engmod, "load_portaudio", lambda: pa)
    yield pa
    # Un-wedge the fake so its stuck thread lets go of the process-wide PortAudio lock.
    pa.release.set()
    assert engmod._PA_LOCK.acquire(timeout=5)
    engmod._PA_LOCK.release()


# The watchdog scaled down: checks every 50 ms, retries after 0.1 s doubling to 0.4 s, and
# gives up on a wedged close after 0.3 s.
FAST = engmod.EngineTimings(watch_interval_s=0.05, backoff_start_s=0.1, backoff_cap_s=0.4, close_timeout_s=0.3)


def make_engine() -> engmod.AudioEngine:
    return engmod.AudioEngine(AudioSettings(output=StreamSettings(device="fake"), input=StreamSettings(device=0)),
                              timings=FAST)


async def until(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.02)
    return pred()


async def test_failed_stream_is_reported_reinitialised_and_reopened_with_backoff(fake, caplog):
    eng = make_engine()
    await eng.start()
    try:
        assert await until(lambda: eng.output_ok and eng.input_ok, 1)
        fake.open_failures = 4  # the device stays away for four attempts (two streams each)
        fake.streams[0].failed = "output stream on 0: fake output stopped unexpectedly"
        assert await until(lambda: not eng.output_ok, 1)
        assert eng.status()["last_error"]
        assert "stopped unexpectedly" in caplog.text
        # While the device is gone the player keeps accepting (bounded) audio.
        assert eng.player.feed("r", np.ones(2400, np.int16)) == 2400
        assert await until(lambda: eng.output_ok and eng.input_ok, 5)
        assert eng.status()["reopens"] == 1 and fake.reinits >= 2
        # Exponential backoff between failed attempts (0.1, 0.2, 0.4 s, capped).
        attempts = fake.opens[2:]
        gaps = np.diff(attempts)
        assert (gaps[:2] > 0.08).all() and gaps[1] > gaps[0] * 1.5
        assert all(s.closed.is_set() for s in fake.streams[:2])
    finally:
        await eng.stop()


async def test_callback_that_stops_being_called_is_detected(fake, caplog):
    eng = make_engine()
    await eng.start()
    try:
        assert await until(lambda: eng.output_ok, 1)
        t0 = time.monotonic()
        fake.streams[0].stop_calling.set()  # no error, no finished callback: just silence
        assert await until(lambda: eng.status()["reopens"] == 1, 3)
        assert 0.9 < time.monotonic() - t0 < 2.0  # noticed after ~1 s of silence
        assert "output callback not called for" in caplog.text
        assert eng.output_ok and fake.streams[0].closed.is_set()
    finally:
        await eng.stop()


async def test_wedged_driver_is_fatal_not_a_hang(fake):
    eng = make_engine()
    fatal = []
    eng.on_fatal = fatal.append
    await eng.start()
    try:
        assert await until(lambda: eng.output_ok, 1)
        fake.hang_close = True
        fake.streams[0].failed = "output stream stopped unexpectedly"
        assert await until(lambda: fatal, 3)
        st = eng.status()
        assert st["wedged"] and "process restart" in st["last_error"] and not st["output_ok"]
        opens = len(fake.opens)
        await asyncio.sleep(0.5)
        assert len(fake.opens) == opens  # no futile retries against a wedged PortAudio
    finally:
        t0 = time.monotonic()
        await eng.stop()  # must not hang on the wedged close either
        assert time.monotonic() - t0 < 2.0
