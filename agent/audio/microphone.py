"""The microphone: device callback → bounded ring → asyncio consumer in 16 kHz chunks.

The callback (`capture()`) only copies the block into a preallocated overwrite-ring and, at most
once per chunk, wakes the loop. Everything else — resampling, chunking, bytes — happens in the
consumer on the event loop.

How the callback wakes the loop (reference/playout-buffering.md §3): `loop.call_soon_threadsafe`
allocates a small handle and writes one byte to the loop's self-pipe, so calling it on every
block would be wasteful. Polling from the loop instead (sleep one chunk, look) adds up to a chunk
of latency and wakes the loop even when nobody reads. We *arm* the wakeup: the consumer sets
`_armed` just before it awaits, the callback clears it and calls `call_soon_threadsafe` only when
a whole chunk has become available. That is at most one wakeup per chunk (25/s at 40 ms), only
while someone is waiting, with a non-blocking syscall and no lock held. The consumer re-checks the
ring after arming, so a block landing between its check and its arming is never lost; a 0.5 s
timer is a belt-and-braces guard against a missed wakeup.

Bounded: the ring is written in overwrite mode. When the consumer lags more than `backlog_ms`,
it skips the oldest audio in whole chunks and counts them (`dropped_chunks`); audio never piles
up. If the callback laps the consumer while it is copying, the copy is detected as torn (the
write position moved more than the ring capacity past the copied span) and discarded.

Each chunk comes with the capture time of its last sample: `frames()` / `read_frame()` yield
`MicFrame(pcm, t_end)` together, which is what echo handling needs; plain bytes iteration and
`read()` serve readers that need only the audio.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from agent.audio.resample import StreamResampler
from agent.audio.ring import SampleRing

MIC_RATE = 16000  # what DashScope expects upstream (SPEC §5.3)


class MicrophoneClosed(Exception):
    """The microphone was closed (engine stopped)."""


class MicFrame(NamedTuple):
    """One 16 kHz chunk and the monotonic capture time of its last sample."""

    pcm: bytes
    t_end: float


@dataclass
class MicStats:
    chunks: int
    dropped_chunks: int  # oldest audio skipped because the consumer lagged
    overflows: int  # the driver's input_overflow flags
    heartbeat: int
    muted: bool
    device_rate: int


class Microphone:
    """16 kHz mono int16 chunks of `chunk_ms` from whatever rate the device runs at."""

    def __init__(
        self,
        chunk_ms: int = 40,
        *,
        device_rate: int = MIC_RATE,
        backlog_ms: float = 1000.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chunk_ms = int(chunk_ms)
        self.rate = MIC_RATE
        self.chunk_frames = MIC_RATE * self.chunk_ms // 1000
        self.chunk_bytes = self.chunk_frames * 2
        self._backlog_ms = backlog_ms
        self._clock = clock
        self.muted = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._armed = False
        self.chunks = 0
        self.dropped_chunks = 0
        self.overflows = 0
        self.heartbeat = 0
        self._configure(device_rate)

    def _configure(self, device_rate: int) -> None:
        self.device_rate = int(device_rate)
        r = self.device_rate
        self._backlog = int(self._backlog_ms * r / 1000)
        self._ring = SampleRing(2 * self._backlog + r // 10)
        self._dev_chunk = max(1, math.ceil(self.chunk_frames * r / MIC_RATE))
        self._tmp = np.zeros(self._backlog + self._dev_chunk, dtype=np.int16)
        self._r = 0  # consumer position in device frames
        self._pending = bytearray()  # 16 kHz bytes not yet handed out (< one chunk + resampler burst)
        self._pending_end_pos = 0  # device position the pending bytes end at
        self._resampler = StreamResampler(r, MIC_RATE)
        self._t_last = 0.0
        self._w_at_t = 0

    def set_device_rate(self, device_rate: int) -> None:
        """Switch device rate (only while no input stream runs); drops buffered audio."""
        if int(device_rate) != self.device_rate:
            self._configure(device_rate)

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._loop = loop

    # ------------------------------------------------------------------ callback side

    def capture(self, data: np.ndarray, t_end: float, overflow: bool = False) -> None:
        """Device callback: `data` is one block (1-D int16); `t_end` = capture time of its end."""
        self.heartbeat += 1
        if overflow:
            self.overflows += 1
        ring = self._ring
        ring.write_overwrite(data)
        self._t_last = t_end
        self._w_at_t = ring.write_pos
        if self._armed and ring.write_pos - self._r >= self._dev_chunk:
            self._armed = False
            loop = self._loop
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(self._wake_waiter)
                except RuntimeError:  # loop closed during shutdown
                    pass

    # ------------------------------------------------------------------ consumer side

    def _pull(self) -> None:
        """Move device frames from the ring through the resampler into `_pending`."""
        ring = self._ring
        while len(self._pending) < self.chunk_bytes:
            w = ring.write_pos
            lag = w - self._r
            if lag > self._backlog:
                skip = math.ceil((lag - self._backlog) / self._dev_chunk)
                self._r += skip * self._dev_chunk
                self.dropped_chunks += skip
                self._resampler.reset()
                lag = w - self._r
            if lag <= 0:
                return
            n = min(lag, self._tmp.shape[0])
            ring.copy_out(self._tmp, self._r, n)
            if ring.write_pos - self._r > ring.capacity:  # lapped while copying: torn
                continue  # the lag check above skips ahead
            self._r += n
            out = self._resampler.process(self._tmp[:n])
            self._pending += out.tobytes()
            self._pending_end_pos = self._r

    def read_nowait(self) -> bytes | None:
        """The next chunk if one is complete, else None."""
        frame = self.read_frame_nowait()
        return None if frame is None else frame.pcm

    def read_frame_nowait(self) -> MicFrame | None:
        """The next chunk with its capture end time if one is complete, else None."""
        if len(self._pending) < self.chunk_bytes:
            self._pull()
        if len(self._pending) < self.chunk_bytes:
            return None
        chunk = bytes(self._pending[: self.chunk_bytes])
        del self._pending[: self.chunk_bytes]
        self.chunks += 1
        # Capture time of the chunk's last sample, from the callback's latest (time, position).
        behind_dev = (self._w_at_t - self._pending_end_pos) + len(self._pending) // 2 * self.device_rate / MIC_RATE
        t_end = self._t_last - behind_dev / self.device_rate
        if self.muted:
            return MicFrame(bytes(self.chunk_bytes), t_end)
        return MicFrame(chunk, t_end)

    def _ready(self) -> bool:
        return len(self._pending) >= self.chunk_bytes or self._ring.write_pos - self._r >= self._dev_chunk

    def _wake_waiter(self) -> None:
        fut = self._waiter
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def read(self) -> bytes:
        """Wait for the next 16 kHz chunk (`chunk_ms` of int16 little-endian mono bytes)."""
        return (await self.read_frame()).pcm

    async def read_frame(self) -> MicFrame:
        """Wait for the next 16 kHz chunk and the capture time of its last sample.

        While muted the chunks keep coming (the device keeps running, the timeline stays
        intact) but contain digital silence, so muted audio never leaves this object.
        """
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        while True:
            if self._closed:
                raise MicrophoneClosed()
            frame = self.read_frame_nowait()
            if frame is not None:
                return frame
            fut = loop.create_future()
            self._waiter = fut
            self._armed = True
            if self._ready() or self._closed:  # a block landed between the check and arming
                self._armed = False
                self._waiter = None
                continue
            guard = loop.call_later(0.5, self._wake_waiter)
            try:
                await fut
            finally:
                guard.cancel()
                self._armed = False
                self._waiter = None

    def __aiter__(self) -> Microphone:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.read()
        except MicrophoneClosed:
            raise StopAsyncIteration from None

    async def frames(self) -> AsyncIterator[MicFrame]:
        """`MicFrame`s until the microphone is closed."""
        while True:
            try:
                frame = await self.read_frame()
            except MicrophoneClosed:
                return
            yield frame

    def close(self) -> None:
        """Wake and end any reader (`read()` raises MicrophoneClosed, iteration stops)."""
        self._closed = True
        self._wake_waiter()

    def reopen(self) -> None:
        self._closed = False

    def stats(self) -> MicStats:
        return MicStats(
            chunks=self.chunks,
            dropped_chunks=self.dropped_chunks,
            overflows=self.overflows,
            heartbeat=self.heartbeat,
            muted=self.muted,
            device_rate=self.device_rate,
        )
