"""The one published "is the assistant audible?" signal, and the tap of what was played.

Both are written by the playout side only and read by everyone else (echo filters, uplink,
modes, status), so "audible / quiet" has one definition:

* `PlayoutActivity` — *speaking* while a sample handed to the device is still to be heard,
  then *tail* for `tail_s` (room reverberation + input latency + one chunk), then *quiet*.
  Separately it is *busy* while a response is queued, prebuffering, rebuffering or audible.
* `OutputTap` — the last seconds of what the callback handed to the device (the echo
  reference), with the device latency it reported.

The device callback writes them: plain int/float stores and an in-place ring copy, no lock, no
logging, no allocation of sample buffers. Under CPython each store is atomic and keeps program
order, so readers on the asyncio thread see consistent values without locking. Readers pass
`now` explicitly (their own clock), which keeps the reads pure and testable on a virtual clock.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

import numpy as np

from agent.audio.ring import SampleRing

TAIL_S = 0.3  # after the last audible sample: room reverberation + input latency + one chunk
SAFE_MARGIN_MS = 1000.0  # of the tap's ring the callback may be overwriting: never read


class Activity(IntEnum):
    QUIET = 0
    TAIL = 1
    SPEAKING = 2


class OutputActivity(Protocol):
    """What readers of the output activity may use (the `PlayoutActivity` read API)."""

    @property
    def audible_until(self) -> float: ...

    @property
    def tail_s(self) -> float: ...

    def speaking(self, now: float) -> bool: ...

    def busy(self, now: float) -> bool: ...

    def state(self, now: float) -> Activity: ...

    def quiet_since(self, now: float) -> float | None: ...

    def quiet_for(self, s: float, now: float) -> bool: ...


class PlayoutActivity:
    """Speaking / tail / quiet of the speaker, with timestamps (monotonic seconds).

    Writers: the callback sets `audible_until` (when the last sample it handed over is heard:
    callback time + device latency + the block) and `finished` (responses done at the output);
    the producer sets `begun` (responses queued). Nobody else writes.
    """

    __slots__ = ("audible_until", "begun", "finished", "tail_s")

    def __init__(self, tail_s: float = TAIL_S) -> None:
        self.tail_s = tail_s
        self.audible_until = float("-inf")
        self.begun = 0
        self.finished = 0

    def reset(self) -> None:
        """Nothing queued, nothing played (the player re-allocated for a new device rate)."""
        self.audible_until = float("-inf")
        self.begun = 0
        self.finished = 0

    def speaking(self, now: float) -> bool:
        """A sample already handed to the device is still to be heard at `now`."""
        return now < self.audible_until

    def busy(self, now: float) -> bool:
        """A response is queued, prebuffering, playing or rebuffering, or audio is audible."""
        return self.finished < self.begun or now < self.audible_until

    def state(self, now: float) -> Activity:
        until = self.audible_until
        if now < until:
            return Activity.SPEAKING
        if now < until + self.tail_s:
            return Activity.TAIL
        return Activity.QUIET

    def quiet_since(self, now: float) -> float | None:
        """When the speaker last went silent (its last sample was heard), None while it is
        speaking or if it never played."""
        until = self.audible_until
        if now < until or until == float("-inf"):
            return None
        return until

    def quiet_for(self, s: float, now: float) -> bool:
        """Not busy, and nothing audible for at least `s` seconds before `now`."""
        return not self.busy(now) and now - self.audible_until >= s


class PlayedAudio(Protocol):
    """What the echo reference reads: `OutputTap`'s read API."""

    @property
    def pos(self) -> int: ...

    @property
    def rate(self) -> int: ...

    @property
    def latency(self) -> float: ...

    @property
    def heard_offset(self) -> float | None: ...

    def read(self, pos: int, out: np.ndarray) -> int: ...


class OutputTap:
    """The last `reference_ms` of what was handed to the device, by absolute frame position.

    The callback's render wrapper calls `write()` once per block with the block it filled;
    consumers read by absolute position (`pos`, `read()`) for a gap-free stream, or "the last ms"
    (`last()`) for a one-off look. A safety margin of the ring is never read, so a read never
    races the callback's writes.
    """

    def __init__(self, rate: int, reference_ms: float = 2000.0) -> None:
        self.reference_ms = reference_ms
        self.latency = 0.0  # device output latency (s) the latest callback reported
        # position / rate − the time that position is heard (s), from the latest callback's own
        # time and latency: one float store, so a reader never sees half of an update
        self.heard_offset: float | None = None
        self.configure(rate)

    def configure(self, rate: int) -> None:
        """A new ring at a new device rate; its positions restart at 0. Not while a callback runs."""
        self.rate = int(rate)
        self._ring = SampleRing(int((self.reference_ms + SAFE_MARGIN_MS) * self.rate / 1000))
        self._margin = self._frames(SAFE_MARGIN_MS)
        self.heard_offset = None

    def _frames(self, ms: float) -> int:
        return int(round(ms * self.rate / 1000.0))

    def write(self, block: np.ndarray, latency: float, now: float | None = None) -> None:
        """Callback side: append the block just handed to the device (allocation-free); `now` =
        the time of the callback, whose first sample is heard `latency` later."""
        if now is not None:
            self.heard_offset = self._ring.write_pos / self.rate - (now + latency)
        self.latency = latency
        self._ring.write_overwrite(block)

    @property
    def pos(self) -> int:
        """Absolute device-frame count handed to the device so far (end of the ring)."""
        return self._ring.write_pos

    def read(self, pos: int, out: np.ndarray) -> int:
        """Copy frames [pos, pos + len(out)) into `out`. Frames not in the ring — not yet
        played, or older than its safe reach (`reference_ms`) — come out as zeros. Returns how
        many frames were really available."""
        ring = self._ring
        n = out.shape[0]
        w = ring.write_pos
        lo = max(pos, w - (ring.capacity - self._margin))
        hi = min(pos + n, w)
        out[:n] = 0
        if hi <= lo:
            return 0
        ring.copy_out(out[lo - pos : hi - pos], lo, hi - lo)
        return hi - lo

    def last(self, ms: float, out: np.ndarray | None = None) -> np.ndarray:
        """The last `ms` of audio handed to the device (device rate)."""
        ring = self._ring
        n = min(self._frames(ms), ring.capacity - self._margin)
        dst = np.zeros(n, dtype=np.int16) if out is None else out[:n]
        have = min(n, ring.write_pos)
        if have < n:
            dst[: n - have] = 0
        if have:
            ring.copy_out(dst[n - have :], ring.write_pos - have, have)
        return dst


class PlayedOutput(Protocol):
    """The playout side as its readers see it (the `Player` satisfies it)."""

    @property
    def activity(self) -> OutputActivity: ...

    @property
    def tap(self) -> PlayedAudio: ...
