"""When to start a response: a forecast of its lateness, learned from the session's answers.

The D*-max hold (hold.py) learns one number per response and holds the largest recent one on
every response. That number mixes how late the source can be with how much *that* response had
buffered when it was late, so a response that is well ahead still waits and one that is behind
when a stall hits still gaps. The forecast separates them (docs/audio.md, "Start forecast").

Chunk k arrives `t_k` ms after the first one and starts at audio position `S_k`; its block-
quantised lateness is `L_k = t_k - floor(S_k / q) * q` (q = the device block; starting `H`
after the first chunk is gap-free iff `H >= max L_k`). After chunk m, with `P` ms received,
the response stands at `R = t_m - floor(P / q) * q`, and at its own pace (this chunk's length
over the median of its last three delivery rates) the next chunk is due `g` later. Then

    need = max(max_{k<=m} L_k,  R + g + max_{P' >= P} [E(P') + (P' - P)(1/r - 1)])

* `E(P')`: how much later than its pace a chunk came after position P' in the last `window`
  responses — jitter, and for a slow source the lateness that piles up to its end — and, for
  stalls, a model that learns their places (grouped, widened by their spread and by a chunk)
  and their sizes (longest + spread, over SIZE_MEMORY responses) apart; a group's stall is
  expected once per response (_learn_stalls);
* `(P' - P)(1/r - 1)`: what lies ahead is reached after more audio, which at this response's
  rate r builds buffer (r > 1) or eats it (r < 1);
* a length hint (`expect()`, pipeline mode: tts/duration.py) or, without one, the longest
  recent answer (twice it after only one) adds a slow source's drift up to the end of the
  answer;
* after one answer that stalled, the first answer's prior (`prior_ms`) is a floor: one stall
  shows no spread of places or sizes.

Nothing is clairvoyant: only finished responses feed E, and a response's own arrivals raise
its need at once. Memory is fixed: `window` × BINS and SIZE_MEMORY × BINS arrays and one
per-response log of at most `log_capacity` chunks up to the last bin. Producer side only
(never the audio callback); learning runs when the next response begins, not in a flush.
"""

from __future__ import annotations

import math

import numpy as np

BIN_MS = 20.0  # profile resolution over audio position
BINS = 200  # positions 0–4 s; later positions share the last bin
_EDGES = np.arange(BINS) * BIN_MS
STALL_MS = 30.0  # a chunk this much later than its pace is a stall (jitter stays below)
SIZE_MEMORY = 32  # responses whose stall sizes are remembered (places: the last `window`)
_NONE = -math.inf
TRUST_AFTER = 2  # answers of history before a stall seen may let a start go below the prior


class StartForecast:
    """Per-response start need (ms after the first chunk) from the session's recent responses."""

    def __init__(self, *, window: int = 8, log_capacity: int = 512, prior_ms: float = 0.0) -> None:
        self.window = window
        self._profiles = np.full((window, BINS), _NONE)
        self._count = 0  # profiles stored so far (the ring index is count % window)
        self._envelope = np.full(BINS, _NONE)
        self._history_rates = np.full(window, np.inf)
        self._lengths = np.zeros(window)  # audio ms each recent response brought
        self._length_guess = 0.0  # how long the next answer may be (see _fold)
        self._jitter = np.zeros(SIZE_MEMORY)  # each response's largest lateness short of a stall
        self._stall_size = np.full((SIZE_MEMORY, BINS), _NONE)  # each response's stalls by place
        self._stall_top = np.full(BINS, _NONE)  # the stall that may come at each position
        self._chunk_ms = 0.0  # median chunk length of the latest response
        self._group = np.full(BINS, -1, dtype=np.int64)  # which stall group covers each bin
        self._spent = np.zeros(BINS, dtype=bool)  # groups whose stall this response has had
        self._expect = np.full(BINS, _NONE)  # max(envelope, stall_top): what arrival() reads
        self._prior_rate = 1.0  # the slowest recent response's rate (real time before any)
        self._t = np.zeros(log_capacity)  # arrival of each logged chunk (ms after the first)
        self._s = np.zeros(log_capacity)  # audio position where it starts (ms)
        self._z = np.zeros(log_capacity)  # its duration (ms)
        self._g = np.zeros(log_capacity)  # the pace gap expected after it (ms, see _pace)
        self._rates = [0.0, 0.0, 0.0]  # the last three per-chunk delivery rates
        self._last_t = 0.0
        self._last_z = 0.0
        self._last_g = 0.0
        self._n = 0
        self._q = 0.0
        self._open = False
        self._unfolded = False  # closed but not yet folded into the history
        self.received_ms = 0.0
        self.own_ms = 0.0  # running max lateness of the current response (quantised)
        self.hint_ms = 0.0  # expected length of the current response (0 = unknown)
        self._pending_hint = ("", 0.0)
        self.prior_ms = prior_ms  # the first answer's hold: a floor while one stall is all we know

    # ------------------------------------------------------------------ history

    @property
    def has_history(self) -> bool:
        """True once a response with audio has been folded in: before that the prior rules."""
        self._fold()
        return self._count > 0

    def _lq(self, t: float, s: float) -> float:
        q = self._q
        return t - ((s + 1e-6) // q) * q if q > 0 else t - s

    def close(self) -> None:
        """The current response gets no more audio (ended, flushed or superseded): its profile
        joins the history before the next response. Idempotent; without audio it adds nothing."""
        if self._open:
            self._open = False
            self._unfolded = True

    def _fold(self) -> None:
        """Fold the closed response into the history (deferred from close(), which a flush
        calls: a barge-in should not pay for learning)."""
        if not self._unfolded:
            return
        self._unfolded = False
        n = self._n
        if n == 0:
            return
        t, pos, g = self._t[:n], self._s[:n] + self._z[:n], self._g[:n]
        # The stall after chunk m: how much later than its pace the next chunk came.
        prof = np.full(BINS, _NONE)
        row = self._stall_size[self._count % SIZE_MEMORY]
        row[:] = _NONE
        self._jitter[self._count % SIZE_MEMORY] = 0.0
        if n > 1:
            g = g.copy()
            if t[-1] > 0:  # the first chunk's pace at this response's own overall rate
                g[0] = self._z[0] * t[-1] / (pos[-1] - self._z[n - 1])
            excess = np.diff(t) - g[:-1]
            bins = np.minimum((pos[:-1] // BIN_MS).astype(np.int64), BINS - 1)
            np.maximum.at(prof, bins, excess)
            stalls = excess >= STALL_MS
            np.maximum.at(row, bins[stalls], excess[stalls])
            calm = excess[~stalls]
            self._jitter[self._count % SIZE_MEMORY] = max(0.0, float(calm.max())) if calm.size else 0.0
        # Its overall rate: the next response's prior until that one's rate is measured.
        self._history_rates[self._count % self.window] = (
            (pos[-1] - self._z[n - 1]) / t[-1] if n > 1 and t[-1] > 0 else np.inf)
        self._profiles[self._count % self.window] = prof
        self._lengths[self._count % self.window] = self.received_ms
        self._count += 1
        k = min(self._count, self.window)
        np.max(self._profiles[:k], axis=0, out=self._envelope)
        self._chunk_ms = float(np.median(self._z[:n]))
        self._learn_stalls(k)
        self._prior_rate = float(np.min(self._history_rates[: min(self._count, self.window)]))
        # How long the next answer may be (a slow source's drift runs to its end): the longest
        # recent one; with only one seen, twice it (the scale estimate of a uniform range's
        # upper end, as for stall places). Adding the spread of lengths too was measured: +41 ms
        # start p50 on slow for no gap fewer (bench/RESULTS.md §8).
        seen = self._lengths[: min(self._count, self.window)]
        seen = seen[seen > 0]
        self._length_guess = float(seen.max()) * (2.0 if seen.size == 1 else 1.0) if seen.size else 0.0

    def _learn_stalls(self, k: int) -> None:
        """Where the next stall may come and how long it may be, from the recent ones.

        Places and sizes are learned apart. Places: the stalls of the last `window` responses,
        grouped where they lie within a factor 2 of each other (an early hiccup and a late
        long stall are different things); a group's range is widened on both sides by the
        spread of its places (the unbiased estimate of a uniform range's ends), so a stall
        seen after the 3rd, 4th and 5th delta may come after the 2nd or 6th; before a spread
        is measured a scale prior widens it downwards by lo / (n + 1) (a place seen once may
        come half as far in), which gives way to the spread as places accumulate. Sizes: the
        longest stall per response in that range over the last SIZE_MEMORY responses, plus
        their spread (the next one is as likely as any to be the longest so far), plus the
        typical largest calm jitter of a response (a stall is measured over its chunk's pace,
        and that chunk's jitter rides on it). A source that repeats itself exactly (no jitter) is still held exactly
        its D* once the chunk before the stall has come (tests/audio/test_forecast.py).
        """
        top_at = self._stall_top
        top_at[:] = _NONE
        self._group[:] = -1
        m = min(self._count, SIZE_MEMORY)
        sizes = self._stall_size[:m]
        recent = sizes[(self._count - 1 - np.arange(m)) % SIZE_MEMORY < k]
        places = np.flatnonzero((recent > _NONE).any(axis=0))
        start = 0
        for j in range(1, places.size + 1):
            if j < places.size and places[j] <= 2 * places[j - 1] + 1:
                continue
            lo, hi = int(places[start]), int(places[j - 1])
            start = j
            # The range is the places of the group's long stalls (at least half its longest):
            # a short one that chains the group together (a 30 ms hiccup at 1.6 s between a
            # 0.2 s stall at 0.4 s and a 1 s one at 3 s) must not bring the long stall with it.
            seg = recent[:, lo : hi + 1]
            long_ = seg >= seg.max() / 2
            firsts = [int(np.flatnonzero(row)[0]) for row in long_ if row.any()]
            lo, hi = lo + min(firsts), lo + int(np.flatnonzero(long_.any(axis=0))[-1])
            widen = (max(firsts) - min(firsts)) / (len(firsts) - 1) if len(firsts) > 1 else 0.0
            # Before the spread is measured, a scale prior: a place seen n times may come
            # lo / (n + 1) earlier (half as far with one sample), giving way to the spread.
            lo = max(0, int(lo - max(widen, lo / (len(firsts) + 1))))
            # Later too by a chunk: a stall "after the k-th delta" ends up at a later position
            # when the deltas before it are longer.
            hi = min(BINS - 1, int(math.ceil(hi + max(widen, self._chunk_ms / BIN_MS))))
            longest = sizes[:, lo : hi + 1].max(axis=1)
            longest = longest[longest > _NONE]
            spread = (longest.max() - longest.min()) / (longest.size - 1) if longest.size > 1 else 0.0
            # A stall's size is measured over its chunk's pace, so the jitter of that chunk rides
            # on it: the next one may be the longest plus a response's typical largest calm
            # jitter (the median of them; their maximum cost 2 ms p50, 10 ms p95 more, no gap fewer).
            top = float(longest.max() + spread + float(np.median(self._jitter[:m])))
            np.maximum(top_at[lo : hi + 1], top, out=top_at[lo : hi + 1])
            self._group[lo : hi + 1] = j
        np.maximum(self._envelope, top_at, out=self._expect)

    # ------------------------------------------------------------------ current response

    def begin(self, response_id: str = "") -> None:
        self.close()
        self._fold()
        self._open = True
        self._n = 0
        self._rates[:] = (0.0, 0.0, 0.0)
        self._spent[:] = False
        self.received_ms = 0.0
        self.own_ms = 0.0
        rid, ms = self._pending_hint
        self.hint_ms = ms if rid == response_id else 0.0

    def expect(self, response_id: str, seconds: float, current: str | None) -> None:
        """A length hint for `response_id` (it may not have begun yet). Only ever raised."""
        ms = max(0.0, float(seconds) * 1000.0)
        if response_id == current and self._open:
            self.hint_ms = max(self.hint_ms, ms)
        else:
            old = self._pending_hint
            self._pending_hint = (response_id, max(ms, old[1]) if old[0] == response_id else ms)

    def _pace(self, audio_ms: float) -> float:
        """When the next chunk is due at this response's own pace: this chunk's length over
        the median of the last three delivery rates (one stall does not move a median); the
        slowest recent response's rate before this one's is measured. Profiles are stored relative to it, so a fast response is
        not held for the ordinary gaps of a slower one."""
        r = self._rates
        known = [x for x in r if x > 0]
        if not known:
            return audio_ms / self._prior_rate  # the first chunk: at the recent responses' rate
        known.sort()
        rate = known[(len(known) - 1) // 2]
        return audio_ms / rate if rate < math.inf else 0.0

    def _rate(self) -> float:
        """Delivery rate (audio ms per ms) for the drift term: the median of the last three
        per-chunk rates for a source faster than real time (ignores one stall); for a slower
        one, the rate since the first chunk (a long baseline: the drift it feeds grows with
        the rest of the response, so per-chunk jitter would be amplified). 1 before any."""
        r = sorted(x for x in self._rates if x > 0)
        if not r:
            return self._prior_rate
        short = r[(len(r) - 1) // 2]
        if short >= 1.0:
            return short
        # One device block of slack on the span: arrival jitter over a short baseline would
        # otherwise make the estimate optimistic half of the time.
        span, got = self._last_t + self._q, self.received_ms - self._last_z
        return got / span if span > 0 and got > 0 else short

    def arrival(self, rel_ms: float, audio_ms: float, quantum_ms: float) -> float | None:
        """Log a chunk (`rel_ms` after the first, `audio_ms` long) and return the start need in
        ms after the first chunk, or None while there is no history and no hint (the caller's
        prior decides)."""
        if not self._open:
            self.begin()
        if self.received_ms == 0.0:
            self._q = quantum_ms
        else:
            dt = rel_ms - self._last_t
            r = self._rates
            r[0], r[1], r[2] = r[1], r[2], (self._last_z / dt if dt > 0 else math.inf)
        if self.received_ms > 0.0 and rel_ms - self._last_t - self._last_g >= STALL_MS:
            # This response has had the stall its group expects: one per group and response.
            grp = self._group[min(int(self.received_ms // BIN_MS), BINS - 1)]
            if grp >= 0:
                self._spent |= self._group == grp
        self._last_t, self._last_z = rel_ms, audio_ms
        g = self._last_g = self._pace(audio_ms)
        s = self.received_ms
        lat = self._lq(rel_ms, s)
        self.own_ms = max(self.own_ms, lat)
        n = self._n
        if n < self._t.shape[0] and s < BINS * BIN_MS:
            self._t[n], self._s[n], self._z[n], self._g[n] = rel_ms, s, audio_ms, g
            self._n = n + 1
        self.received_ms = s + audio_ms
        here = self._lq(rel_ms, self.received_ms)
        p = self.received_ms
        drift = 1.0 / self._rate() - 1.0  # lateness gained per ms of audio at this pace
        need = _NONE
        if self._count:
            b = min(int(p // BIN_MS), BINS - 1)
            ahead = np.maximum(_EDGES[b:] - p, 0.0)
            # What followed a later position P' is reached after P' - P more audio, which at
            # this rate builds (or, below real time, eats) that much buffer first.
            expect = np.where(self._spent[b:], self._envelope[b:], self._expect[b:])
            need = here + g + float(np.max(expect + ahead * drift))
        # The answer's length: the hint (pipeline mode) or, without one, the guess from history.
        length = self.hint_ms if self.hint_ms > 0 else self._length_guess
        if length > p:
            if not any(self._rates) and (self._prior_rate < 1.0 or self.hint_ms > p and not self._count):
                # A long answer, and a first chunk cannot tell its rate: with no history it
                # cannot tell a slow source from a fast one, and after slow answers the slowest
                # of them is no bound for this one. Wait for the second chunk (bounded by
                # max_ms) rather than start on an assumed rate and gap if it is slower.
                need = math.inf
            elif drift > 0:
                # The last chunk starts at length - this chunk's length from the next one on.
                need = max(need, here + g + max(0.0, length - p - audio_ms) * drift)
        if need == _NONE and not self._count:
            return None
        if self._count < TRUST_AFTER and self._stall_top.max() > _NONE:
            # One answer that stalled shows one stall: no spread of places or sizes yet (the
            # next may be longer and earlier), so the forecast may raise the prior but not go
            # below it. An answer without a stall is trusted at once (steady sources).
            need = max(need, self.prior_ms)
        return max(self.own_ms, need)
