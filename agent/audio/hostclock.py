"""Capture times on `time.monotonic()` from the audio host's own timestamps.

The echo reference (agent/echo/reference.py) lines the microphone up with the speaker by the
capture time of each block. A callback's own `time.monotonic()` is *when the Python callback
ran*, which is later than when the host API took its timestamps by however long the callback
waited — under CPU load mostly for the GIL while the event loop works. Measured through
PulseAudio on a 2-core machine (`docs/echo.md`, "Under CPU load"): 0.1 ms idle, but with a busy
event loop p50 5.4 ms, p99 11 ms, max 19 ms. Subtracting the host's buffer age from that late
`now` stamps every block late by the wait, a jitter that follows the load and that the echo
reference reads as clock drift.

PortAudio's timestamps (`currentTime`, `inputBufferAdcTime`) come from the host's clock at the
moment it prepared the callback (CLOCK_REALTIME for ALSA on Linux), not when Python ran it.
`HostClock` maps them onto the monotonic clock with the offset seen by the *least delayed*
callback of the last one to two windows: `min(monotonic_now - host_now)`. A callback is never
early, so that minimum is the true offset plus the shortest wait (≈ 0.1 ms). Two alternating
window minima make it O(1) and allocation-free (callback-safe); a step of the host's clock (NTP)
is followed within two windows, a backward step larger than `STEP_S` at once.
"""

from __future__ import annotations

WINDOW_S = 1.0  # each of the two minima spans this much: the offset is the min over 1–2 s
STEP_S = 0.5  # a callback this much "later" than the offset is a step of the host's clock


class HostClock:
    """Maps host-API stream times to `time.monotonic()`; see the module docstring."""

    __slots__ = ("_cur", "_prev", "_since", "window_s")

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._cur = float("inf")  # min of (monotonic - host) in the current window
        self._prev = float("inf")  # ... in the previous one
        self._since = float("-inf")  # monotonic start of the current window

    def offset(self, host_now: float, mono_now: float) -> float:
        """Record one callback (`host_now` = the host's time of it, `mono_now` = monotonic time
        the callback ran) and return the monotonic − host offset."""
        d = mono_now - host_now
        if mono_now - self._since >= self.window_s:
            self._prev = self._cur
            self._cur = float("inf")
            self._since = mono_now
        if d - min(self._cur, self._prev) > STEP_S:  # the host's clock stepped back
            self._cur = self._prev = float("inf")
            self._since = mono_now
        if d < self._cur:
            self._cur = d
        return min(self._cur, self._prev)

    def to_monotonic(self, mono_now: float, host_now: float) -> float:
        """The monotonic time of a callback the host stamped `host_now` (the callback ran at
        `mono_now`, possibly later); `mono_now` for hosts that report no time."""
        return mono_now if host_now <= 0.0 else host_now + self.offset(host_now, mono_now)

    def capture_end(
        self, mono_now: float, host_now: float, adc_time: float, frames: int, rate: int
    ) -> float:
        """Monotonic capture time of the end of an input block of `frames` at `rate` whose first
        sample the host stamped `adc_time` (PortAudio `inputBufferAdcTime`). Hosts that report
        no usable times (zeros, or an age outside [0, 2 s)) fall back to the callback's time."""
        age = host_now - adc_time
        if host_now <= 0.0 or not 0.0 <= age < 2.0:
            return mono_now  # the block just arrived: its end was captured about now
        return adc_time + self.offset(host_now, mono_now) + frames / rate
