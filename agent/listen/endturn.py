"""`listen.end_of_turn: local` in the uplink (SPEC §10): the decider fed off the loop, barge-in.

The session runs without server VAD (as push-to-talk); this ends the user's turns instead. Per
microphone chunk that goes upstream while the assistant is quiet, the uplink calls `chunk()`:
the chunk is handed to one worker thread (inference costs ~65 ms: never in the audio callback,
never on the event loop) that runs the WebRTC VAD and `EndOfTurnDecider.feed` in capture order;
finished decisions are collected on the next chunk and become the front end's turn end plus a
`Commit`, exactly what `talk stop` does. While the answer is audible a second WebRTC VAD on the
loop (0.2 ms of CPU per audio second) watches the echo-filtered microphone: a run of speech of
`BARGE_IN_MS` is a barge-in (`Interrupt`) while the uplink is open; in half_duplex the filter
silences the microphone while the assistant speaks, so there is none there, as with server VAD,
and in wake_word mode the uplink is closed during the answer: the wake word stops it.

Resets (the server's buffer or the turn is gone): the uplink closing, a barge-in, a push-to-talk
turn, a session (re)attach. A reset is queued behind the chunks already handed over, and their
late decisions are dropped (a generation count). The queue is bounded: past `MAX_BACKLOG`
chunks the worker is not keeping up; the turn is dropped (reset) with a log line.
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agent.listen.frontend import Action, Commit, Interrupt, ListenFrontend
from agent.listen.turn import RATE, EndOfTurn, EndOfTurnDecider, TurnConfig
from agent.listen.waketrim import FrameVad, WakeCut

log = logging.getLogger("voice-agent.listen")

BARGE_IN_MS = 200  # local speech over the answer for this long interrupts it
ONSET_MS = 40  # speech that marks a wake-word turn as real (the server's speech_started)
MAX_BACKLOG = 50  # chunks handed to the worker and not yet decided (2 s at 40 ms chunks)


@dataclass(frozen=True)
class LocalTurnEnd:
    """A decision with its wall-clock end of speech (monotonic s), for the turn's latency."""

    end: EndOfTurn
    speech_end_at: float


class LocalEndOfTurn:
    """Decider + VADs + the worker thread for one uplink; see the module docstring."""

    def __init__(
        self, decider: EndOfTurnDecider, vad: Any, barge_vad: Any, trim_vad: FrameVad | None = None
    ) -> None:
        self.decider = decider
        self.vad = vad
        self.barge_vad = barge_vad
        # wake_word mode: where a wake turn's question starts (agent/listen/waketrim.py)
        self.wake_cut = WakeCut(trim_vad) if trim_vad is not None else None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="end-of-turn")
        self._jobs: deque[tuple[int, Future[LocalTurnEnd | None]]] = deque()
        self._gen = 0
        self._run_ms = 0.0  # loop-side VAD: current run of speech
        self._fed = False  # something was handed over since the last reset
        self.ends: dict[str, int] = {"model": 0, "silence": 0}
        self.barge_ins = 0
        self.overloads = 0

    # -- worker side ----------------------------------------------------------------------------

    def _work(self, pcm: bytes, t_end: float) -> LocalTurnEnd | None:
        done = self.decider.feed(pcm, self.vad(pcm))
        if done is None:
            return None
        lag_s = (done.decided_sample - done.speech_end_sample) / RATE
        return LocalTurnEnd(done, t_end - lag_s)

    def _reset_work(self) -> None:
        self.decider.reset()
        self.vad.reset()

    # -- loop side ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the open turn (queued behind the chunks already handed over)."""
        self._run_ms = 0.0
        self.barge_vad.reset()
        if not self._fed:
            return
        self._fed = False
        self._gen += 1
        self._pool.submit(self._reset_work)

    def chunk(
        self, fe: ListenFrontend, upstream: bytes, t_end: float, now: float, audible: bool, sent: bytes
    ) -> list[Action]:
        """One chunk after the front end has seen it: decisions due, barge-in, the next feed.

        `audible`: an answer is playing (a barge-in would cut it); `sent`: the audio that went
        upstream with this chunk (the chunk itself; with a pre-roll or a held wake turn's
        question when a turn opens), ending at `t_end`: the decider hears what the server has.
        """
        actions: list[Action] = []
        for done in self._collect():
            actions += self._ended(fe, done, now)
        chunk_ms = len(upstream) * 500 / RATE
        speech = self.barge_vad(upstream) if upstream else False
        self._run_ms = self._run_ms + chunk_ms if speech else 0.0
        if audible:
            # Only what the server would hear: in wake_word (and push_to_talk) mode the uplink
            # is closed while the answer plays, so the room cannot interrupt it; the wake word can.
            if self._run_ms >= BARGE_IN_MS and fe.uplink_open:
                self.barge_ins += 1
                log.info("local VAD: speech over the answer for %d ms: barge-in", self._run_ms)
                self.reset()
                actions.append(Interrupt())
            return actions
        if fe.turn == "talk" or not sent:
            self.reset()  # push-to-talk decides its own end; a closed uplink has no turn
            return actions
        if self._run_ms >= ONSET_MS:
            actions += fe.speech_started(now)
        if len(self._jobs) >= MAX_BACKLOG:
            self.overloads += 1
            log.warning("end of turn: the model is %d chunks behind; this turn is dropped", len(self._jobs))
            self.reset()
            return actions
        self._fed = True
        step = len(upstream) or 1280
        for i in range(0, len(sent), step):  # chunk-sized pieces: one VAD verdict each
            piece = sent[i : i + step]
            piece_end = t_end - (len(sent) - i - len(piece)) / (2 * RATE)
            self._jobs.append((self._gen, self._pool.submit(self._work, piece, piece_end)))
        return actions

    def _collect(self) -> list[LocalTurnEnd]:
        out: list[LocalTurnEnd] = []
        while self._jobs and self._jobs[0][1].done():
            gen, fut = self._jobs.popleft()
            done = fut.result()
            if done is not None and gen == self._gen:
                out.append(done)
        return out

    def _ended(self, fe: ListenFrontend, done: LocalTurnEnd, now: float) -> list[Action]:
        e = done.end
        self.ends[e.reason] += 1
        p = "-" if e.probability is None else f"{e.probability:.2f}"
        log.info("end of turn (local): %s after %d ms of silence, P(complete) %s",
                 e.reason, e.silence_ms, p)
        self._fed = False  # the decider cleared its turn itself
        return [*fe.turn_ended(now), Commit(speech_end_at=done.speech_end_at)]

    def status(self) -> dict[str, Any]:
        """SPEC §6 status `listen.end_of_turn` counts."""
        return {"ends": dict(self.ends), "inferences": self.decider.inferences,
                "barge_ins": self.barge_ins, "overloads": self.overloads}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def load_local_end_of_turn() -> LocalEndOfTurn:
    """Model + VADs; ListenConfigError (exit 78 naming `listen.end_of_turn`) if unusable."""
    from agent.listen.turn_model import load_turn_model
    from agent.listen.turn_vad import SpeechFrames

    model = load_turn_model()
    vad, barge_vad, trim_vad = (SpeechFrames("webrtc") for _ in range(3))
    return LocalEndOfTurn(EndOfTurnDecider(TurnConfig(), model), vad, barge_vad, trim_vad)
