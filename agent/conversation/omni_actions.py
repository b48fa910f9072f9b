"""Omni mode's actions: what `agent.omni.OmniMode` must do, in order, for its core.

`agent.conversation.omni.OmniConversation` returns them; the player and status ones that both
modes share (`Begin`, `Feed`, `End`, `Flush`, `SetState`, `BargeIn`) are in
`agent.conversation.actions`, the rest are omni's own: sending client events, the status
counters, the timers that wait for the output, captions, the `ask` replies, tools, earcons.
They live apart from the rules so that the reducer reads as rules (and stays a readable size).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from agent.conversation.actions import BargeIn, Begin, End, ErrorEarcon, Feed, Flush, SetState
from agent.modes import Turn


@dataclass(frozen=True)
class Send:
    """Send a client event; `best_effort`: a failure is ignored (the reader notices a loss)."""

    event: dict[str, Any]
    best_effort: bool = False


@dataclass(frozen=True)
class CountTurn:
    pass


@dataclass(frozen=True)
class RecordLatency:
    ms: float


@dataclass(frozen=True)
class RecordHeard:
    """Once the flush of `rid` has reached the output, report its heard ms through `heard()`."""

    rid: str


@dataclass(frozen=True)
class SetHeardMs:
    ms: float


@dataclass(frozen=True)
class FinishTurn:
    """Wait for `rid` to leave the speaker, then report it through `output_finished()`."""

    turn: Turn
    rid: str


@dataclass(frozen=True)
class PublishTurn:
    turn: Turn


@dataclass(frozen=True)
class Caption:
    """A transcript for the event stream: the user's words, or the answer so far (`final`: complete)."""

    role: str
    text: str
    final: bool


@dataclass(frozen=True)
class ClearErrorIf:
    """An answer proves the session works: clear the error shown when it opened, if still shown."""

    stale: str | None


@dataclass(frozen=True)
class Log:
    message: str


@dataclass(frozen=True)
class Warn:
    """Log at WARNING and show it in the status' `last_error`."""

    message: str


@dataclass(frozen=True)
class AskSettled:
    """The `ask` sent as `event_id` is answered: `error` None = accepted, else why it failed."""

    event_id: str
    error: str | None


@dataclass(frozen=True)
class Fail:
    """The session is unusable (a fatal server error): the driver ends it as a loss."""

    message: str


@dataclass(frozen=True)
class RunTool:
    """Run a tool the model called; report its result through `tool_result(call_id, text)`."""

    call_id: str
    name: str
    arguments: str


Action = Union[Begin, Feed, End, Flush, Send, SetState, BargeIn, CountTurn, RecordLatency,
               RecordHeard, SetHeardMs, FinishTurn, PublishTurn, Caption, ClearErrorIf, Log, Warn,
               AskSettled, Fail, RunTool, ErrorEarcon]
