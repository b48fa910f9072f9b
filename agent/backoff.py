"""Exponential backoff with jitter, shared by every reconnecting client in the daemon.

Why a class of our own: the daemon reconnects several long-lived sockets (CosyVoice, omni,
realtime ASR) and must never spin in a tight retry loop, yet the first retry after a blip should be
quick (≤ 1 s) so a user barely notices. The policy here:

- delay for attempt n (0-based) is drawn uniformly from ``[d/2, d]`` with ``d = min(cap, first *
  factor**n)`` ("equal jitter"): the upper half keeps a floor under every delay (no tight loop even
  with bad luck), the random half spreads a fleet of devices that lost the same gateway;
- the attempt counter resets either explicitly (``reset()``, e.g. after a task succeeded) or
  implicitly when the connection has stayed up for ``stable_s`` (``connected()`` marks the moment),
  so a link that flaps once an hour starts again at ~1 s rather than at the cap.

The clock and the random source are injectable so tests are deterministic.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable


class Backoff:
    """Delays for successive retries: ``first`` doubling (``factor``) up to ``cap`` seconds."""

    def __init__(
        self,
        first: float = 1.0,
        cap: float = 30.0,
        *,
        factor: float = 2.0,
        stable_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if first <= 0 or cap < first or factor < 1:
            raise ValueError("need 0 < first <= cap and factor >= 1")
        self.first = first
        self.cap = cap
        self.factor = factor
        self.stable_s = stable_s
        self._clock = clock
        self._rng = rng
        self._attempt = 0
        self._up_since: float | None = None

    @property
    def attempt(self) -> int:
        """How many delays were handed out since the last reset."""
        return self._attempt

    def connected(self) -> None:
        """The guarded thing works again; if it keeps working for `stable_s`, forget past failures."""
        self._up_since = self._clock()

    def reset(self) -> None:
        """Forget past failures now (next delay starts at `first` again)."""
        self._attempt = 0
        self._up_since = None

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; each call counts as one failure."""
        if self._up_since is not None and self._clock() - self._up_since >= self.stable_s:
            self._attempt = 0
        self._up_since = None
        ceiling = min(self.cap, self.first * self.factor ** min(self._attempt, 64))
        self._attempt += 1
        return ceiling / 2 + self._rng() * ceiling / 2

    async def sleep(self) -> float:
        """Sleep for `next_delay()` seconds and return the delay slept."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay
