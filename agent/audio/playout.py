"""The Player: a jitter-buffered output with one callback for the life of the daemon.

Two threads touch a Player:

* the **producer** — the asyncio thread: `begin()`, `feed()`, `end()`, `flush()`, statistics;
* the **consumer** — the device callback (`render()`), called by PortAudio's thread or by the
  file/null pacing thread, and by tests/benchmarks on a virtual clock.

The callback half (`render()`, the state machine, fades) lives in callback.py with its rules:
no sample-buffer allocation, no lock, no logging, no awaiting. Shared state is single-writer:
the producer owns the ring's write position, the response table's "begun" counter and the
flush request fields; the callback owns the read position, the state machine and every counter
it publishes. CPython's GIL makes each int/float store atomic and keeps program order, so a
field written *before* its publishing counter is seen complete by the other side. Small Python
objects (floats, slice views) are unavoidable in a Python callback; no container grows.

Responses are identified by caller-chosen strings. They live in a fixed table of `NSEG` slots in
ring order; the callback plays them one after another, each with its own prebuffer. A flush is
a request (`_flush_gen`, plus the ring position and slot count it covers) applied by the
callback at its next invocation: a ≤ 12 ms linear fade, then a jump of the read position. The
producer-side bookkeeping of finished responses (statistics, archive, `wait_finished()`, the one
completion-event API) is in responses.py.

What the Player publishes to everyone else is in activity.py: `activity` (speaking / tail /
quiet, busy) and `tap` (what was handed to the device, the echo reference), both written by the
callback (and `activity.begun` by `begin()`). Readers use those, not the Player.

Volume: `set_gain()` (producer) publishes a gain ≤ 1.0 (volume.py has the curve and why it never
exceeds unity); the callback multiplies each block by it in place after rendering, ramping a
change over one block, before the tap records the block, so the echo reference is what is heard.

Overflow policy: the ring is bounded (default 60 s). `feed()` stores what fits and drops the
*newest* excess (counted in `dropped_ms`): only the producer may move the write position, and
dropping the oldest would mean racing the callback for the read position. `write()` is the
back-pressure alternative: it waits for room instead of dropping.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable

import numpy as np

from agent.audio.activity import OutputTap, PlayoutActivity
from agent.audio.callback import DONE_FLUSHED, DONE_NO, IDLE, NSEG, PlayoutCallback
from agent.audio.forecast import StartForecast
from agent.audio.hold import StartHold
from agent.audio.jitter import AdaptiveTarget, LatenessTracker
from agent.audio.resample import StreamResampler
from agent.audio.responses import ResponseBook
from agent.audio.ring import SampleRing
from agent.audio.stats import PlayState, ResponseStats
from agent.config import JitterSettings

SOURCE_RATE = 24000  # what DashScope sends (SPEC §1)
EDGE_MS = 2.0  # fade at the edges of a starvation gap, against clicks
GAIN_CHUNK = 1024  # frames the volume gain works on at a time (its scratch size)


def as_int16(pcm: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """View PCM bytes (16-bit little-endian mono) or an array as a 1-D int16 array."""
    if isinstance(pcm, np.ndarray):
        if pcm.dtype == np.int16:
            return pcm.reshape(-1)
        return np.clip(np.round(pcm.reshape(-1)), -32768, 32767).astype(np.int16)
    mv = memoryview(pcm)
    if mv.nbytes % 2:
        mv = mv[: mv.nbytes - 1]  # a torn odd byte cannot be a sample
    return np.frombuffer(mv, dtype="<i2")


class Player(ResponseBook, PlayoutCallback):
    """Jitter-buffered playout of 24 kHz mono int16 responses through one output callback."""

    def __init__(
        self,
        jitter: JitterSettings | None = None,
        *,
        device_rate: int = SOURCE_RATE,
        capacity_s: float = 60.0,
        fade_ms: float = 10.0,
        reference_ms: float = 2000.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        j = jitter or JitterSettings()
        if not 0 < fade_ms <= 12.0:
            raise ValueError("fade_ms must be in (0, 12] (SPEC §5.3)")
        self.rate = SOURCE_RATE
        self._clock = clock
        self._capacity_s = capacity_s
        self._fade_ms = fade_ms
        self.target = AdaptiveTarget(j.target_ms, j.min_ms, j.max_ms)  # rebuffer depth
        self.hold = StartHold(j.target_ms, j.max_ms)  # start: the prior, and the status figure
        # Start: per-response need from the session's history; after a first answer that
        # stalled, never below the prior (one stall shows no spread).
        self.forecast = StartForecast(prior_ms=float(j.target_ms))
        self._max_ms = float(j.max_ms)
        self._min_ms = float(j.min_ms)
        self._tracker = LatenessTracker(j.max_ms)
        self.activity = PlayoutActivity()  # published: speaking / tail / quiet, busy
        self.tap = OutputTap(device_rate, reference_ms)  # published: what was played
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_scheduled = False
        # Producer-side bookkeeping (asyncio thread only).
        self._archive: OrderedDict[str, ResponseStats] = OrderedDict()
        self._closed_ids: OrderedDict[str, None] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[ResponseStats]]] = {}
        self._added_latency: deque[float] = deque(maxlen=200)
        self.received_frames = 0  # source-rate frames fed, kept or not (audio received)
        self.dropped_frames = 0  # device-rate frames refused (ring full)
        self.discarded_frames = 0  # source-rate frames of non-current responses
        self.callback_errors = 0
        self._last_accepted = 0
        # Callback-owned counters; they survive a device-rate change (status totals).
        self.heartbeat = 0
        self.frames_rendered = 0
        self.host_underflows = 0
        self.gaps = 0
        self.gap_frames = 0
        self._gap_ms_base = 0.0  # gap time accumulated at earlier device rates
        self.responses_done = 0
        # Volume (volume.py): the producer sets gain_target, the callback ramps _gain to it.
        self.gain_target = 1.0
        self._gain = 1.0
        self._gf = np.zeros(GAIN_CHUNK, dtype=np.float32)
        self._gidx = np.arange(GAIN_CHUNK, dtype=np.float32)
        self._configure(device_rate)

    # ------------------------------------------------------------------ setup

    def _configure(self, device_rate: int) -> None:
        """(Re)allocate everything that depends on the device rate. Not while a callback runs."""
        self.device_rate = int(device_rate)
        r = self.device_rate
        self._ring = SampleRing(int(self._capacity_s * r))
        if self.tap.rate != r:
            self.tap.configure(r)
        self.tap.latency = 0.0
        self.tap.heard_offset = None
        self.activity.reset()
        self._fade_frames = max(1, int(self._fade_ms * r / 1000))
        self._edge_frames = max(1, int(EDGE_MS * r / 1000))
        scratch = max(self._fade_frames, self._edge_frames)
        self._f = np.zeros(scratch, dtype=np.float32)
        self._idx = np.arange(scratch, dtype=np.float32)
        self._b1 = np.zeros(1024, dtype=np.bool_)
        self._b2 = np.zeros(1024, dtype=np.bool_)
        self._resampler = StreamResampler(self.rate, r)
        # Response table: written by the producer before publishing via _seg_w; the callback
        # owns _seg_r and the per-slot play counters.
        self._seg_end = [-1] * NSEG  # ring position where the response ends; -1 while open
        self._seg_played = [0] * NSEG
        self._seg_gaps = [0] * NSEG
        self._seg_gap_frames = [0] * NSEG
        self._seg_first_t = [-1.0] * NSEG
        self._seg_audible_t = [-1.0] * NSEG
        self._seg_last_t = [-1.0] * NSEG
        self._seg_done = [DONE_NO] * NSEG
        # When the start hold of each response ends (monotonic s; -1 until its first chunk).
        self._seg_hold_t = [-1.0] * NSEG
        self._seg_w = 0  # responses begun (producer)
        self._seg_r = 0  # responses finished at the output (callback)
        self._seg_disp = 0  # responses archived (producer)
        # Producer-only per-slot data.
        self._slot_id: list[str] = [""] * NSEG
        self._slot_received = [0] * NSEG
        self._slot_first_arrival = [0.0] * NSEG
        self._slot_lateness = [0.0] * NSEG
        self._slot_qstar = [0.0] * NSEG
        self._slot_hold = [0.0] * NSEG  # block-quantised D* (what the StartHold learns)
        self._slot_reported = [False] * NSEG
        self._id_index: dict[str, int] = {}
        self._cur_id: str | None = None
        self._cur_idx = -1
        # Flush request (producer writes pos/seg first, then bumps the generation).
        self._flush_gen = 0
        self._flush_pos = 0
        self._flush_seg = 0
        # Callback state.
        self._flush_seen = 0
        self._pend_flush_pos = 0
        self._pend_flush_seg = 0
        self._fade_len = 0
        self._fade_left = 0
        self._fadein_left = 0
        self._pending_gap = 0
        self._start_target = 0  # callback: the target this response started with
        self._last_gap = 0  # callback: length of the latest committed gap (frames)
        self._gaps_seen = self.gaps  # producer: gaps already folded into the target
        self._slow_source = False  # producer: the current response arrives slower than real time
        self._state = IDLE
        self._target_frames = self._ms_to_frames(self.target.value_ms)
        self._start_depth = self._ms_to_frames(max(self._min_ms, self.hold.value_ms))
        self._block_frames = 0  # callback: frames asked for by the latest callback
        self._now = 0.0  # callback: monotonic time of the current callback

    def set_device_rate(self, device_rate: int) -> None:
        """Switch to a new device rate (only while no stream is running). Drops queued audio."""
        if int(device_rate) == self.device_rate:
            return
        for idx in range(self._seg_r, self._seg_w):
            self._seg_done[idx % NSEG] = DONE_FLUSHED
        self._seg_r = self._seg_w  # safe: no callback is running
        self.dispatch_events()
        self._gap_ms_base += self.gap_frames * 1000.0 / self.device_rate
        self.gap_frames = 0
        self._configure(device_rate)

    def set_gain(self, gain: float) -> None:
        """The output gain (the volume, volume.py): 0.0–1.0, never above unity so nothing clips.
        The callback ramps to it across its next block."""
        if not 0.0 <= gain <= 1.0:
            raise ValueError(f"gain must be in [0, 1], got {gain}")
        self.gain_target = float(gain)

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Let the callback wake this loop (rarely: first audible sample, response finished)."""
        self._loop = loop

    def _publish_hold(self) -> None:
        """The callback's start depth. Before any history (the prior hold rules): never start
        on less audio than the hold (a chunk that late would find the buffer empty). With a
        forecast, which already weighs the audio at hand, only never on less than min_ms."""
        floor = self._min_ms if self.forecast.has_history else max(self._min_ms, self.hold.value_ms)
        self._start_depth = self._ms_to_frames(floor)

    def _ms_to_frames(self, ms: float) -> int:
        return int(round(ms * self.device_rate / 1000.0))

    # ------------------------------------------------------------------ producer API

    @property
    def current_response(self) -> str | None:
        return self._cur_id

    def begin(self, response_id: str) -> None:
        """Start a new response. A still-open previous response is ended (its audio plays out)."""
        if response_id == self._cur_id or response_id in self._closed_ids:
            return
        if self._cur_id is not None:
            self.end(self._cur_id)
        self.dispatch_events()
        if self._seg_w - self._seg_disp >= NSEG:
            # The device has not consumed 64 responses: it is stalled. Refuse rather than grow.
            self._close_id(response_id)
            return
        idx = self._seg_w
        s = idx % NSEG
        self._seg_end[s] = -1
        self._seg_played[s] = 0
        self._seg_gaps[s] = 0
        self._seg_gap_frames[s] = 0
        self._seg_first_t[s] = -1.0
        self._seg_audible_t[s] = -1.0
        self._seg_last_t[s] = -1.0
        self._seg_done[s] = DONE_NO
        self._seg_hold_t[s] = -1.0
        self._slot_id[s] = response_id
        self._slot_received[s] = 0
        self._slot_first_arrival[s] = 0.0
        self._slot_lateness[s] = 0.0
        self._slot_qstar[s] = 0.0
        self._slot_hold[s] = 0.0
        self._slot_reported[s] = False
        self._id_index[response_id] = idx
        self._tracker.reset()
        self.forecast.begin(response_id)
        self._resampler.reset()
        self._cur_id = response_id
        self._cur_idx = idx
        self._seg_w = idx + 1  # publish the slot to the callback
        self.activity.begun = self._seg_w

    def expect(self, response_id: str, seconds: float) -> None:
        """A length hint: `response_id` (current or not begun yet) will be about `seconds`
        long (pipeline mode: text.speech_seconds() of the text sent to synthesis). Used only
        if the source turns out slower than real time, to hold long enough for all of it.
        Repeated calls may only raise it (the text grows)."""
        self.forecast.expect(response_id, seconds, self._cur_id)

    def _prepare(
        self, response_id: str, pcm: bytes | bytearray | memoryview | np.ndarray
    ) -> np.ndarray | None:
        """Common part of feed/write: route by id, track lateness, resample. None = discard."""
        data = as_int16(pcm)
        self.received_frames += data.shape[0]  # all answer audio that arrived (metrics)
        if response_id != self._cur_id:
            if response_id in self._closed_ids or response_id in self._id_index:
                self.discarded_frames += data.shape[0]
                return None
            self.begin(response_id)  # first audio of an unknown id starts it implicitly
            if response_id != self._cur_id:
                self.discarded_frames += data.shape[0]
                return None
        n = data.shape[0]
        if n == 0:
            return data
        s = self._cur_idx % NSEG
        tr = self._tracker
        block = self._block_frames
        tr.quantum_ms = block * 1000.0 / self.device_rate if block else 0.0
        tr.arrival(self._clock(), n * 1000.0 / self.rate)
        first = self._slot_received[s] == 0
        if first:
            self._slot_first_arrival[s] = tr.first_arrival or 0.0
        self._slot_received[s] += n
        self._slot_lateness[s] = tr.d_star_ms
        self._slot_qstar[s] = tr.q_star_ms
        self._slot_hold[s] = tr.hold_ms
        self._slow_source = tr.slow_source
        if self.target.observe(tr.q_star_ms):
            self._target_frames = self._ms_to_frames(self.target.value_ms)
        rel_ms = (self._clock() - self._slot_first_arrival[s]) * 1000.0
        need = self.forecast.arrival(rel_ms, n * 1000.0 / self.rate, tr.quantum_ms)
        raised = self.hold.observe(tr.hold_ms)
        if need is not None:
            # This response's start deadline from the forecast (forecast.py); it moves either
            # way as chunks arrive. Once it is playing the callback no longer looks at it.
            if first:
                self._publish_hold()
            # +1 ms: a chunk due exactly at a callback's time may land just after that callback.
            hold_ms = min(self._max_ms, max(0.0, need + 1.0))
            self._seg_hold_t[s] = self._slot_first_arrival[s] + hold_ms / 1000.0
        else:
            # No history yet: the prior hold (target_ms), raised at once by this response's D*.
            if raised or first:
                self._publish_hold()
            self._seg_hold_t[s] = self._slot_first_arrival[s] + self.hold.value_ms / 1000.0
        return self._resampler.process(data)

    def feed(self, response_id: str, pcm: bytes | bytearray | memoryview | np.ndarray) -> int:
        """Queue audio of `response_id` (24 kHz mono int16). Returns device frames accepted.

        Audio of a response that is not current (flushed, ended, or superseded) is discarded.
        If the ring is full the newest excess is dropped and counted (see module docstring).
        """
        rest = self.feed_nowait(response_id, pcm)
        if rest is None:
            return 0
        self.dropped_frames += rest.shape[0]
        return self._last_accepted

    def feed_nowait(
        self, response_id: str, pcm: bytes | bytearray | memoryview | np.ndarray
    ) -> np.ndarray | None:
        """Queue what fits and return the rest (device-rate frames, possibly empty) for
        `resume_feed()`; None if the audio was discarded (not the current response)."""
        data = self._prepare(response_id, pcm)
        if data is None:
            self._last_accepted = 0
            return None
        n = self._last_accepted = self._ring.write(data)
        return data[n:]

    def resume_feed(self, response_id: str, rest: np.ndarray) -> np.ndarray:
        """Retry a `feed_nowait()` remainder; returns what still does not fit. If the response
        is no longer current (flushed meanwhile) the remainder is discarded: returns empty."""
        if response_id != self._cur_id or rest.shape[0] == 0:
            return rest[:0]
        n = self._ring.write(rest)
        return rest[n:]

    async def write(
        self, response_id: str, pcm: bytes | bytearray | memoryview | np.ndarray, poll_s: float = 0.02
    ) -> int:
        """Like `feed()` but waits for room instead of dropping (back-pressure to the network)."""
        rest = self.feed_nowait(response_id, pcm)
        if rest is None:
            return 0
        accepted = self._last_accepted
        while rest.shape[0]:
            await asyncio.sleep(poll_s)
            if response_id != self._cur_id:  # flushed or superseded while waiting
                return accepted
            before = rest.shape[0]
            rest = self.resume_feed(response_id, rest)
            accepted += before - rest.shape[0]
        return accepted

    def end(self, response_id: str) -> None:
        """The response is complete: play it out even if it is shorter than the target."""
        if response_id != self._cur_id:
            return
        tail = self._resampler.flush()
        if tail.shape[0]:
            n = self._ring.write(tail)
            self.dropped_frames += tail.shape[0] - n
        s = self._cur_idx % NSEG
        self._slot_lateness[s] = self._tracker.d_star_ms
        self._slot_qstar[s] = self._tracker.q_star_ms
        self._slot_hold[s] = self._tracker.hold_ms
        self._seg_end[s] = self._ring.write_pos  # publish completion
        self.forecast.close()
        self._close_id(response_id)
        self._cur_id = None

    def flush(self) -> str | None:
        """Barge-in: fade out (≤ 12 ms) and drop everything queued, at the next callback.

        Returns the id of the response that was being played (or prebuffered), if any; its
        `heard_ms()` is final once the callback has applied the flush.
        """
        interrupted = None
        if self._seg_r < self._seg_w:
            interrupted = self._slot_id[self._seg_r % NSEG]
        if self._cur_id is not None:
            self._close_id(self._cur_id)
            self._cur_id = None
        self.forecast.close()
        self._resampler.reset()
        self._flush_pos = self._ring.write_pos
        self._flush_seg = self._seg_w
        self._flush_gen += 1  # publish the request
        return interrupted

    def _close_id(self, response_id: str) -> None:
        self._closed_ids[response_id] = None
        while len(self._closed_ids) > 256:
            self._closed_ids.popitem(last=False)

    # ------------------------------------------------------------------ producer-side views

    @property
    def state(self) -> PlayState:
        return PlayState(self._state)

    @property
    def buffered_ms(self) -> float:
        return self._ring.available() * 1000.0 / self.device_rate

    @property
    def target_ms(self) -> float:
        """The rebuffer depth (quantity, ms) after a mid-response starvation."""
        return self.target.value_ms

    @property
    def hold_ms(self) -> float:
        """The start hold (ms after a response's first chunk) the next response will get."""
        return self.hold.value_ms

    @property
    def latency(self) -> float:
        """Device output latency (seconds) last reported to the callback."""
        return self.tap.latency

