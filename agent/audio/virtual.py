"""A virtual clock, a virtual sound card and a scripted microphone, for tests and benchmarks.

`VirtualOutput` calls `Player.render()` exactly like PortAudio would — fixed-size blocks every
period, with a reported output latency — but on a virtual timeline, so gap, latency and flush
measurements are exact and bit-reproducible (reference/playout-buffering.md §5.3, "Mode V").
Every block is recorded on a "DAC tape": tape sample i is heard at `dac_time(i)`.

`ScriptedMic` is the input side: speech on demand through a real engine's microphone path, used
by the reliability tests and the soak benchmark alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from agent.audio.microphone import MIC_RATE
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


class _Capture(Protocol):
    def __call__(self, block: np.ndarray, t_end: float, overflow: bool = False) -> None: ...


class ScriptedMic:
    """Speech on demand through the daemon's real microphone path.

    Wraps `engine.mic.capture` (the device callback the input backend calls every period)
    before the engine starts: while an utterance is queued, its samples replace the silent
    block the null (or file) input delivers; otherwise the block passes through untouched. So
    the uplink, the echo handling, the pre-roll and the server's VAD all see ordinary
    microphone audio, at real-time pace, whenever the caller decides the user speaks.

    `voice(text, rate)` renders the speech (int16 mono); the callers pass the emulator's
    synthesizer, so the server side recognises what was said.
    """

    def __init__(self, voice: Callable[[str, int], np.ndarray]) -> None:
        self._voice = voice
        self._queue: deque[np.ndarray] = deque()
        self._pos = 0
        self._lock = threading.Lock()
        self.spoken_s = 0.0

    def install(self, engine: Any) -> None:
        """Hook `engine.mic.capture`; call before `engine.start()` (the daemon starts it)."""
        original: _Capture = engine.mic.capture

        def capture(block: np.ndarray, t_end: float, overflow: bool = False) -> None:
            original(self._next(block), t_end, overflow)

        engine.mic.capture = capture

    def _next(self, block: np.ndarray) -> np.ndarray:
        with self._lock:
            if not self._queue:
                return block
            out = np.zeros(len(block), dtype=np.int16)
            filled = 0
            while filled < len(out) and self._queue:
                head = self._queue[0]
                take = min(len(out) - filled, len(head) - self._pos)
                out[filled : filled + take] = head[self._pos : self._pos + take]
                filled += take
                self._pos += take
                if self._pos >= len(head):
                    self._queue.popleft()
                    self._pos = 0
            return out

    @property
    def speaking(self) -> bool:
        with self._lock:
            return bool(self._queue)

    def say(self, text: str) -> float:
        """Queue `text` as speech; returns its duration in seconds."""
        pcm = self._voice(text, MIC_RATE)
        with self._lock:
            self._queue.append(pcm)
        self.spoken_s += len(pcm) / MIC_RATE
        return len(pcm) / MIC_RATE

    async def say_and_wait(self, text: str) -> None:
        """Speak `text` and return once the microphone has delivered all of it."""
        self.say(text)
        while self.speaking:
            await asyncio.sleep(0.02)
