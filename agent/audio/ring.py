"""Preallocated int16 ring buffers shared between an asyncio thread and an audio callback thread.

Why positions are absolute frame counters: the producer owns `write_pos`, the consumer owns
`read_pos`, both only ever grow, and each side only *reads* the other's counter. A Python int
store is atomic under the GIL, so this single-producer/single-consumer scheme needs no lock, and
`write_pos - read_pos` is always the exact fill level (no "full vs empty" ambiguity). Python ints
do not overflow, so a ten-year uptime is fine.

Why copies go through `np.copyto` into slices of one preallocated array: the audio callback must
not allocate sample buffers (PortAudio's thread must never wait on malloc or the garbage
collector). A slice creates only a small view object; no sample data is ever allocated after
construction.
"""

from __future__ import annotations

import numpy as np


class SampleRing:
    """A fixed-capacity mono int16 ring with absolute read/write positions.

    Two usage modes:

    * **bounded** (player): the producer calls `write()`, which never overwrites unread frames
      and returns how many frames fitted; the consumer copies with `copy_out()` and advances
      `read_pos`.
    * **overwrite** (microphone, echo reference): the producer calls `write_overwrite()`, which
      always succeeds and lets old frames be overwritten; the consumer detects that it was
      lapped by comparing positions and re-checks after copying (see `Microphone`).
    """

    __slots__ = ("buf", "capacity", "read_pos", "write_pos")

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("ring capacity must be positive")
        self.capacity = int(capacity)
        self.buf = np.zeros(self.capacity, dtype=np.int16)
        self.read_pos = 0
        self.write_pos = 0

    # -- either side -----------------------------------------------------------------------

    def available(self) -> int:
        """Frames written but not yet consumed (may exceed capacity in overwrite mode)."""
        return self.write_pos - self.read_pos

    def free(self) -> int:
        """Frames the producer may still write in bounded mode."""
        return self.capacity - (self.write_pos - self.read_pos)

    def copy_out(self, out: np.ndarray, pos: int, n: int) -> None:
        """Copy `n` frames starting at absolute position `pos` into `out[:n]` (no allocation)."""
        cap = self.capacity
        i = pos % cap
        first = cap - i
        if first >= n:
            np.copyto(out[:n], self.buf[i : i + n])
        else:
            np.copyto(out[:first], self.buf[i:])
            np.copyto(out[first:n], self.buf[: n - first])

    # -- producer ----------------------------------------------------------------------------

    def write(self, data: np.ndarray) -> int:
        """Append as much of `data` as fits without overwriting unread frames; return the count."""
        n = min(int(data.shape[0]), self.free())
        if n > 0:
            self._store(data, n)
            self.write_pos += n  # publish only after the samples are in place
        return n

    def write_overwrite(self, data: np.ndarray) -> None:
        """Append all of `data`, overwriting the oldest frames if needed (never blocks, never fails)."""
        n = int(data.shape[0])
        if n > self.capacity:
            # Only the newest `capacity` frames can survive; skip the rest but keep the timeline.
            skip = n - self.capacity
            self.write_pos += skip
            data = data[skip:]
            n = self.capacity
        self._store(data, n)
        self.write_pos += n

    def _store(self, data: np.ndarray, n: int) -> None:
        cap = self.capacity
        i = self.write_pos % cap
        first = cap - i
        if first >= n:
            np.copyto(self.buf[i : i + n], data[:n], casting="unsafe")
        else:
            np.copyto(self.buf[i:], data[:first], casting="unsafe")
            np.copyto(self.buf[: n - first], data[first:n], casting="unsafe")
