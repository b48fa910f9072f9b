"""Where the question starts after a wake word, for turns we commit ourselves (SPEC §10, issue 18).

With server VAD the service segments the question out of whatever we send. With manual turns
(`listen.end_of_turn: local`) one commit carries everything sent since the turn opened, and the
wake turn opens with `preroll_ms` of audio before the detection (so a user who runs straight on
loses no word), which holds the wake word's tail: the ASR would hear "…nabu, what time is it".
So a wake turn holds its audio back until this rule has found the cut, and sends from there.

The rule, fed one 20 ms frame of WebRTC VAD verdict at a time from the start of the pre-roll,
knowing the detection sample D (the detector reports 0–300 ms after the word ended):

- **gap**: a run of at least `min_gap_ms` of non-speech that lasts to at least D - `lookback_ms`
  (earlier runs are inside or before the wake word) ends the wake word; the first speech frame
  after it is the question's onset. Cut `pad_ms` before the onset, never before the run began
  (WebRTC's VAD lets go of speech 60–100 ms late, so the run's start is already past the word).
  A user who pauses longer (waiting for the earcon) is waited for: the turn's `no_speech_s`
  bounds that.
- **run-on**: still speaking at D + `run_on_ms` with no gap: the user ran the question into the
  wake word. Cut at D - `run_on_back_ms` (an estimate of where the word ended) rather than later:
  a little of the wake word's tail is better than the question's first word lost.

The cut is never before the first frame fed. Pure: no I/O, no clock; samples at 16 kHz.
`WakeCut` runs the rule for the front end's held wake turn (the VAD injected).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from agent.listen.frontend import Action, ListenFrontend

log = logging.getLogger("voice-agent.listen")

RATE = 16000


@dataclass(frozen=True)
class TrimConfig:
    """The rule's knobs, in milliseconds of audio (measured: bench/waketrim.py)."""

    frame_ms: int = 20
    min_gap_ms: int = 20
    lookback_ms: int = 250
    pad_ms: int = 60
    run_on_ms: int = 300
    run_on_back_ms: int = 250

    def __post_init__(self) -> None:
        if self.frame_ms <= 0 or self.min_gap_ms < self.frame_ms:
            raise ValueError("need frame_ms > 0 and min_gap_ms >= frame_ms")
        if min(self.lookback_ms, self.pad_ms, self.run_on_ms, self.run_on_back_ms) < 0:
            raise ValueError("the rule's durations must not be negative")

    @property
    def frame_samples(self) -> int:
        return self.frame_ms * RATE // 1000


@dataclass(frozen=True)
class Cut:
    """Send the turn's audio from `sample` on (same count as the frames fed)."""

    sample: int
    reason: Literal["gap", "run_on"]


def _samples(ms: int) -> int:
    return ms * RATE // 1000


class WakeTrim:
    """One wake turn's cut; feed frames in order from `start` until `feed` returns a Cut."""

    def __init__(self, start: int, wake_sample: int, config: TrimConfig = TrimConfig()) -> None:
        self.config = config
        self.start = start
        self.wake_sample = wake_sample
        self._pos = start  # first sample of the next frame
        self._run_start: int | None = None  # the current run of non-speech began here
        self.cut: Cut | None = None

    @property
    def position(self) -> int:
        """Samples fed so far, counted from the same origin as `start`."""
        return self._pos

    def feed(self, speech: bool) -> Cut | None:
        """One frame's VAD verdict; the Cut once it is known (then None for ever after)."""
        if self.cut is not None:
            return None
        cfg = self.config
        s = self._pos
        self._pos += cfg.frame_samples
        if not speech:
            if self._run_start is None:
                self._run_start = s
            return None
        run_start, self._run_start = self._run_start, None
        d = self.wake_sample
        if run_start is not None and s - run_start >= _samples(cfg.min_gap_ms) \
                and s >= d - _samples(cfg.lookback_ms):
            return self._decide(max(run_start, s - _samples(cfg.pad_ms)), "gap")
        if self._pos >= d + _samples(cfg.run_on_ms):
            return self._decide(d - _samples(cfg.run_on_back_ms), "run_on")
        return None

    def _decide(self, sample: int, reason: Literal["gap", "run_on"]) -> Cut:
        self.cut = Cut(max(self.start, sample), reason)
        return self.cut


class FrameVad(Protocol):
    """Speech in one frame of 16 kHz int16 PCM (agent.listen.turn_vad.SpeechFrames)."""

    def __call__(self, pcm: bytes) -> bool: ...

    def reset(self) -> None: ...


class WakeCut:
    """Finds the cut of the front end's held wake turn and releases it, once per chunk.

    Called after the front end (and the wake-word detector) saw the chunk: a new hold is
    scanned from its first held sample (the pre-roll) on, later chunks frame by frame, so the
    VAD hears every held sample once, in order. WebRTC's VAD costs ~0.2 ms per audio second.
    """

    def __init__(self, vad: FrameVad, config: TrimConfig = TrimConfig()) -> None:
        self.vad = vad
        self.config = config
        self._rule: WakeTrim | None = None
        self.cuts: dict[str, int] = {"gap": 0, "run_on": 0}

    def chunk(self, fe: ListenFrontend) -> list[Action]:
        hold = fe.holding
        if hold is None:
            self._rule = None
            return []
        rule = self._rule
        if rule is None or (rule.start, rule.wake_sample) != hold:
            rule = self._rule = WakeTrim(hold[0], hold[1], self.config)
            self.vad.reset()
        f = self.config.frame_samples
        frames = (fe.samples - rule.position) // f
        pcm = fe.since(rule.position)[: frames * f * 2]
        for i in range(len(pcm) // (2 * f)):
            cut = rule.feed(self.vad(pcm[i * 2 * f : (i + 1) * 2 * f]))
            if cut is not None:
                self.cuts[cut.reason] += 1
                log.info("wake turn: the question starts %+d ms from the wake word's detection (%s)",
                         (cut.sample - rule.wake_sample) * 1000 // RATE, cut.reason)
                self._rule = None
                return fe.release(cut.sample)
        return []
