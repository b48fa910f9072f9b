"""When has the user finished? The local end-of-turn decider (SPEC §10 `listen.end_of_turn: local`).

The server's VAD waits 800 ms of silence before it ends a turn: most of the voice-to-voice time.
A shorter silence alone cuts people off in mid-sentence pauses; a turn-completion model that
hears the prosody and the words so far tells "finished" from "thinking". The rule:

- speech (the local VAD's verdict per chunk) opens the turn; silence is counted in samples from
  the end of the last chunk that held speech; a run of speech chunks shorter than
  `min_speech_ms` (a click, a noise frame the VAD took for speech) neither opens a turn nor
  interrupts a silence;
- after `min_silence_ms` of silence the model is asked once about the turn's audio (from
  `preroll_ms` before the speech began, at most the last 8 s): P(complete) >= `threshold`
  ends the turn (with `confirm` > 1: that many consecutive asks in the same silence must say
  so, the later ones having heard more silence); otherwise it is asked again after every
  further `step_ms` of silence, so a pause costs at most one inference per step (CPU bounded);
- at `max_silence_ms` the turn ends anyway (the model's "not finished" cannot hold the user
  hostage); speech before that resets the silence and the model's steps.

Without a model (`probability=None`) it is the plain VAD rule: end after `max_silence_ms`.

Pure: no I/O, no clock, no imports of native code; time is the number of samples fed (16 kHz
mono int16). The audio ring is preallocated and bounded. The probability function is injected
(`agent.listen.turn_model.load_turn_model()` in the daemon, a plain function in tests) and is
called synchronously from `feed`, so call `feed` off the audio callback (the uplink's task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

RATE = 16000
MODEL_WINDOW_MS = 8000  # smart-turn reads at most the last 8 s

Probability = Callable[[np.ndarray], float]


@dataclass(frozen=True)
class TurnConfig:
    """The decision rule's knobs (milliseconds of audio, not wall time)."""

    # Defaults chosen on the tune half of bench/turn.py's labelled sets (bench/RESULTS.md §9.2):
    # the fewest cut-offs among the rules whose end → commit p50 fits SPEC §9's voice-to-voice
    # budget. Asked once per silence (step >= max - min), as pipecat does (it asks when its
    # VAD's 200 ms stop fires): the model says "complete" more often the more silence it hears,
    # in mid-sentence pauses as at ends, so re-asking only adds cut-offs.
    min_silence_ms: int = 100  # silence before the model is first asked
    step_ms: int = 1000  # then at most one inference per this much more silence
    max_silence_ms: int = 1000  # end the turn here whatever the model says
    threshold: float = 0.8  # P(complete) that ends the turn
    preroll_ms: int = 300  # audio before the speech onset the model also hears
    window_ms: int = MODEL_WINDOW_MS
    min_speech_ms: int = 40  # a shorter run of speech chunks (a click, a noise frame) is silence
    confirm: int = 1  # consecutive asks in one silence that must say P >= threshold

    def __post_init__(self) -> None:
        if not 0 < self.min_silence_ms <= self.max_silence_ms:
            raise ValueError("need 0 < min_silence_ms <= max_silence_ms")
        if self.step_ms <= 0 or not 0.0 <= self.threshold <= 1.0:
            raise ValueError("need step_ms > 0 and 0 <= threshold <= 1")
        if self.min_speech_ms < 0 or self.confirm < 1:
            raise ValueError("need min_speech_ms >= 0 and confirm >= 1")
        if not 0 < self.window_ms <= MODEL_WINDOW_MS or self.preroll_ms < 0:
            raise ValueError(f"need 0 < window_ms <= {MODEL_WINDOW_MS} and preroll_ms >= 0")


@dataclass(frozen=True)
class EndOfTurn:
    """The user has finished: commit the turn and ask for the answer.

    `reason` is "model" (P(complete) >= threshold) or "silence" (max_silence_ms reached, or
    the VAD-only rule); `probability` is the model's last answer (None if never asked);
    `speech_end_sample` counts the samples fed since the decider was made or reset, up to the
    end of the last chunk with speech; `decided_sample` up to the end of the deciding chunk.
    """

    reason: Literal["model", "silence"]
    silence_ms: int
    probability: float | None
    speech_end_sample: int
    decided_sample: int


def _ms(samples: int) -> int:
    return samples * 1000 // RATE


def _samples(ms: int) -> int:
    return ms * RATE // 1000


class EndOfTurnDecider:
    """Per-chunk end-of-turn decisions; resets itself after each EndOfTurn."""

    def __init__(self, config: TurnConfig | None = None, probability: Probability | None = None) -> None:
        self.config = config or TurnConfig()
        self._probability = probability
        c = self.config
        self._capacity = _samples(c.window_ms)
        self._ring = np.zeros(self._capacity, dtype=np.int16)
        self._fed = 0  # samples fed since construction or reset
        self._run = 0  # samples in the current run of consecutive speech chunks
        self.inferences = 0  # model calls since construction (not reset: for CPU accounting)
        self._clear_turn()

    def _clear_turn(self) -> None:
        self._speech_start: int | None = None  # sample where the turn's first speech chunk began
        self._speech_end = 0  # sample after the last chunk with speech
        self._next_ask = 0  # silence (samples) at which the model is asked next
        self._last_p: float | None = None
        self._agreed = 0  # consecutive asks in this silence with P >= threshold

    @property
    def in_turn(self) -> bool:
        """Speech was heard and the turn has not ended yet."""
        return self._speech_start is not None

    @property
    def silence_ms(self) -> int:
        """Silence since the last speech of the open turn (0 when no turn is open)."""
        return _ms(self._fed - self._speech_end) if self.in_turn else 0

    def reset(self) -> None:
        """Forget the turn and the audio (uplink closed, turn committed elsewhere, barge-in)."""
        self._fed = 0
        self._run = 0
        self._clear_turn()

    def feed(self, pcm: bytes, speech: bool) -> EndOfTurn | None:
        """One 16 kHz int16 chunk and whether the VAD heard speech in it; EndOfTurn when done."""
        x = np.frombuffer(pcm, dtype=np.int16)
        self._remember(x)
        self._fed += x.size
        c = self.config
        self._run = self._run + x.size if speech else 0
        if speech and self._run >= _samples(c.min_speech_ms):
            if self._speech_start is None:
                self._speech_start = self._fed - self._run
            self._speech_end = self._fed
            self._next_ask = _samples(c.min_silence_ms)
            self._agreed = 0
            return None
        if self._speech_start is None:
            return None
        silence = self._fed - self._speech_end
        if silence >= _samples(c.max_silence_ms):
            return self._end("silence")
        if self._probability is None or silence < self._next_ask:
            return None
        while self._next_ask <= silence:  # one inference per step, however long the chunk
            self._next_ask += _samples(c.step_ms)
        self.inferences += 1
        self._last_p = float(self._probability(self._turn_audio()))
        self._agreed = self._agreed + 1 if self._last_p >= c.threshold else 0
        if self._agreed >= c.confirm:
            return self._end("model")
        return None

    def _end(self, reason: Literal["model", "silence"]) -> EndOfTurn:
        done = EndOfTurn(
            reason=reason,
            silence_ms=_ms(self._fed - self._speech_end),
            probability=self._last_p,
            speech_end_sample=self._speech_end,
            decided_sample=self._fed,
        )
        self._clear_turn()
        return done

    def _remember(self, x: np.ndarray) -> None:
        """Keep the last `window_ms` of audio in the ring (oldest first at `_fed % capacity`)."""
        n, cap = x.size, self._capacity
        if n >= cap:
            pos = (self._fed + n - cap) % cap
            x, n = x[-cap:], cap
        else:
            pos = self._fed % cap
        first = min(n, cap - pos)
        self._ring[pos : pos + first] = x[:first]
        self._ring[: n - first] = x[first:]

    def _turn_audio(self) -> np.ndarray:
        """The turn's audio: from `preroll_ms` before its speech began, at most the ring's span."""
        assert self._speech_start is not None
        begin = max(0, self._speech_start - _samples(self.config.preroll_ms))
        n = min(self._fed - begin, self._capacity, self._fed)
        pos = self._fed % self._capacity
        return np.roll(self._ring, -pos)[-n:] if n else self._ring[:0]
