"""A real-time pacing thread that drives callbacks like a sound card would (file and null backends).

Why absolute deadlines: block k is due at `t0 + k * period`. Sleeping "one period" after each
block would accumulate the scheduling delay of every wake-up (drift); sleeping until the absolute
deadline does not, so after an hour the number of frames produced is still `elapsed * rate`. If
the thread falls behind (a busy CPU, a suspended process), it catches up by running the missed
blocks back to back: the file timeline stays equal to wall-clock time since the start.

One pacer drives every paced stream of an engine, so a file microphone and a file speaker start
on the same tick and share one timeline (SPEC §4).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from agent.audio.backend import CaptureFn, RenderFn, Stream

DEFAULT_PERIOD_S = 0.010  # 10 ms blocks: 240 frames at 24 kHz, 160 at 16 kHz

Tick = Callable[[float], None]


class Pacer:
    """Calls registered ticks every `period_s` on one thread, at absolute deadlines."""

    def __init__(self, period_s: float = DEFAULT_PERIOD_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = period_s
        self._clock = clock
        self._ticks: tuple[Tick, ...] = ()
        self._lock = threading.Lock()  # held while ticks run and while the tick set changes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.t0: float | None = None
        self.blocks = 0
        self.errors = 0

    def add(self, tick: Tick) -> None:
        with self._lock:
            self._ticks = (*self._ticks, tick)

    def remove(self, tick: Tick) -> None:
        """Detach a tick; once this returns the tick is not running and will not run again."""
        with self._lock:
            self._ticks = tuple(t for t in self._ticks if t is not tick)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start ticking; `t0` (the deadline of block 0) is set before this returns."""
        if self._thread is not None:
            return
        self.t0 = self._clock()
        self._thread = threading.Thread(target=self._run, name="audio-pacer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        period = self.period_s
        t0 = self.t0 if self.t0 is not None else self._clock()
        k = 0
        while not self._stop.is_set():
            deadline = t0 + k * period
            delay = deadline - self._clock()
            if delay > 0 and self._stop.wait(delay):
                break
            with self._lock:
                for tick in self._ticks:
                    try:
                        tick(deadline)
                    except Exception:  # a tick must never kill the clock of the others
                        self.errors += 1
            k += 1
            self.blocks = k


class PacedOutput(Stream):
    """An output "device" that renders one block per tick and hands it to `sink` (or discards)."""

    kind = "output"

    def __init__(
        self,
        pacer: Pacer,
        render: RenderFn,
        rate: int,
        description: str,
        sink: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        super().__init__()
        self.samplerate = int(rate)
        self.blocksize = int(round(rate * pacer.period_s))
        self.latency = 0.0  # a block is "heard" at its own deadline: the file timeline
        self.description = description
        self._pacer = pacer
        self._render = render
        self._sink = sink
        self._block = np.zeros(self.blocksize, dtype=np.int16)
        self._attached = False

    def start(self) -> None:
        if not self._attached:
            self._attached = True
            self._pacer.add(self._tick)

    def _tick(self, deadline: float) -> None:
        block = self._block
        self._render(block, deadline, 0.0, False)
        if self._sink is not None and self.failed is None:
            try:
                self._sink(block)
            except OSError as e:  # e.g. disk full: report, keep the player's clock running
                self.failed = f"{self.description}: write failed: {e.strerror or e}"

    def close(self) -> None:
        if self._attached:
            self._pacer.remove(self._tick)
            self._attached = False


class PacedInput(Stream):
    """An input "device" that delivers one block per tick from `source` (or silence).

    A microphone delivers a block once it has been captured, i.e. at the *end* of its interval:
    the block covering [t, t + period) is handed over at the tick of t + period.
    """

    kind = "input"

    def __init__(
        self,
        pacer: Pacer,
        capture: CaptureFn,
        rate: int,
        description: str,
        source: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        super().__init__()
        self.samplerate = int(rate)
        self.blocksize = int(round(rate * pacer.period_s))
        self.latency = 0.0
        self.description = description
        self._pacer = pacer
        self._capture = capture
        self._source = source
        self._block = np.zeros(self.blocksize, dtype=np.int16)
        self._attached = False
        self._primed = False

    def start(self) -> None:
        if not self._attached:
            self._attached = True
            self._pacer.add(self._tick)

    def _tick(self, deadline: float) -> None:
        if not self._primed:  # the first interval is still being "recorded"
            self._primed = True
            return
        if self._source is not None:
            self._source(self._block)
        self._capture(self._block, deadline, False)

    def close(self) -> None:
        if self._attached:
            self._pacer.remove(self._tick)
            self._attached = False
