"""The four `audio.echo` modes as filters on the microphone uplink (SPEC §5.7).

The uplink (agent/realtime/uplink.py) reads each microphone chunk and hands it to one `EchoFilter`, which
returns what goes upstream: the chunk itself, a cleaned version of it, or digital silence of the
same length. Silence rather than nothing keeps the server's audio timeline — and its VAD — in
step with real time.

* `none` — pass everything (hardware with its own echo cancellation).
* `half_duplex` — silence while the speaker plays and for `HALF_DUPLEX_TAIL_S` after (no
  barge-in by voice; the software `interrupt` still works, it does not use the microphone).
* `gate` — during playback, pass only chunks clearly louder than the expected echo (gate.py),
  after a warm-up at the start of each playback.
* `aec` — cancel the echo with AEC3 (aec.py) and send the cancelled signal. During playback the
  gate still decides, on the microphone signal, when the user barges in: AEC3 also suppresses a
  user who speaks more quietly than the echo (its residual-echo suppressor cannot tell them
  apart), and while it (re-)converges it lets bursts of echo through; judging barge-in on
  energies with the gate keeps both from deciding whether the assistant interrupts itself.
  The canceller runs on a worker thread (it releases the GIL), never in the audio callback and
  never blocking the event loop.

"Playing" is judged on the microphone's timeline from the one published output-activity signal
(agent/audio/activity.py, `Player.activity`): `speaking(now)` already includes the device output
latency (it is true until the last sample has left the speaker), and a chunk is treated as
echo-bearing while its capture started less than a tail after that. The echo reference is the
playout side's `OutputTap` (`Player.tap`), never the Player itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from agent.audio.activity import TAIL_S, OutputActivity, PlayedAudio
from agent.echo.aec import Canceller
from agent.echo.gate import EchoGate, frame_energy_db
from agent.echo.reference import MIC_RATE, ReferenceTap

log = logging.getLogger("voice-agent.echo")

HALF_DUPLEX_TAIL_S = TAIL_S  # room reverberation + input latency + one chunk, after the last sample
WARMUP_S = 1.0  # barge-in ignored this long after each playback starts (see docs/echo.md)
ERLE_MIN_DB_ABOVE_FLOOR = 20.0
SUPPRESSED_DB = 10.0  # a canceller output this much quieter than its input lost the user too  # chunks this far above the noise floor count towards the ERLE


def _db(x: np.ndarray) -> float:
    return float(frame_energy_db(x, 1)[0])


class EchoFilter(Protocol):
    """What the uplink calls once per microphone chunk."""

    mode: str

    async def process(self, chunk: bytes, t_end: float | None) -> bytes: ...

    def user_present(self) -> None:
        """The user is known to be talking to us now (the uplink's guard after the wake sound,
        which sends the raw microphone): a filter that lets speech through on evidence treats
        them as already heard, so a question that goes on past the guard is not cut while the
        evidence builds up again."""

    def summary(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class PlaybackTracker:
    """Is the speaker playing, as far as a microphone chunk is concerned, and since when?

    A playback session starts when the output activity first reports audible output and ends
    once it is neither audible nor busy (a response queued or rebuffering) for longer than the
    tail, so a starvation gap in the middle of an answer does not restart the warm-up.
    """

    def __init__(
        self, activity: OutputActivity, *, tail_s: float, warmup_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.activity = activity
        self.tail_s = tail_s
        self.warmup_s = warmup_s
        self.clock = clock
        self.last_audible: float | None = None
        self.in_session = False
        self.started = 0.0
        self.sessions = 0
        self.active = False
        self.in_tail = False  # the speaker went quiet less than a tail ago
        self.warming = False

    def update(self, t_start: float | None) -> None:
        """Call once per chunk; `t_start` = capture time of its first sample (None: now)."""
        now = self.clock()
        speaking = self.activity.speaking(now)
        if speaking:
            if not self.in_session:
                self.in_session = True
                self.started = now
                self.sessions += 1
            self.last_audible = now
        elif self.in_session and not self.activity.busy(now) and self.last_audible is not None \
                and now - self.last_audible > self.tail_s:
            self.in_session = False
        t = now if t_start is None else min(t_start, now)
        self.active = speaking or (
            self.last_audible is not None and t < self.last_audible + self.tail_s
        )
        self.in_tail = self.active and not speaking
        self.warming = self.in_session and now - self.started < self.warmup_s


class PassThrough:
    """`none`: the hardware (or the sound server) cancels the echo."""

    mode = "none"

    async def process(self, chunk: bytes, t_end: float | None) -> bytes:
        return chunk

    def user_present(self) -> None:
        """Nothing to do: everything passes anyway."""

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode}

    def close(self) -> None:
        pass


class HalfDuplex:
    """`half_duplex`: the microphone is closed while the assistant is audible, plus a tail."""

    mode = "half_duplex"

    def __init__(
        self, activity: OutputActivity, chunk_ms: int, *, tail_s: float = HALF_DUPLEX_TAIL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = PlaybackTracker(activity, tail_s=tail_s, warmup_s=0.0, clock=clock)
        self.chunk_s = chunk_ms / 1000.0
        self.held = 0
        self._silence = bytes(2 * MIC_RATE * chunk_ms // 1000)

    async def process(self, chunk: bytes, t_end: float | None) -> bytes:
        self.tracker.update(None if t_end is None else t_end - len(chunk) / 2 / MIC_RATE)
        if self.tracker.active:
            self.held += 1
            return self._silence if len(chunk) == len(self._silence) else bytes(len(chunk))
        return chunk

    def user_present(self) -> None:
        """Nothing to do: half-duplex decides by the speaker alone, and the guard outlasts its
        tail (the raw microphone goes upstream until then)."""

    def summary(self) -> dict[str, Any]:
        return {"mode": self.mode, "held_s": round(self.held * self.chunk_s, 2)}

    def close(self) -> None:
        pass


class GateFilter:
    """`gate`: pass audio during playback only when it is clearly louder than the echo."""

    mode = "gate"

    def __init__(
        self, activity: OutputActivity, played: PlayedAudio, chunk_ms: int, *,
        warmup_s: float = WARMUP_S, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tap = ReferenceTap(played, clock=clock)
        self.tracker = PlaybackTracker(activity, tail_s=HALF_DUPLEX_TAIL_S, warmup_s=warmup_s, clock=clock)
        self.gate = EchoGate(MIC_RATE * chunk_ms // 1000)
        self.clock = clock
        self._sessions_logged = 0
        self._resyncs_logged = 0

    def _decide(self, mic: np.ndarray, ref: np.ndarray, t_end: float | None) -> bool:
        self.tracker.update(None if t_end is None else t_end - mic.shape[0] / MIC_RATE)
        tr = self.tracker
        # The first playbacks also teach the gate the echo path: no barge-in until it knows it.
        # In the tail after the answer there is nothing left to barge into, while the echo of
        # its last words may still arrive late (a latency jump): hold, as half_duplex does.
        warming = tr.warming or (tr.active and not self.gate.trained)
        openings = self.gate.stats.openings
        passed = self.gate.process(mic, ref, playing=tr.active, warming=warming, hold=tr.in_tail)
        if self.tap.resyncs != self._resyncs_logged:
            if self._resyncs_logged:  # the first is the start, not a jump
                log.info("echo %s: reference re-synchronised, %+.1f ms", self.mode, self.tap.last_jump_ms)
            self._resyncs_logged = self.tap.resyncs
        if self.gate.stats.openings != openings:
            g = self.gate
            log.info("echo %s: microphone louder than the echo during playback: letting it through "
                     "(%.1f s into the playback; echo delay %d ms%s)", self.mode, self.clock() - tr.started,
                     round(g.lag * g.frame_ms + self.tap.lead_s * 1000.0), "" if g.lag_known else " (a guess)")
        if not tr.in_session and self._sessions_logged < tr.sessions:
            self._sessions_logged = tr.sessions
            log.debug("echo %s: playback ended; %s", self.mode, self.summary())
        return passed

    async def process(self, chunk: bytes, t_end: float | None) -> bytes:
        mic = np.frombuffer(chunk, dtype="<i2")
        ref = self.tap.chunk(mic.shape[0], t_end)
        return chunk if self._decide(mic, ref, t_end) else bytes(len(chunk))

    def user_present(self) -> None:
        self.gate.assume_user()

    def summary(self) -> dict[str, Any]:
        g = self.gate
        st = g.stats
        return {
            "mode": self.mode,
            "playback_chunks": st.active_chunks,
            "passed_chunks": st.passed_chunks,
            "warmup_chunks": st.warm_chunks,
            "openings": st.openings,
            "vetoes": st.vetoes,
            "echo_gain_db": round(g.gain_db, 1),
            "delay_ms": round(g.lag * g.frame_ms + self.tap.lead_s * 1000.0),
            "delay_estimated": g.lag_known,
            "reference_resyncs": self.tap.resyncs,
            "reference_slipped_ms": round(self.tap.slipped_ms, 1),
            "microphone_gaps": self.tap.mic_gaps,
        }

    def close(self) -> None:
        pass


class AecFilter(GateFilter):
    """`aec`: AEC3 with the played signal as reference; the gate decides about barge-in."""

    mode = "aec"

    def __init__(
        self, activity: OutputActivity, played: PlayedAudio, chunk_ms: int, *,
        warmup_s: float = WARMUP_S, clock: Callable[[], float] = time.monotonic,
        backend: Any | None = None, executor: ThreadPoolExecutor | None = None,
    ) -> None:
        super().__init__(activity, played, chunk_ms, warmup_s=warmup_s, clock=clock)
        self.canceller = Canceller(MIC_RATE * chunk_ms // 1000, backend=backend)
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="echo-aec")

    async def process(self, chunk: bytes, t_end: float | None) -> bytes:
        mic = np.frombuffer(chunk, dtype="<i2")
        ref = self.tap.chunk(mic.shape[0], t_end)
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(self._executor, self.canceller.process, mic, ref)
        if not self._decide(mic, ref, t_end):
            if self.tracker.active and _db(mic) > self.gate.noise_floor_db + ERLE_MIN_DB_ABOVE_FLOOR:
                self.canceller.account_echo(mic, out)  # echo only: nobody spoke (or barely)
            return bytes(len(chunk))
        if self.tracker.active and _db(out) < _db(mic) - SUPPRESSED_DB:
            # A barge-in over loud echo: AEC3's suppressor removes a user who is not louder than
            # the echo, and the server's VAD would hear nothing. Send what the microphone heard
            # (as the gate does) until the assistant has stopped.
            return chunk
        return out.tobytes()

    def summary(self) -> dict[str, Any]:
        s = super().summary()
        c = self.canceller
        erle, cpu = c.erle_db, c.cpu_ms_per_s
        s.update(
            erle_db=None if erle is None else round(erle, 1),
            erle_over_s=round(c.echo_s, 1),
            cpu_ms_per_s=None if cpu is None else round(cpu, 2),
        )
        return s

    def close(self) -> None:
        if self._own_executor:
            with contextlib.suppress(Exception):
                self._executor.shutdown(wait=False)
