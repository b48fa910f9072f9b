"""Pipeline mode's conversation rules as a Sans-I/O state machine: events in, actions out.

`PipelineConversation` decides; `agent.pipeline.PipelineMode` executes (tasks, the LLM stream,
synthesis, the player, the status). Nothing here awaits, opens a socket or reads a clock: every
event carries `now`, and everything the mode must do comes back as a list of typed actions, in the
order they must be executed. So the rules can be replayed from event sequences in milliseconds.

**Responses.** A turn (a final transcript, or `ask`) and an announcement (`say`) each get a
response id (`turn-N`, `say-N`). A response is *queued* until the synthesis lane is free, then
*produced* (`Produce`: the mode streams the LLM and synthesis, feeding audio through `audio()`),
then *played out* (`AwaitPlayout`: the mode waits for the player and reports `output_finished`),
then *done* (`TurnDone` / `AnnouncementDone`).

**One voice at a time.** Only one response is produced at a time, in the order they were asked
for (the player plays responses in the order they begin). An announcement waits for the answer
being synthesized and plays after it; a turn waits for a running announcement the same way.

**Barge-in** (user speech, or `interrupt`, while a turn is thinking or speaking, or anything is
being produced or played): `Flush` first (silence within one device period), then `Cancel` the
current turn and whatever is being produced; a queued turn is dropped. A new turn cuts off a turn
still in progress the same way without counting a barge-in (normally the user's speech already
did). Announcements are not cut off by a turn: one queued stays queued and plays, and a turn
asked while one is speaking waits for it. (The exception, unchanged from before: when a turn is
still in progress, superseding it flushes the output and cancels whatever is being produced, an
announcement included.)

**History** holds what was actually said: the text sent to synthesis, or, when the answer was cut
off, an estimate of the part that was heard (`spoken_prefix`) marked with "…" — cut off by a
barge-in, or by the LLM or synthesis failing mid-answer; and the turn's tool exchange (calls and
results, `ToolExchange`) before it, also when the answer was cut off or failed after the calls:
they happened. A turn with nothing said and no calls is left out.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Literal

from agent.conversation.actions import BargeIn, Begin, End, ErrorEarcon, Feed, Flush, SetState
from agent.llm_history import Conversation, ToolExchange
from agent.status import AgentState

CUT_MARK = "…"  # ends an answer the user heard only part of
CHARS_PER_S = 14.0  # typical synthesized speech rate, for the heard-text estimate
BYTES_PER_MS = 48  # 24 kHz, 16-bit mono

Outcome = Literal["done", "cancelled", "failed"]


def spoken_prefix(text: str, heard_ms: float, audio_ms: float, complete: bool) -> str:
    """Estimate the part of `text` the user heard before a barge-in.

    The audio received covers all of `text` if synthesis completed, else about `CHARS_PER_S`
    characters per second of it; the heard share of that audio is taken proportionally and cut
    back to a word boundary. "…" marks the answer as cut off for the LLM.
    """
    text = text.strip()
    if not text or heard_ms <= 0 or audio_ms <= 0:
        return ""
    covered = len(text) if complete else min(len(text), int(audio_ms / 1000 * CHARS_PER_S))
    n = int(covered * min(1.0, heard_ms / audio_ms))
    if n >= len(text):
        return text
    cut = text.rfind(" ", 0, n + 1)
    prefix = text[: cut if cut > 0 else n].rstrip(" ,;:")
    return prefix + CUT_MARK if prefix else ""


# --- actions (executed by the mode, in order) --------------------------------------------------


@dataclass(frozen=True)
class Cancel:
    """Cancel the production of `rid` (LLM request, feeding, synthesis task)."""

    rid: str


@dataclass(frozen=True)
class NewTurn:
    """A turn exists from now on (the mode's `Turn` record); it is produced on `Produce`."""

    rid: str
    heard: str
    speech_end_at: float


@dataclass(frozen=True)
class NewAnnouncement:
    """An announcement exists from now on; it is produced on `Produce`."""

    rid: str
    text: str


@dataclass(frozen=True)
class Produce:
    """The lane is `rid`'s: stream it into synthesis and report `audio()` and `produced()`."""

    rid: str


@dataclass(frozen=True)
class AwaitPlayout:
    """Wait until the player has played (or flushed) `rid`, then report `output_finished()`."""

    rid: str


@dataclass(frozen=True)
class HeardMs:
    """`rid` was cut off after `ms` of it came out of the speaker."""

    rid: str
    ms: float


@dataclass(frozen=True)
class Latency:
    """End of the user's speech → first audible answer sample, for an uninterrupted turn."""

    rid: str
    ms: float


@dataclass(frozen=True)
class TurnDone:
    """The turn is over; `answered` is all text sent to synthesis; `count` it in the status."""

    rid: str
    answered: str
    interrupted: bool
    latency_ms: float | None
    count: bool


@dataclass(frozen=True)
class AnnouncementDone:
    rid: str
    interrupted: bool


Action = (SetState | Flush | BargeIn | Cancel | NewTurn | NewAnnouncement | Produce | Begin | Feed
          | End | AwaitPlayout | HeardMs | Latency | TurnDone | AnnouncementDone | ErrorEarcon)

_BUSY_STATES = frozenset({AgentState.THINKING, AgentState.SPEAKING})
_SPEAKING = frozenset({AgentState.SPEAKING})


class Phase(enum.Enum):
    QUEUED = "queued"  # waiting for the lane
    PRODUCING = "producing"  # LLM and/or synthesis running
    PLAYING = "playing"  # production over; the player may still be playing it
    DONE = "done"


@dataclass
class Response:
    """What the core knows about one turn or announcement."""

    rid: str
    kind: Literal["turn", "say"]
    text: str  # the user's words (turn) or the announcement
    speech_end_at: float | None = None
    phase: Phase = Phase.QUEUED
    audio_bytes: int = 0  # audio handed to the player
    complete: bool = False  # synthesis ended normally: all text sent was spoken
    interrupted: bool = False
    cancelling: bool = False  # `Cancel` was asked for: its audio from now on is late
    failed: bool = False
    text_sent: str = ""  # everything handed to synthesis
    tools: ToolExchange | None = None  # the calls made while producing it
    latency_ms: float | None = None


class PipelineConversation:
    """Turns, announcements, barge-in, history and the shown state; see the module docstring."""

    def __init__(self, system_prompt: str, history_turns: int, *, idle_state: AgentState) -> None:
        self.history = Conversation(system_prompt, history_turns)
        self.idle_state = idle_state
        self.stopping = False
        self.last_speech_started_at: float | None = None
        self.responses: dict[str, Response] = {}
        self._seq = 0
        self._queue: deque[str] = deque()
        self._lane: str | None = None  # the response being produced
        self._current_turn: str | None = None  # the latest turn, until it is done
        self._speech_end_at: float | None = None

    # --- queries ---------------------------------------------------------------------------------

    def producing(self) -> bool:
        """The current turn is thinking or synthesizing, or anything is being synthesized."""
        turn = self._turn()
        return self._lane is not None or (
            turn is not None and turn.phase in (Phase.QUEUED, Phase.PRODUCING))

    def turn_in_progress(self) -> bool:
        """The latest turn is not done yet (its answer may still be playing)."""
        turn = self._turn()
        return turn is not None and turn.phase is not Phase.DONE

    def voiced(self, rid: str) -> bool:
        """Some audio of `rid` reached the player (a failure after it cuts the answer short)."""
        r = self.responses.get(rid)
        return r is not None and r.audio_bytes > 0

    @property
    def lane(self) -> str | None:
        return self._lane

    # --- user and control events -----------------------------------------------------------------

    def speech_started(self, now: float, playing: bool) -> list[Action]:
        """The ASR heard the user start speaking; `playing`: the player is busy."""
        self.last_speech_started_at = now
        return self._barge_in(playing) or [SetState(AgentState.LISTENING)]

    def speech_stopped(self, now: float) -> list[Action]:
        self._speech_end_at = now
        return []

    def transcript(self, text: str, now: float) -> list[Action]:
        """A final transcript starts a turn (latency counts from the end of the speech)."""
        text = text.strip()
        speech_end, self._speech_end_at = self._speech_end_at, None
        if not text or self.stopping:
            return []
        return self._start_turn(text, speech_end or now)

    def ask(self, text: str, now: float) -> list[Action]:
        """`ask`: a turn with `text` as the user's words, as if they had just said it."""
        return self._start_turn(text, now)

    def say(self, text: str) -> list[Action]:
        """`say`: speak `text` verbatim after whatever is being produced now."""
        self._seq += 1
        rid = f"say-{self._seq}"
        self.responses[rid] = Response(rid, "say", text)
        self._queue.append(rid)
        return [NewAnnouncement(rid, text), *self._advance()]

    def interrupt(self, now: float, playing: bool) -> list[Action]:
        """The `interrupt` command: a barge-in without speech."""
        return self._barge_in(playing)

    # --- production events -----------------------------------------------------------------------

    def audio(self, rid: str, pcm: bytes) -> list[Action]:
        """Synthesized audio of `rid` arrived; the first chunk opens it in the player."""
        r = self.responses.get(rid)
        if r is None or r.phase is not Phase.PRODUCING or r.cancelling:
            return []  # late audio of a cut-off response
        actions: list[Action] = []
        if r.audio_bytes == 0:
            actions += [Begin(rid), SetState(AgentState.SPEAKING)]
        r.audio_bytes += len(pcm)
        actions.append(Feed(rid, pcm))
        return actions

    def synthesis_complete(self, rid: str) -> list[Action]:
        """The synthesis of `rid` ended normally: everything sent to it was spoken."""
        self.responses[rid].complete = True
        return []

    def produced(self, rid: str, outcome: Outcome, text_sent: str = "",
                 tools: ToolExchange | None = None) -> list[Action]:
        """The production of `rid` ended (`done`, `cancelled` by a `Cancel`, or `failed`). A turn
        that failed unasked (no barge-in was cutting it off) plays the error earcon after what
        of its answer is queued: the user asked and gets no (more) answer. `tools`: the calls it
        made, kept in the history whatever the outcome."""
        r = self.responses[rid]
        actions: list[Action] = []
        if r.phase is Phase.PRODUCING:
            actions.append(End(rid))
        if outcome == "failed" and r.kind == "turn" and not r.cancelling:
            actions.append(ErrorEarcon())
        r.text_sent = text_sent
        r.tools = tools
        r.interrupted = r.interrupted or outcome == "cancelled"
        r.failed = outcome == "failed"
        r.phase = Phase.PLAYING
        if self._lane == rid:
            self._lane = None
        return [*actions, *self._advance(), AwaitPlayout(rid)]

    def output_finished(
        self, rid: str, now: float, *, flushed: bool, heard_ms: float | None = None,
        first_audible: float | None = None,
    ) -> list[Action]:
        """The player is done with `rid`: played out, or `flushed` after `heard_ms` of it."""
        r = self.responses[rid]
        actions: list[Action] = []
        if flushed:
            r.interrupted = True
            actions.append(HeardMs(rid, heard_ms or 0.0))
        if r.kind == "say":
            r.phase = Phase.DONE
            del self.responses[rid]
            actions.append(AnnouncementDone(rid, r.interrupted))
            if not self.producing():
                actions.append(SetState(self.idle_state, only_from=_SPEAKING))
            return actions
        if first_audible is not None and r.speech_end_at is not None and not r.interrupted:
            r.latency_ms = (first_audible - r.speech_end_at) * 1000.0
            actions.append(Latency(rid, r.latency_ms))
        said = self._said(r, heard_ms if flushed else None)
        if said or r.tools:
            self.history.add(r.text, said, r.tools)
        r.phase = Phase.DONE
        if self._current_turn != rid:
            del self.responses[rid]
        actions.append(TurnDone(rid, r.text_sent.strip(), r.interrupted, r.latency_ms,
                                count=not r.failed or r.audio_bytes > 0))
        if not self.producing():
            actions.append(SetState(self.idle_state, only_from=_BUSY_STATES))
        return actions

    # --- rules -----------------------------------------------------------------------------------

    def _turn(self) -> Response | None:
        return self.responses.get(self._current_turn) if self._current_turn else None

    @staticmethod
    def _said(r: Response, heard_ms: float | None) -> str:
        """What the user heard of the answer: all of it, or (cut off) an estimate marked "…".

        A failed answer is cut off too, though nobody barged in: by the LLM failing after some
        sentences were spoken (synthesis completed, all of them played), or by synthesis failing
        (all audio that arrived was played). Without the mark the model would take it for a full
        answer and build on what the user never heard."""
        audio_ms = r.audio_bytes / BYTES_PER_MS
        if r.interrupted:
            return spoken_prefix(r.text_sent, heard_ms or 0.0, audio_ms, r.complete)
        if r.failed or not r.complete:
            said = (r.text_sent.strip() if r.complete
                    else spoken_prefix(r.text_sent, audio_ms, audio_ms, False))
            return said + CUT_MARK if said and not said.endswith(CUT_MARK) else said
        return r.text_sent.strip()

    def _start_turn(self, text: str, speech_end_at: float) -> list[Action]:
        actions: list[Action] = []
        if self.turn_in_progress():
            actions += self._cut_off()  # a new question supersedes the answer to the old one
        previous = self._turn()
        if previous is not None and previous.phase is Phase.DONE:
            del self.responses[previous.rid]
        self._seq += 1
        rid = f"turn-{self._seq}"
        self.responses[rid] = Response(rid, "turn", text, speech_end_at)
        self._current_turn = rid
        self._queue.append(rid)
        return [*actions, NewTurn(rid, text, speech_end_at), *self._advance(),
                SetState(AgentState.THINKING)]

    def _advance(self) -> list[Action]:
        """Give a free lane to the next queued response."""
        if self._lane is not None or not self._queue:
            return []
        rid = self._queue.popleft()
        self._lane = rid
        self.responses[rid].phase = Phase.PRODUCING
        return [Produce(rid)]

    def _cut_off(self) -> list[Action]:
        """Silence the output, then cancel the current turn and whatever is being produced."""
        actions: list[Action] = [Flush()]
        turn = self._turn()
        for r in (turn, self.responses.get(self._lane) if self._lane else None):
            if r is None:
                continue
            if r.phase is Phase.PRODUCING and not r.cancelling:
                r.cancelling = True
                actions.append(Cancel(r.rid))
            elif r.phase is Phase.QUEUED:  # never produced: over at once, nothing to play
                self._queue.remove(r.rid)
                r.interrupted = True
                r.phase = Phase.PLAYING
                actions.append(AwaitPlayout(r.rid))
        return actions

    def _barge_in(self, playing: bool) -> list[Action]:
        """Cut off whatever is in progress and count it; [] if nothing was."""
        if not (self.producing() or playing):
            return []
        return [*self._cut_off(), BargeIn(), SetState(self.idle_state)]
