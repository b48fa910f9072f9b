"""The actions both conversation cores return for the player and the status.

Omni (`agent.conversation.omni`) and pipeline (`agent.conversation.pipeline`) decide differently
but drive the same player and status, so the actions that do that are one set of classes: a
driver executes `Begin`/`Feed`/`End`/`Flush` on the player and `SetState`/`BargeIn` on the status
the same way in either mode. Each core adds its own mode-specific actions next to its rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.status import AgentState, Status


@dataclass(frozen=True)
class Begin:
    """Open a new response in the player (its first audio arrived; a still-open one plays out)."""

    rid: str


@dataclass(frozen=True)
class Feed:
    rid: str
    pcm: bytes


@dataclass(frozen=True)
class End:
    """No more audio for this response: what is queued plays out."""

    rid: str


@dataclass(frozen=True)
class Flush:
    """Silence the output now: the player fades out and drops everything queued."""


@dataclass(frozen=True)
class SetState:
    """Show `state` (with `detail`); with `only_from`, only if the status shows one of those."""

    state: AgentState
    detail: str | None = None
    only_from: frozenset[AgentState] | None = None


@dataclass(frozen=True)
class BargeIn:
    """Count one barge-in in the status."""


@dataclass(frozen=True)
class ErrorEarcon:
    """A turn failed (the service or the session, not the user, ended it): the user will hear no
    more of its answer, so the error earcon says so (with `listen.earcons`), after whatever of
    the answer is already queued. Never for a barge-in, and never for a refused `ask` (its
    control reply says so; nothing was going to be heard)."""


def show_state(action: SetState, status: Status) -> None:
    """Execute a `SetState` the same way in every driver."""
    if action.only_from is None or status.state in action.only_from:
        status.set_state(action.state, action.detail)


__all__ = ["BargeIn", "Begin", "End", "ErrorEarcon", "Feed", "Flush", "SetState", "show_state"]
