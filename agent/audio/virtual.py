"""A virtual clock and a virtual sound card for deterministic player tests and benchmarks.

`VirtualOutput` calls `Player.render()` exactly like PortAudio would — fixed-size blocks every
period, with a reported output latency — but on a virtual timeline, so gap, latency and flush
measurements are exact and bit-reproducible (reference/playout-buffering.md §5.3, "Mode V").
Every block is recorded on a "DAC tape": tape sample i is heard at `dac_time(i)`.
"""

from __future__ import annotations

import numpy as np

from agent.audio.playout import Player


class VirtualClock:
    """A settable monotonic clock; pass it as `clock=` to Player/Microphone."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = float(t)

    def __call__(self) -> float:
        return self.t


class VirtualOutput:
    """Drives `player.render` on `clock` with `block` frames per period and `latency` seconds."""

    def __init__(
        self,
        player: Player,
        clock: VirtualClock,
        *,
        block: int = 240,
        latency: float = 0.020,
        phase: float = 0.0,
        max_seconds: float = 600.0,
    ) -> None:
        self.player = player
        self.clock = clock
        self.block = block
        self.rate = player.device_rate
        self.period = block / self.rate
        self.latency = latency
        self.start = phase  # time of the first callback
        self.next_tick = phase
        self.ticks = 0
        self._tape = np.zeros(int(max_seconds * self.rate) + block, dtype=np.int16)
        self._buf = np.zeros(block, dtype=np.int16)
        self.underflow_next = False

    def tick(self) -> None:
        """One device callback at `next_tick`, then the loop dispatches events."""
        t = self.next_tick
        self.clock.t = t
        self.player.render(self._buf, t, self.latency, self.underflow_next)
        self.underflow_next = False
        i = self.ticks * self.block
        self._tape[i : i + self.block] = self._buf
        self.ticks += 1
        self.next_tick = self.start + self.ticks * self.period
        self.player.dispatch_events()

    def run_until(self, t: float) -> None:
        """Run every callback due at or before `t`; leave the clock at `t`."""
        while self.next_tick <= t:
            self.tick()
        self.clock.t = max(self.clock.t, t)

    @property
    def tape(self) -> np.ndarray:
        return self._tape[: self.ticks * self.block]

    def dac_time(self, i: int | np.ndarray) -> float | np.ndarray:
        """When tape sample `i` is heard."""
        return self.start + i / self.rate + self.latency

    def tape_index(self, t: float) -> int:
        """The first tape sample heard at or after time `t`."""
        return max(0, int(np.ceil((t - self.start - self.latency) * self.rate - 1e-9)))
