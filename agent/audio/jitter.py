"""The adaptive jitter target: how much audio to hold before a response starts playing.

Theory (reference/playout-buffering.md §1.6, §5.5): for one response with chunk arrivals `a_k`
and `S_k` seconds of audio received before chunk k, the *lateness* of chunk k is
`(a_k - a_0) - S_k`. A player that starts `H` seconds after the first chunk and then plays
without pause has no gap iff `H >= D* = max(0, max_k lateness_k)`.

Our player uses a *quantity* rule (SPEC §5.5: start once the buffered audio reaches the target,
or the response is complete). The quantity that would have been exactly enough for a response is
`Q* = S_j*` (plus a hair), where `j*` is the first chunk that arrived at or after `a_0 + D*`:
waiting for more than `S_j*` of audio means waiting for chunk `j*`, i.e. holding at least `D*`.
`Q*` is the statistic learned across responses (NetEq/Speex learn a delay quantile; PJSIP
adapts its prefetch with fast attack and slow decay):

* **raise at once** — `Q*` is updated online at every chunk; the moment the running `Q*` of the
  current response exceeds the target, the target jumps to it (this also raises the rebuffer
  threshold for the rest of the response, so a starved response does not stutter again);
* **lower slowly** — after a response that played without a gap, the target moves a quarter of
  the way down towards the largest `Q*` of the last few responses;
* always clamped to `[min_ms, max_ms]` from the config.

`Q*` only depends on audio up to `max_ms`, so the arrival log is bounded (and preallocated).
"""

from __future__ import annotations

from collections import deque

import numpy as np

# A quantity threshold equal to S_j* would already be met *before* chunk j* arrives; one extra
# millisecond makes the rule wait for chunk j* itself.
_EPS_MS = 1.0


class LatenessTracker:
    """Running D* and Q* (ms) of one response from its chunk arrivals. Producer-side only."""

    def __init__(self, max_ms: float, log_capacity: int = 2048) -> None:
        self.max_ms = float(max_ms)
        self._t = np.zeros(log_capacity, dtype=np.float64)  # arrival time relative to a_0 (ms)
        self._s = np.zeros(log_capacity, dtype=np.float64)  # audio received before it (ms)
        self._n = 0
        self._closed = False  # stopped logging: audio before the next chunk exceeds max_ms
        self._j = 0  # index of the first logged chunk arriving at or after a_0 + D*
        self._t0: float | None = None
        self.received_ms = 0.0
        self.d_star_ms = 0.0
        self.q_star_ms = 0.0
        # D* as the device sees it: audio goes out in blocks of `quantum_ms`, so the chunk that
        # starts at S_k is needed by the block holding S_k, i.e. floor(S_k / quantum) blocks
        # after the start (the StartHold learns this one; 0 = no quantisation).
        self.quantum_ms = 0.0
        self.hold_ms = 0.0
        self._speeds: deque[float] = deque(maxlen=16)
        self._last_rel = 0.0
        self._last_ms = 0.0

    def reset(self) -> None:
        self._n = 0
        self._closed = False
        self._j = 0
        self._t0 = None
        self.received_ms = 0.0
        self.d_star_ms = 0.0
        self.q_star_ms = 0.0
        self.hold_ms = 0.0
        self._speeds.clear()

    @property
    def slow_source(self) -> bool:
        """The source delivers slower than real time (median of the recent per-chunk rates).

        A median ignores single stalls: a fast source with one hiccup is not "slow". A slow
        source needs a deep rebuffer after a starvation (it will starve again otherwise); a
        fast one only needs to get going again.
        """
        if len(self._speeds) < 3:
            return False
        return sorted(self._speeds)[len(self._speeds) // 2] < 1.0

    @property
    def first_arrival(self) -> float | None:
        return self._t0

    def arrival(self, t: float, audio_ms: float) -> None:
        """Record a chunk of `audio_ms` arriving at monotonic time `t` (seconds)."""
        if self._t0 is None:
            self._t0 = t
        rel_ms = (t - self._t0) * 1000.0
        if self.received_ms > 0:
            dt = rel_ms - self._last_rel
            self._speeds.append(self._last_ms / dt if dt > 0 else float("inf"))
        self._last_rel = rel_ms
        self._last_ms = audio_ms
        lateness = rel_ms - self.received_ms
        if not self._closed:
            if self._n < self._t.shape[0] and self.received_ms <= self.max_ms:
                self._t[self._n] = rel_ms
                self._s[self._n] = self.received_ms
                self._n += 1
            else:
                self._closed = True
        if lateness > self.d_star_ms:
            self.d_star_ms = lateness
        q = self.quantum_ms
        held = rel_ms - ((self.received_ms + 1e-6) // q) * q if q > 0 else lateness
        if held > self.hold_ms:
            self.hold_ms = held
        # Advance j* (monotone: D* only grows, arrival times only grow).
        while self._j < self._n and self._t[self._j] < self.d_star_ms:
            self._j += 1
        if self._j < self._n:
            s = float(self._s[self._j])
            self.q_star_ms = min(self.max_ms, s + _EPS_MS) if s > 0 else 0.0
        else:
            self.q_star_ms = self.max_ms  # the needed hold lies beyond what we log: saturate
        self.received_ms += audio_ms


class AdaptiveTarget:
    """Fast-attack / slow-decay prebuffer target in milliseconds, clamped to [min_ms, max_ms]."""

    def __init__(
        self,
        initial_ms: float,
        min_ms: float,
        max_ms: float,
        *,
        window: int = 5,
        decay: float = 0.25,
    ) -> None:
        if not 0 <= min_ms <= max_ms or max_ms <= 0:
            raise ValueError("need 0 <= min_ms <= max_ms and max_ms > 0")
        self.min_ms = float(min_ms)
        self.max_ms = float(max_ms)
        self.value_ms = self._clamp(initial_ms)
        self.decay = decay
        self._recent: deque[float] = deque(maxlen=window)

    def _clamp(self, v: float) -> float:
        return min(self.max_ms, max(self.min_ms, float(v)))

    def observe(self, running_q_star_ms: float) -> bool:
        """Raise at once if the current response needs more than the target. True if raised."""
        want = self._clamp(running_q_star_ms)
        if want > self.value_ms:
            self.value_ms = want
            return True
        return False

    def response_done(self, q_star_ms: float, had_gap: bool) -> None:
        """Fold a finished response into the history; lower slowly after a clean response."""
        self._recent.append(self._clamp(q_star_ms))
        self.observe(q_star_ms)
        if had_gap:
            return
        goal = max(self._recent)
        if goal < self.value_ms:
            step = (self.value_ms - goal) * self.decay
            self.value_ms = goal if step < 0.5 else self.value_ms - step
