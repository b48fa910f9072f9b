"""The Player's response bookkeeping on the producer side: statistics, archive, completion.

Split from playout.py: `Player` (playout.py) is the API the modes call to queue and cut audio;
this mixin turns what the callback recorded in the response table into `ResponseStats`, feeds
the adaptive targets at the end of each response, and resolves the one completion-event API,
`wait_finished()`. Everything here runs on the asyncio thread (see playout.py for the threads).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from agent.audio.callback import DONE_FLUSHED, DONE_NO, NSEG
from agent.audio.hold import StartHold
from agent.audio.jitter import AdaptiveTarget
from agent.audio.stats import PlayerStats, PlayState, ResponseStats

if TYPE_CHECKING:
    from collections.abc import Callable

ARCHIVE = 64  # finished responses kept for `response_stats()` and reports


class ResponseBook:
    """Mixin: the producer-side bookkeeping of finished responses. Fields are created by
    `Player.__init__` / `Player._configure()`."""

    # Declared for type checkers; assigned in Player.
    device_rate: int
    rate: int
    target: AdaptiveTarget
    hold: StartHold
    gaps: int
    gap_frames: int
    host_underflows: int
    callback_errors: int
    heartbeat: int
    responses_done: int
    dropped_frames: int
    discarded_frames: int
    buffered_ms: float
    _gap_ms_base: float
    latency: float
    _state: int
    _clock: Callable[[], float]
    _archive: OrderedDict[str, ResponseStats]
    _waiters: dict[str, list[asyncio.Future[ResponseStats]]]
    _added_latency: deque[float]
    _id_index: dict[str, int]
    _wake_scheduled: bool
    _gaps_seen: int
    _start_target: int
    _last_gap: int
    _target_frames: int
    _seg_w: int
    _seg_r: int
    _seg_disp: int
    _seg_end: list[int]
    _seg_played: list[int]
    _seg_gaps: list[int]
    _seg_gap_frames: list[int]
    _seg_first_t: list[float]
    _seg_audible_t: list[float]
    _seg_last_t: list[float]
    _seg_done: list[int]
    _slot_id: list[str]
    _slot_received: list[int]
    _slot_first_arrival: list[float]
    _slot_lateness: list[float]
    _slot_qstar: list[float]
    _slot_hold: list[float]
    _slot_reported: list[bool]

    _ms_to_frames: Callable[[float], int]
    _publish_hold: Callable[[], None]

    def response_stats(self, response_id: str) -> ResponseStats | None:
        idx = self._id_index.get(response_id)
        if idx is not None:
            return self._snapshot(idx)
        return self._archive.get(response_id)

    def heard_ms(self, response_id: str) -> float | None:
        """Milliseconds of the response that have come out of the device so far (None: unknown)."""
        st = self.response_stats(response_id)
        return None if st is None else st.heard_ms(self._clock())

    def stats(self) -> PlayerStats:
        lat = sorted(self._added_latency)

        def pct(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

        r = self.device_rate
        return PlayerStats(
            state=PlayState(self._state).name.lower(),
            target_ms=round(self.target.value_ms, 1),
            buffered_ms=round(self.buffered_ms, 1),
            underruns=self.gaps,
            underrun_ms=round(self._gap_ms_base + self.gap_frames * 1000.0 / r, 1),
            host_underflows=self.host_underflows,
            responses=self.responses_done,
            dropped_ms=round(self.dropped_frames * 1000.0 / r, 1),
            discarded_ms=round(self.discarded_frames * 1000.0 / self.rate, 1),
            callback_errors=self.callback_errors,
            heartbeat=self.heartbeat,
            device_rate=r,
            latency_ms=round(self.latency * 1000.0, 1),
            added_latency_ms_p50=pct(0.5),
            added_latency_ms_p95=pct(0.95),
        )

    def _snapshot(self, idx: int) -> ResponseStats:
        s = idx % NSEG
        r = self.device_rate
        done = self._seg_done[s]
        first = self._seg_first_t[s]
        audible = self._seg_audible_t[s]
        last = self._seg_last_t[s]
        return ResponseStats(
            response_id=self._slot_id[s],
            received_ms=self._slot_received[s] * 1000.0 / self.rate,
            played_ms=self._seg_played[s] * 1000.0 / r,
            gaps=self._seg_gaps[s],
            gap_ms=self._seg_gap_frames[s] * 1000.0 / r,
            first_arrival=self._slot_first_arrival[s] if self._slot_received[s] else None,
            first_output=first if first >= 0 else None,
            first_audible=audible if audible >= 0 else None,
            output_end=last if last >= 0 else None,
            lateness_ms=self._slot_lateness[s],
            q_star_ms=self._slot_qstar[s],
            interrupted=done == DONE_FLUSHED,
            finished=done != DONE_NO,
        )

    def finished_responses(self) -> list[ResponseStats]:
        """The most recent finished responses (up to 64), oldest first: a view for reports."""
        return list(self._archive.values())

    async def wait_finished(self, response_id: str) -> ResponseStats | None:
        """Wait until the response has been handed to the device completely (or was flushed)."""
        if response_id in self._archive:
            return self._archive[response_id]
        if response_id not in self._id_index:
            return None
        fut: asyncio.Future[ResponseStats] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(response_id, []).append(fut)
        return await fut

    # ------------------------------------------------------------------ events (producer)

    def _on_wake(self) -> None:
        self._wake_scheduled = False
        self.dispatch_events()

    def dispatch_events(self) -> None:
        """Fold what the callback recorded into the targets and the archive, and resolve the
        `wait_finished()` futures. Runs on the producer thread.

        Called from the loop when the callback wakes it, and by `begin()`; tests and the
        benchmark call it directly.
        """
        if self.gaps != self._gaps_seen:
            # Raise at once after a gap: the start target plus the silence we just had to play
            # would have covered it (this matters most for sources slower than real time, whose
            # lateness grows steadily rather than in one late chunk).
            self._gaps_seen = self.gaps
            start_ms = self._start_target * 1000.0 / self.device_rate
            if self.target.observe(start_ms + self._last_gap * 1000.0 / self.device_rate):
                self._target_frames = self._ms_to_frames(self.target.value_ms)
        # Archive finished responses, in order.
        while self._seg_disp < self._seg_r and self._seg_done[self._seg_disp % NSEG] != DONE_NO:
            idx = self._seg_disp
            s = idx % NSEG
            self._report_first(s)
            st = self._snapshot(idx)
            self._seg_disp = idx + 1
            rid = st.response_id
            self._id_index.pop(rid, None)
            self._archive[rid] = st
            while len(self._archive) > ARCHIVE:
                self._archive.popitem(last=False)
            self.responses_done += 1
            if st.received_ms > 0:
                self.target.response_done(st.q_star_ms, had_gap=st.gaps > 0)
                self._target_frames = self._ms_to_frames(self.target.value_ms)
                # (A flushed response's D* covers only its prefix: still a valid observation.)
                self.hold.response_done(self._slot_hold[s], had_gap=st.gaps > 0)
                self._publish_hold()
            for fut in self._waiters.pop(rid, ()):
                if not fut.done():
                    fut.set_result(st)
        for idx in range(self._seg_disp, self._seg_w):
            self._report_first(idx % NSEG)

    def _report_first(self, s: int) -> None:
        if self._slot_reported[s] or self._seg_audible_t[s] < 0:
            return
        self._slot_reported[s] = True
        first = self._seg_first_t[s]
        if self._slot_received[s] and first >= 0:
            self._added_latency.append((first - self._slot_first_arrival[s]) * 1000.0)
