"""The played signal as an echo reference, aligned with the microphone's timeline.

Echo handling needs, for every microphone chunk, the audio that was coming out of the speaker
while that chunk was captured. Both sides are timestamped on the monotonic clock:

* **microphone**: the `t_end` of each `MicFrame` (`Microphone.frames()`), the capture time of the
  chunk's last sample (from PortAudio's `inputBufferAdcTime`, or the file/null pacer);
* **speaker**: the playout side's `OutputTap` (agent/audio/activity.py, `Player.tap`) keeps the
  last seconds of what the callback handed to the device in a ring at the device rate (`pos`,
  `read()`), with the device output latency the callback reported (`latency`, PortAudio's
  `outputBufferDacTime - currentTime`) and, from the callback's own time, when its block's first
  sample is heard (`heard_offset`). Both callbacks' times come from the host's timestamps
  (agent/audio/hostclock.py), not from when Python ran them, which under load is late by a GIL
  wait of several ms.

`ClockMap` turns ring positions into "heard at" times. When the output publishes `heard_offset`
the map is the median of the last `EXACT_READINGS` of it: exact up to the latency's jitter, and a
step (an output underrun delays everything after it) shows at once. Otherwise (a source without
callback times), at any moment the newest position `W` was
written by a callback that ran at most one period ago and is heard `latency` after that call, so
`W / rate - now - latency` over-estimates the true offset by up to one device period; a low
percentile of it over a short window is the offset (observed just before the next callback),
robust to the jitter of the reported latency. A window rather than a running minimum follows
clock drift and device re-opens.

`ReferenceTap` then computes, per microphone chunk, the 16 kHz samples of the signal heard at
the chunk's capture times, `lead_s` later in the signal (the reference runs slightly *ahead* of
the echo, which is what a causal echo canceller needs even when a reported latency is a little
too large), interpolating the device-rate ring directly (`sinc_kernel`). The read position
advances continuously — a canceller's adaptive filter is ruined by a reference that jitters by a
few samples per chunk — and is only nudged (one frame per chunk) to follow a drift beyond
`SLIP_S`, or re-synchronised in one jump after a large change: at once when the exact map steps
by more than `JUMP_S` or the microphone's timeline jumps (chunks dropped behind a stalled
consumer), else when the smoothed error exceeds it.

Bounded: the ring belongs to the tap (a few seconds, preallocated); the tap keeps a 2-second
window of clock readings and per-chunk scratch arrays.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np

from agent.audio.activity import PlayedAudio

MIC_RATE = 16000
REF_LEAD_S = 0.03  # the reference runs this far ahead of the timestamps' estimate of the echo
# (AEC3 needs it a few ms ahead; 30 ms also covers an over-reported latency, and stays inside
# what the player has written: the device latency, 40 ms, plus the microphone's delivery delay)
TAPS = 16  # interpolation kernel of the resampling to 16 kHz (8 frames of look-ahead)
CUTOFF_HZ = 7200.0
CLOCK_WINDOW_S = 2.0  # ClockMap window: long enough to contain many "just before" readings
MAX_OBSERVATIONS = 200
OFFSET_PERCENTILE = 10.0
QUIET_READ_S = 0.0005  # a position/time pair read across a longer pause is discarded
JUMP_S = 0.012  # a smoothed alignment error beyond this re-synchronises in one jump
SETTLE_S = 0.002  # ... and beyond this while the clock map is still settling
SLIP_S = 0.004  # smaller smoothed errors are left alone (timestamp noise, not drift)
ERR_SMOOTHING = 0.02  # EMA weight of one chunk's alignment error (~2 s: timestamps jitter by ~ms)
SLIP_STEP = 1.0  # device frames per chunk by which drift is followed (≪ a canceller's tolerance)
EXACT_READINGS = 5  # offsets measured by the output callback: median of the last few readings


class ClockMap:
    """Maps reference-ring positions (device frames) to the monotonic time they are heard."""

    def __init__(self, window_s: float = CLOCK_WINDOW_S) -> None:
        self.window_s = window_s
        self._obs: deque[tuple[float, float]] = deque()  # (observed at, offset candidate)
        self._recent: deque[float] = deque(maxlen=EXACT_READINGS)  # offsets the output measured
        self._est: float | None = None
        self.exact = False  # the offset comes from the output callback's own timestamps

    def reset(self) -> None:
        self._obs.clear()
        self._recent.clear()
        self._est = None
        self.exact = False

    def observe(self, pos: int, rate: int, now: float, latency: float) -> None:
        """One reading of the newest ring position `pos`, taken at `now`."""
        # A low percentile rather than the minimum: the reported latency itself jitters by
        # milliseconds through a sound server, and the minimum would chase its outliers.
        self._add(now, pos / rate - now - latency, OFFSET_PERCENTILE)

    def observe_offset(self, offset: float) -> None:
        """One offset the output callback measured itself (`OutputTap.heard_offset`): exact up to
        the jitter of the reported latency, so no window is needed, only the median of the last
        few readings against an outlier. A step (an output underrun delays everything after it,
        a re-opened device) is followed within `EXACT_READINGS // 2 + 1` readings."""
        r = self._recent
        r.append(offset)
        self.exact = True
        self._est = float(sorted(r)[len(r) // 2])

    def _add(self, now: float, candidate: float, percentile: float) -> None:
        obs = self._obs
        obs.append((now, candidate))
        while obs[0][0] < now - self.window_s or len(obs) > MAX_OBSERVATIONS:
            obs.popleft()
        self._est = float(np.percentile([x for _, x in obs], percentile))

    @property
    def offset(self) -> float | None:
        """`position / rate - heard_at` in seconds, or None before the first observation."""
        return self._est

    def position_at(self, t: float, rate: int) -> float | None:
        """The (fractional) ring position heard at monotonic time `t`."""
        off = self._est
        return None if off is None else (t + off) * rate


def sinc_kernel(frac: np.ndarray, rate: int) -> np.ndarray:
    """Interpolation weights (len(frac) × `TAPS`) for reading a `rate` signal at fractional
    offsets `frac` ∈ [0, 1) after integer positions, low-passed below 16 kHz's Nyquist.

    A Hann-windowed sinc: linear and time-invariant up to the windowing (what an echo canceller
    needs — it learns any fixed filtering of its reference, but not a changing one), and only
    `TAPS / 2` frames of look-ahead. soxr, used elsewhere for playback, withholds hundreds of
    output samples at a time in streaming mode, which would smear this alignment.
    """
    k = np.arange(-TAPS // 2 + 1, TAPS // 2 + 1, dtype=np.float64)
    d = k[None, :] - frac[:, None]
    fc = min(CUTOFF_HZ, 0.45 * rate) / rate
    h = np.sinc(2.0 * fc * d) * (0.5 + 0.5 * np.cos(np.pi * d / (TAPS / 2 + 1)))
    return h / h.sum(axis=1, keepdims=True)


class ReferenceTap:
    """Per microphone chunk: the 16 kHz reference aligned with it (see the module docstring)."""

    def __init__(
        self,
        source: PlayedAudio,
        *,
        lead_s: float = REF_LEAD_S,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = CLOCK_WINDOW_S,
    ) -> None:
        self.source = source
        self.lead_s = lead_s
        self.clock = clock
        self.map = ClockMap(window_s)
        self.resyncs = 0  # jumps of the read position (diagnostics, tests)
        self.late_frames = 0  # reference frames wanted before the player had written them
        self.slipped_frames = 0  # device frames the read position was nudged to follow drift
        self.last_jump_ms = 0.0  # size of the latest re-synchronisation (+: the reference moved ahead)
        self._rate = 0
        self._last_pos = 0  # newest ring position seen: a smaller one means a new ring
        self._pos: float | None = None  # device position (fractional) of the next sample out
        self._err = 0.0  # smoothed alignment error, device frames
        self._t_end: float | None = None  # capture end of the previous (stamped) chunk
        self.mic_gaps = 0  # jumps of the microphone's timeline followed at once
        self._reset_at = clock()

    def _reset(self) -> None:
        self._t_end = None
        src = self.source
        self._rate = src.rate
        self._last_pos = 0
        self.map.reset()
        self._reset_at = self.clock()
        self._pos = None
        self._err = 0.0

    def observe(self) -> None:
        """Take one (position, time) reading of the tap's ring."""
        src = self.source
        if src.rate != self._rate or src.pos < self._last_pos:
            self._reset()  # the tap re-allocated its ring (a new device rate)
        t1 = self.clock()
        pos = src.pos
        latency = src.latency
        offset = src.heard_offset
        t2 = self.clock()
        self._last_pos = pos
        if offset is not None:
            self.map.observe_offset(offset)
        elif t2 - t1 <= QUIET_READ_S:
            self.map.observe(pos, self._rate, t1, latency)

    def chunk(self, n: int, t_end: float | None) -> np.ndarray:
        """The reference for the `n`-sample 16 kHz microphone chunk captured up to `t_end`."""
        self.observe()
        rate = self._rate
        gap = 0.0 if t_end is None or self._t_end is None else t_end - n / MIC_RATE - self._t_end
        self._t_end = t_end
        if t_end is None:
            t_end = self.clock()
        start = self.map.position_at(t_end - n / MIC_RATE + self.lead_s, rate)
        if start is None:
            return np.zeros(n, dtype=np.int16)
        if self._pos is None or abs(gap) > JUMP_S:
            # The microphone's timeline jumped (chunks dropped behind a stalled consumer, a
            # re-opened input): the continuous read position no longer applies; follow at once
            # instead of drifting towards it through the smoothing for up to a second.
            self.mic_gaps += self._pos is not None
            self._resync(start)
        else:
            self._err += ERR_SMOOTHING * (start - self._pos - self._err)
            # While the clock map settles (its window is not full yet) a clear error is
            # corrected at once; later only a large one is, and drift is followed in steps.
            settling = self.clock() - self._reset_at < self.map.window_s
            # With timestamps from the callbacks themselves, a jump of the alignment is real (the
            # output underran and everything after it is heard later, a device was re-opened):
            # the echo moved with it, so follow it at once (the map's median of the last readings
            # already ignores one odd callback), not through the smoothing.
            jumped = self.map.exact and abs(start - self._pos) > JUMP_S * rate
            if jumped or abs(self._err) > (SETTLE_S if settling else JUMP_S) * rate:
                self._resync(start)
            elif abs(self._err) > SLIP_S * rate:
                step = SLIP_STEP if self._err > 0 else -SLIP_STEP
                self._pos = (self._pos or 0.0) + step
                self._err -= step
                self.slipped_frames += 1
        return self._emit(n)

    @property
    def slipped_ms(self) -> float:
        """How far the read position has been nudged in all, in ms (drift, or jitter of the
        timestamps that the smoothing did not absorb)."""
        return self.slipped_frames * 1000.0 / self._rate if self._rate else 0.0

    def _resync(self, start: float) -> None:
        if self._pos is not None:
            self.last_jump_ms = (start - self._pos) * 1000.0 / self._rate
        self._pos = start
        self._err = 0.0
        self.resyncs += 1

    def _emit(self, n: int) -> np.ndarray:
        assert self._pos is not None
        step = self._rate / MIC_RATE
        p = self._pos + np.arange(n) * step
        self._pos += n * step
        base = np.floor(p)
        a = int(base[0]) - TAPS // 2 + 1
        frames = self._read(a, int(base[-1]) - a + TAPS).astype(np.float64)
        idx = (base - a).astype(np.int64)[:, None] + np.arange(TAPS)[None, :]
        y = np.sum(frames[idx] * sinc_kernel(p - base, self._rate), axis=1)
        return np.clip(np.round(y), -32768, 32767).astype(np.int16)

    def _read(self, pos: int, n: int) -> np.ndarray:
        """Device frames [pos, pos+n) of the ring; zeros for what is not (or no longer) there."""
        out = np.zeros(max(0, n), dtype=np.int16)
        if n <= 0:
            return out
        w = self.source.pos
        self.late_frames += max(0, pos + n - max(w, pos))
        if pos < w:
            self.source.read(pos, out)
        return out
