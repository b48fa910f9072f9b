"""Microphone: chunking, bounded lag (oldest dropped), resampling, async wakeups, mute."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from agent.audio.microphone import Microphone, MicrophoneClosed


def blocks(x: np.ndarray, n: int):
    for i in range(0, x.shape[0], n):
        yield x[i : i + n]


@pytest.mark.unit
def test_chunks_are_exact_16k_slices():
    mic = Microphone(chunk_ms=40)
    sig = (np.arange(16000) % 30000).astype(np.int16)
    for b in blocks(sig, 160):
        mic.capture(b, 0.0)
    out = []
    while (c := mic.read_nowait()) is not None:
        out.append(c)
    assert len(out) == 25 and all(len(c) == 1280 for c in out)
    assert np.array_equal(np.frombuffer(b"".join(out), "<i2"), sig)
    assert mic.stats().dropped_chunks == 0


@pytest.mark.unit
def test_lagging_consumer_drops_oldest_and_counts():
    mic = Microphone(chunk_ms=40, backlog_ms=200)
    sig = (np.arange(32000) % 30000).astype(np.int16)  # 2 s, nobody reading
    for b in blocks(sig, 160):
        mic.capture(b, 0.0)
    got = b""
    while (c := mic.read_nowait()) is not None:
        got += c
    arr = np.frombuffer(got, "<i2")
    assert arr.shape[0] <= 3200  # at most the backlog survives
    assert np.array_equal(arr, sig[-arr.shape[0] :])  # and it is the newest audio
    st = mic.stats()
    assert st.dropped_chunks * 640 + arr.shape[0] == 32000
    assert mic._ring.capacity < 16000  # memory stays bounded by the ring, whatever the lag


@pytest.mark.unit
def test_resamples_device_rate_to_16k():
    mic = Microphone(chunk_ms=20, device_rate=48000)
    t = np.arange(48000) / 48000
    tone = (6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    for b in blocks(tone, 441):  # odd block size
        mic.capture(b, 0.0)
    data = b""
    while (c := mic.read_nowait()) is not None:
        assert len(c) == 640
        data += c
    y = np.frombuffer(data, "<i2").astype(float)
    assert 16000 - 700 <= y.shape[0] <= 16000  # less the filter delay + a partial chunk
    ref = 6000 * np.sin(2 * np.pi * 300 * np.arange(y.shape[0]) / 16000)
    core = slice(500, y.shape[0] - 500)
    best = max(np.corrcoef(y[core], np.roll(ref, k)[core])[0, 1] for k in range(-60, 61))
    assert best > 0.999


@pytest.mark.unit
def test_mute_delivers_silence_and_keeps_timeline():
    mic = Microphone(chunk_ms=40)
    mic.muted = True
    mic.capture(np.full(640, 1234, np.int16), 0.0)
    assert mic.read_nowait() == bytes(1280)
    mic.muted = False
    mic.capture(np.full(640, 1234, np.int16), 0.0)
    assert np.frombuffer(mic.read_nowait(), "<i2").tolist() == [1234] * 640


@pytest.mark.unit
def test_chunk_capture_time_is_reported():
    mic = Microphone(chunk_ms=40)
    mic.capture(np.ones(640, np.int16), 5.0)
    mic.capture(np.ones(640, np.int16), 5.04)
    assert mic.read_frame_nowait().t_end == pytest.approx(5.0)
    assert mic.read_frame_nowait().t_end == pytest.approx(5.04)


async def test_async_reader_is_woken_by_callback_thread():
    mic = Microphone(chunk_ms=40)
    mic.attach_loop(asyncio.get_running_loop())
    stop = threading.Event()

    def device():  # a fake capture thread: 10 ms blocks in real time
        k = 0
        while not stop.is_set() and k < 60:
            mic.capture(np.full(160, k % 100 + 1, np.int16), time.monotonic())
            k += 1
            time.sleep(0.01)

    th = threading.Thread(target=device)
    th.start()
    t0 = time.monotonic()
    got = []
    async for chunk in mic:
        got.append(chunk)
        if len(got) == 10:
            break
    elapsed = time.monotonic() - t0
    stop.set()
    th.join()
    assert len(got) == 10 and all(len(c) == 1280 for c in got)
    assert 0.3 < elapsed < 2.0  # paced by the device, not by a poll timer
    mic.close()
    with pytest.raises(MicrophoneClosed):
        await mic.read()


async def test_close_ends_iteration():
    mic = Microphone()
    mic.attach_loop(asyncio.get_running_loop())

    async def closer():
        await asyncio.sleep(0.05)
        mic.close()

    task = asyncio.create_task(closer())
    chunks = [c async for c in mic]
    await task
    assert chunks == []
