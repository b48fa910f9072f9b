"""The device-thread half of the Player: `render()` and everything it calls.

Split from playout.py along the thread boundary: this mixin is the code PortAudio's callback
thread (or the file/null pacing thread) runs; `Player` in playout.py is what the asyncio thread
runs. The rules for this half (reference/playout-buffering.md §3): no sample buffer is
allocated — fades and searches work in preallocated scratch arrays via `out=` ufuncs and copies
are `np.copyto` into slices; no lock, no logging, no awaiting; every field it writes has no
other writer, and a counter is published only after the data it describes (GIL ordering). The
loop is woken (`call_soon_threadsafe`) only for rare events, at most once until it has run.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np

from agent.audio.activity import OutputTap, PlayoutActivity
from agent.audio.ring import SampleRing
from agent.audio.stats import PlayState

if TYPE_CHECKING:
    from collections.abc import Callable

NSEG = 64  # response slots; more than 64 responses queued ahead of the device is a bug
AUDIBLE_THRESHOLD = 32  # |sample| above this (-60 dBFS) counts as "non-silent"

IDLE, PREBUFFER, PLAYING, REBUFFER, DRAINING = (int(s) for s in PlayState)
DONE_NO, DONE_OK, DONE_FLUSHED = 0, 1, 2


class PlayoutCallback:
    """Mixin: the callback state machine. Fields are created by `Player._configure()`."""

    # Declared for type checkers; assigned in Player._configure / __init__.
    device_rate: int
    heartbeat: int
    host_underflows: int
    callback_errors: int
    frames_rendered: int
    gaps: int
    gap_frames: int
    _ring: SampleRing
    activity: PlayoutActivity
    tap: OutputTap
    _loop: asyncio.AbstractEventLoop | None
    _wake_scheduled: bool
    _on_wake: Callable[[], None]
    _now: float
    _block_frames: int
    _seg_hold_t: list[float]
    _start_depth: int
    gain_target: float  # producer: the volume's gain (0.0-1.0), set by Player.set_gain
    _gain: float  # callback: the gain applied at the end of the latest block
    _gf: np.ndarray  # gain scratch (float32)
    _gidx: np.ndarray  # 0, 1, 2, ... (float32), for the ramp

    def _wake(self) -> None:
        """Callback side: ask the loop to dispatch events (at most one pending wakeup)."""
        loop = self._loop
        if loop is None or self._wake_scheduled:
            return
        self._wake_scheduled = True
        try:
            loop.call_soon_threadsafe(self._on_wake)
        except RuntimeError:  # loop closed during shutdown
            self._wake_scheduled = False

    def render(self, out: np.ndarray, now: float, latency: float = 0.0, underflow: bool = False) -> None:
        """Fill `out` (1-D int16, one device block) with the next audio. The device callback.

        `now` is the monotonic time of this call and `latency` the time until `out[0]` is heard
        (PortAudio's outputBufferDacTime - currentTime; 0 for the file backend, whose timeline
        is the block's own deadline).
        """
        self.heartbeat += 1
        self._now = now
        self._block_frames = out.shape[0]
        if underflow:
            self.host_underflows += 1
        n = out.shape[0]
        try:
            self._render(out, n, now + latency)
            if self._gain != 1.0 or self.gain_target != 1.0:
                self._apply_gain(out)
        except Exception:  # never let an exception stop the stream
            self.callback_errors += 1
            out.fill(0)
        self.frames_rendered += n
        self.tap.write(out, latency, now)  # the echo reference: what was handed to the device

    def _apply_gain(self, out: np.ndarray) -> None:
        """The volume (volume.py): multiply the block in place by the gain, in scratch-sized
        pieces. A new `gain_target` is reached by a linear ramp across this one block (no
        click); the gain is ≤ 1.0, and the ramp is clamped to 1.0, so a sample never clips."""
        target = self.gain_target
        cur = self._gain
        n = out.shape[0]
        if cur == target and cur <= 0.0:
            out.fill(0)
            return
        step = (target - cur) / n
        chunk = self._gf.shape[0]
        i = 0
        while i < n:
            k = min(chunk, n - i)
            view = out[i : i + k]
            f = self._gf[:k]
            if step == 0.0:
                np.copyto(f, view)
                np.multiply(f, cur, out=f)
            else:
                # gain(j) = cur + step * (j + 1): reaches `target` on the block's last sample.
                np.add(self._gidx[:k], i + 1, out=f)
                np.multiply(f, step, out=f)
                np.add(f, cur, out=f)
                np.minimum(f, 1.0, out=f)
                np.maximum(f, 0.0, out=f)
                np.multiply(f, view, out=f)
            np.copyto(view, f, casting="unsafe")
            i += k
        self._gain = target

    def _render(self, out: np.ndarray, n: int, t_out: float) -> None:
        ring = self._ring
        rate = self.device_rate
        if self._flush_gen != self._flush_seen:
            self._start_flush()
        o = 0
        while o < n:
            if self._fade_left > 0:
                o = self._render_fade(out, o, n, t_out)
                continue
            st = self._state
            if st == IDLE:
                if self._seg_r >= self._seg_w:
                    break
                st = self._state = PREBUFFER
            s = self._seg_r % NSEG
            end = self._seg_end[s]
            avail = (end if end >= 0 else ring.write_pos) - ring.read_pos
            if st in (PREBUFFER, REBUFFER):
                if end >= 0 and avail <= 0:
                    self._finish(s, DONE_OK)  # complete with nothing left (or never any audio)
                    continue
                if st == PREBUFFER:
                    # Start once the learned hold since the first chunk has passed and at
                    # least that much audio (≥ min_ms) is buffered; at once when complete.
                    hold_t = self._seg_hold_t[s]
                    ready = 0 <= hold_t <= self._now and avail >= self._start_depth
                else:
                    need = self._target_frames
                    if not self._slow_source:
                        need = min(need, self._start_target)
                    ready = avail >= need
                if not ready and end < 0:
                    if st == REBUFFER:
                        self._pending_gap += n - o
                    break
                if st == REBUFFER:  # resume: now it is a gap (audio follows it)
                    self._seg_gaps[s] += 1
                    self._seg_gap_frames[s] += self._pending_gap
                    self._last_gap = self._pending_gap
                    self.gap_frames += self._pending_gap
                    self.gaps += 1  # published last: the producer reads _last_gap after it
                    self._pending_gap = 0
                    self._fadein_left = self._edge_frames
                    self._wake()
                if st == PREBUFFER:
                    self._start_target = self._target_frames
                st = self._state = DRAINING if end >= 0 else PLAYING
            elif st == PLAYING and end >= 0:
                st = self._state = DRAINING
            m = min(avail, n - o)
            if m > 0:
                view = out[o : o + m]
                ring.copy_out(view, ring.read_pos, m)
                ring.read_pos += m
                if self._fadein_left > 0:
                    self._fade_in(view)
                t0 = t_out + o / rate
                if self._seg_first_t[s] < 0:
                    self._seg_first_t[s] = t0
                if self._seg_audible_t[s] < 0:
                    i = self._find_audible(view)
                    if i >= 0:
                        self._seg_audible_t[s] = t0 + i / rate
                        self._wake()
                self._seg_played[s] += m
                o += m
                self._seg_last_t[s] = self.activity.audible_until = t_out + o / rate
            if end >= 0 and ring.read_pos >= end:
                self._finish(s, DONE_OK)
            elif o < n:  # ran dry mid-response
                if m > 0:
                    self._edge_out(out[o - min(m, self._edge_frames) : o])
                self._state = REBUFFER
        if o < n:
            out[o:].fill(0)

    def _finish(self, s: int, how: int) -> None:
        self._seg_done[s] = how
        self._seg_r += 1
        self.activity.finished = self._seg_r
        self._state = IDLE
        self._pending_gap = 0  # silence after the last sample is not a gap
        self._fadein_left = 0
        self._wake()

    def _start_flush(self) -> None:
        self._flush_seen = self._flush_gen
        self._pend_flush_pos = self._flush_pos
        self._pend_flush_seg = self._flush_seg
        if self._fade_left > 0:
            return  # already fading: the running fade now covers the newer request too
        st = self._state
        if st in (PLAYING, DRAINING) and self._seg_r < self._pend_flush_seg:
            s = self._seg_r % NSEG
            end = self._seg_end[s]
            limit = end if end >= 0 else self._ring.write_pos
            avail = min(limit, self._pend_flush_pos) - self._ring.read_pos
            length = min(self._fade_frames, avail)
            if length > 0:
                self._fade_len = self._fade_left = length
                return
        self._apply_flush()

    def _render_fade(self, out: np.ndarray, o: int, n: int, t_out: float) -> int:
        ring = self._ring
        k = min(self._fade_left, n - o)
        view = out[o : o + k]
        ring.copy_out(view, ring.read_pos, k)
        ring.read_pos += k
        length = self._fade_len
        done = length - self._fade_left
        f = self._f[:k]
        # gain(j) = (length - j) / (length + 1) for j = done .. done+k-1: strictly decreasing,
        # never above 1, reaching 1/(length+1) on the last faded sample.
        np.add(self._idx[:k], done, out=f)
        np.subtract(length, f, out=f)
        np.multiply(f, 1.0 / (length + 1), out=f)
        np.multiply(f, view, out=f)
        np.copyto(view, f, casting="unsafe")
        s = self._seg_r % NSEG
        self._seg_played[s] += k
        o += k
        self._seg_last_t[s] = self.activity.audible_until = t_out + o / self.device_rate
        self._fade_left -= k
        if self._fade_left == 0:
            self._apply_flush()
        return o

    def _apply_flush(self) -> None:
        fseg = self._pend_flush_seg
        while self._seg_r < fseg:
            self._seg_done[self._seg_r % NSEG] = DONE_FLUSHED
            self._seg_r += 1
        self.activity.finished = self._seg_r
        ring = self._ring
        if ring.read_pos < self._pend_flush_pos:
            ring.read_pos = self._pend_flush_pos
        self._state = IDLE
        self._pending_gap = 0
        self._fadein_left = 0
        self._fade_left = 0
        self._wake()

    def _fade_in(self, view: np.ndarray) -> None:
        length = self._edge_frames
        k = min(self._fadein_left, view.shape[0])
        done = length - self._fadein_left
        f = self._f[:k]
        np.add(self._idx[:k], done + 1, out=f)
        np.multiply(f, 1.0 / (length + 1), out=f)
        np.multiply(f, view[:k], out=f)
        np.copyto(view[:k], f, casting="unsafe")
        self._fadein_left -= k

    def _edge_out(self, view: np.ndarray) -> None:
        k = view.shape[0]
        f = self._f[:k]
        np.subtract(k, self._idx[:k], out=f)
        np.multiply(f, 1.0 / (k + 1), out=f)
        np.multiply(f, view, out=f)
        np.copyto(view, f, casting="unsafe")

    def _find_audible(self, view: np.ndarray) -> int:
        b1, b2 = self._b1, self._b2
        step = b1.shape[0]
        total = view.shape[0]
        i = 0
        while i < total:
            k = min(step, total - i)
            v = view[i : i + k]
            np.greater(v, AUDIBLE_THRESHOLD, out=b1[:k])
            np.less(v, -AUDIBLE_THRESHOLD, out=b2[:k])
            np.logical_or(b1[:k], b2[:k], out=b1[:k])
            j = int(b1[:k].argmax())
            if b1[j]:
                return i + j
            i += k
        return -1
