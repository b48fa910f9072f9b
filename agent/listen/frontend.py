"""What microphone audio goes upstream (SPEC §10): a pure state machine, no I/O, time passed in.

The uplink feeds every microphone chunk (16 kHz mono int16) through `chunk()` with its end time
and whether the assistant is speaking, plus the local VAD's verdict when `listen.vad` is on; it
forwards wake-word detections, the service's turn events and the control commands. Each call
returns typed actions for the uplink to carry out in order. Keeping the decision pure makes every
mode testable sample by sample and lets the benchmark replay a whole day in seconds.

Sample bookkeeping: the front end counts the samples it was fed; a detection's `end_sample`
counts the same samples in the wake-word detector, so the pre-roll of a wake turn starts exactly
`preroll_ms` before the wake word ended, whatever the chunk size. The pre-roll ring is bounded.

Uplink open = the mode's base state (always: open; always + vad: voiced or trailing; otherwise
closed) OR a turn that wants audio (opened by a wake word, `listen`, `talk start`, or the
follow-up window after an answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, Union

RATE = 16000
Mode = Literal["always", "wake_word", "push_to_talk"]
MODES: tuple[str, ...] = ("always", "wake_word", "push_to_talk")
EarconKind = Literal["wake", "end", "error", "timer"]
_RING_SLACK_MS = 2000  # detections arrive at most this late after the audio that ended them


@dataclass(frozen=True)
class SendAudio:
    """Append this PCM (16 kHz mono int16) upstream; the first one of a turn carries the pre-roll."""

    pcm: bytes


@dataclass(frozen=True)
class OpenUplink:
    """Start sending: the session is warm, audio follows in SendAudio actions."""


@dataclass(frozen=True)
class CloseUplink:
    """Stop sending microphone audio (`reason` is for the log)."""

    reason: str


@dataclass(frozen=True)
class Commit:
    """End the user's turn and ask for the answer: omni commit + response.create, pipeline finalize.

    `speech_end_at` (monotonic s): when the user stopped speaking, if known (local end of turn);
    the turn's latency counts from there, else from the commit."""

    speech_end_at: float | None = None


@dataclass(frozen=True)
class Interrupt:
    """Stop the answer being played (stop word, or a button pressed while speaking)."""


@dataclass(frozen=True)
class PlayEarcon:
    kind: EarconKind


@dataclass(frozen=True)
class Wake:
    """A wake word was heard (log it with its score; count it)."""

    word: str
    score: float


Action = Union[SendAudio, OpenUplink, CloseUplink, Commit, Interrupt, PlayEarcon, Wake]


class Detection(Protocol):
    """What the front end reads from a wake-word detection (see wakeword.WakeDetection)."""

    word: str
    score: float
    end_sample: int


@dataclass(frozen=True)
class FrontendConfig:
    """`listen.*` settings plus the timings the front end derives from the session's config."""

    mode: Mode = "always"
    vad: bool = False
    preroll_ms: int = 400
    follow_up_s: float = 6.0
    earcons: bool = True
    # always + vad: audio keeps flowing this long after speech so the server's VAD can end the
    # turn; the lead passes the session's silence_duration_ms + 300.
    trailing_ms: int = 1100
    no_speech_s: float = 8.0  # a turn opened without speech closes after this (earcon "end")
    max_turn_s: float = 60.0  # a turn the service never ends (a television) closes after this
    answer_timeout_s: float = 60.0  # waiting for an answer that never finishes
    # Manual turns (listen.end_of_turn: local) in wake_word mode: a wake turn's audio is held
    # from `preroll_ms` before the detection until `release(sample)` says where the question
    # starts (agent/listen/waketrim.py), so the one commit does not carry the wake word.
    hold_wake: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"listen.mode must be one of {', '.join(MODES)}, not {self.mode!r}")


# Turn states: None (no turn), "listening" (opened, no speech yet), "speech" (the service heard
# speech), "talk" (push-to-talk or a `listen` turn in push_to_talk mode), "follow_up" (after an
# answer, no wake word needed), "waiting" (turn ended, the answer is on its way).
_SENDING_TURNS = ("listening", "speech", "talk", "follow_up")


class ListenFrontend:
    """The listening front end's decisions, fed by the uplink; see the module docstring."""

    def __init__(self, config: FrontendConfig) -> None:
        self.config = config
        self._preroll = config.preroll_ms * RATE // 1000
        self._ring_cap = (config.preroll_ms + _RING_SLACK_MS) * RATE // 1000
        self._ring = bytearray()
        self._samples = 0  # samples fed since start
        self._now = 0.0
        self._speaking = False
        self._open = False
        self._base_open = config.mode == "always" and not config.vad
        self._last_voice = float("-inf")
        self._turn: str | None = None
        self._turn_since = 0.0  # when the turn entered its current state
        self._talk_auto = False  # a `listen` turn in push_to_talk mode: ends by the local VAD
        self._heard_voice = False
        self._hold: tuple[int, int] | None = None  # (held from, detection) of a held wake turn
        self.wakes = 0
        self.sent_samples = 0

    # -- status -----------------------------------------------------------------------------

    @property
    def uplink_open(self) -> bool:
        return self._open

    @property
    def sent_s(self) -> float:
        """Seconds of microphone audio sent upstream since start (status `listen.sent_s`)."""
        return self.sent_samples / RATE

    @property
    def turn(self) -> str | None:
        return self._turn

    @property
    def samples(self) -> int:
        return self._samples

    @property
    def holding(self) -> tuple[int, int] | None:
        """A wake turn waiting for `release`: (first held sample, the detection's sample)."""
        return self._hold

    def since(self, sample: int) -> bytes:
        """Microphone audio from `sample` (counted as `samples`) to now, as far as the ring goes."""
        return self._tail(self._samples - sample)

    def recent(self, ms: int) -> bytes:
        """The last `ms` of microphone audio (pre-roll + 2 s are always kept), e.g. to re-send
        the pre-roll when a session rotation or reconnect lands inside an open turn."""
        return self._tail(ms * RATE // 1000)

    # -- inputs -----------------------------------------------------------------------------

    def start(self) -> list[Action]:
        """Initial actions: in `always` mode without VAD the uplink opens at once, as before."""
        return self._sync([], send_from=None)

    def chunk(
        self, pcm: bytes, t_end: float, speaking: bool = False, voiced: bool | None = None
    ) -> list[Action]:
        """One microphone chunk ending at `t_end` (s); `voiced` is the local VAD, if any."""
        self._now = t_end
        self._speaking = speaking
        start = self._samples
        self._ring += pcm
        if len(self._ring) > 4 * self._ring_cap:  # trim rarely: amortised O(1) per chunk
            del self._ring[: len(self._ring) - 2 * self._ring_cap]
        self._samples += len(pcm) // 2
        actions: list[Action] = []
        self._expire(t_end, actions)
        if voiced:
            self._last_voice = t_end
            self._heard_voice = True
        cfg = self.config
        if cfg.mode == "always" and cfg.vad and voiced is not None:
            self._base_open = t_end - self._last_voice < cfg.trailing_ms / 1000
        if self._turn == "talk" and self._talk_auto and voiced is not None:
            self._auto_end_talk(t_end, actions)
        was_open = self._open
        self._sync(actions, send_from=start - self._preroll)
        if was_open and self._open and self._hold is None:
            self._send(actions, pcm)
        return actions

    def wake(self, detection: Detection) -> list[Action]:
        """A wake-word detection; while the assistant speaks it is the stop word."""
        self.wakes += 1
        actions: list[Action] = [Wake(detection.word, detection.score)]
        if self._speaking:
            actions.append(Interrupt())
        if self.config.mode == "wake_word":
            if self._turn in (None, "waiting"):
                end = min(detection.end_sample, self._samples)
                if self.config.hold_wake and not self._open:
                    self._open_turn("listening", actions, send_from=None)
                    self._hold = (max(0, end - self._preroll), end)
                else:
                    self._open_turn("listening", actions, send_from=end - self._preroll)
            elif self._turn == "follow_up":
                self._set_turn("listening")
                self._earcon(actions, "wake")
        return actions

    def release(self, sample: int) -> list[Action]:
        """A held wake turn's question starts at `sample`: send from there (never before the
        pre-roll), then everything live as in any turn."""
        actions: list[Action] = []
        if self._hold is not None and self._turn == "listening" and self._open:
            self._send(actions, self.since(max(sample, self._hold[0])))
        self._hold = None
        return actions

    def listen(self, now: float) -> list[Action]:
        """The `listen` command: one turn now, as if the wake word had been heard, in any mode."""
        self._now = now
        actions: list[Action] = []
        if self._speaking:
            actions.append(Interrupt())
        if self._turn in _SENDING_TURNS:
            return actions
        turn = "talk" if self.config.mode == "push_to_talk" else "listening"
        self._talk_auto = turn == "talk"
        self._heard_voice = False
        self._open_turn(turn, actions, send_from=self._samples - self._preroll)
        return actions

    def talk_start(self, now: float) -> list[Action]:
        """Push-to-talk pressed: audio goes upstream from now on (no pre-roll: SPEC §6)."""
        self._now = now
        actions: list[Action] = []
        if self._speaking:
            actions.append(Interrupt())
        self._talk_auto = False
        self._set_turn("talk")
        self._sync(actions, send_from=self._samples)
        return actions

    def talk_stop(self, now: float) -> list[Action]:
        """Push-to-talk released: stop sending and, in push_to_talk mode, ask for the answer."""
        self._now = now
        actions: list[Action] = []
        if self._turn != "talk":
            return actions
        self._end_talk(actions)
        return actions

    def speech_started(self, now: float) -> list[Action]:
        """The service heard the user start (server VAD / ASR): the turn is real, keep it open."""
        self._now = now
        if self._turn in ("listening", "follow_up"):
            self._set_turn("speech")
        return []

    def turn_ended(self, now: float) -> list[Action]:
        """The service ended the user's turn (speech_stopped / committed): stop sending."""
        self._now = now
        actions: list[Action] = []
        if self._turn in ("listening", "speech", "follow_up"):
            self._set_turn("waiting")
            self._sync(actions, send_from=None)
        return actions

    def answer_finished(self, now: float) -> list[Action]:
        """The answer has been played (or failed): open the follow-up window in wake_word mode."""
        self._now = now
        actions: list[Action] = []
        if self._turn != "waiting":
            return actions
        if self.config.mode == "wake_word" and self.config.follow_up_s > 0:
            self._set_turn("follow_up")
            self._sync(actions, send_from=self._samples)  # no pre-roll: it holds the answer's echo
        else:
            self._set_turn(None)
        return actions

    # -- internals --------------------------------------------------------------------------

    def _set_turn(self, turn: str | None) -> None:
        if turn not in ("listening", "speech"):
            self._hold = None  # a hold belongs to its wake turn, nothing after it
        self._turn = turn
        self._turn_since = self._now

    def _open_turn(self, turn: str, actions: list[Action], send_from: int) -> None:
        self._set_turn(turn)
        self._earcon(actions, "wake")
        if self._open:
            return  # already streaming (always mode, or a VAD-opened uplink): nothing to re-send
        self._sync(actions, send_from=send_from)

    def _end_talk(self, actions: list[Action]) -> None:
        self._set_turn("waiting")
        self._sync(actions, send_from=None)
        if self.config.mode == "push_to_talk":
            actions.append(Commit())

    def _auto_end_talk(self, now: float, actions: list[Action]) -> None:
        """A `listen` turn in push_to_talk mode (no server VAD) ends when the local VAD says so."""
        silent_for = now - self._last_voice
        if self._heard_voice and silent_for >= self.config.trailing_ms / 1000:
            self._end_talk(actions)
        elif not self._heard_voice and now - self._turn_since >= self.config.no_speech_s:
            self._set_turn(None)
            self._sync(actions, send_from=None)
            self._earcon(actions, "end")

    def _expire(self, now: float, actions: list[Action]) -> None:
        """Time-outs, checked on every chunk (chunks arrive every 40 ms)."""
        cfg = self.config
        age = now - self._turn_since
        if (
            (self._turn == "listening" and age >= cfg.no_speech_s)
            or (self._turn == "follow_up" and age >= cfg.follow_up_s)
            or (self._turn == "speech" and age >= cfg.max_turn_s)
        ):
            self._set_turn(None)
            self._sync(actions, send_from=None)
            self._earcon(actions, "end")
        elif self._turn == "waiting" and age >= cfg.answer_timeout_s:
            self._set_turn(None)

    def _sync(self, actions: list[Action], send_from: int | None) -> list[Action]:
        """Open or close the uplink to match the state; an opening sends from `send_from`."""
        want = self._base_open or self._turn in _SENDING_TURNS
        if want and not self._open:
            self._open = True
            actions.append(OpenUplink())
            if send_from is not None and send_from < self._samples:
                self._send(actions, self._tail(self._samples - send_from))
        elif self._open and not want:
            self._open = False
            actions.append(CloseUplink(self._turn or "idle"))
        return actions

    def _tail(self, samples: int) -> bytes:
        """The last `samples` samples fed (fewer if the ring holds less)."""
        n = min(len(self._ring) // 2, max(0, samples))
        return bytes(self._ring[len(self._ring) - 2 * n :]) if n else b""

    def _send(self, actions: list[Action], pcm: bytes) -> None:
        if pcm:
            self.sent_samples += len(pcm) // 2
            actions.append(SendAudio(pcm))

    def _earcon(self, actions: list[Action], kind: EarconKind) -> None:
        if self.config.earcons:
            actions.append(PlayEarcon(kind))
