"""Omni `ask`: text turns waiting for the service to take them (pure bookkeeping, no I/O).

An `ask` is sent as a user text item, and its answer (`response.create`) is asked for only once
the server confirmed the item (`conversation.item.created`): a refused item (`error`) fails the
ask (the control reply is `ok:false` with the server's reason) instead of being answered with
something unrelated (audit R1). Silence is not a refusal (a refusal comes as an `error`, OMNI-SE):
after a while the answer is asked for anyway (`expired`). `OmniConversation` owns one of these
and turns a taken ask into a turn.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.conversation.omni_actions import Action, AskSettled, Send, Warn
from agent.realtime import protocol as p


@dataclass(frozen=True)
class PendingAsk:
    """A text turn sent as `conversation.item.create`, not yet confirmed by the server."""

    event_id: str
    text: str
    asked_at: float


class PendingAsks:
    """The asks sent and not yet settled, oldest first; see the module docstring."""

    def __init__(self) -> None:
        self._asks: dict[str, PendingAsk] = {}  # by event_id, oldest first

    def send(self, text: str, now: float, event_id: str) -> list[Action]:
        """Send the text item (its `event_id` lets an `error` be matched to it)."""
        self._asks[event_id] = PendingAsk(event_id, text, now)
        return [Send(p.user_text(text, event_id))]

    def confirmed(self, event: p.ItemCreated) -> PendingAsk | None:
        """The oldest ask, if `event` confirms a user text item (then its answer is due)."""
        if not self._asks or event.role not in (None, "user") or "input_text" not in event.content_types:
            return None
        return self._asks.pop(next(iter(self._asks)))

    def expired(self, event_id: str) -> PendingAsk | None:
        """The ask `event_id` if it is still unsettled (a late confirmation then finds nothing)."""
        return self._asks.pop(event_id, None)

    def refused(self, event: p.ErrorEvent) -> list[Action] | None:
        """Fail the pending ask this non-fatal error answers (None: it answers none): matched
        by `event_id`, or, when the server gave none, any request error while an ask waits
        (only our own events can cause one). No response is requested for it."""
        if event.event_id is not None:
            ask = self._asks.pop(event.event_id, None)
        elif self._asks and event.error_type == "invalid_request_error":
            ask = self._asks.pop(next(iter(self._asks)))
        else:
            ask = None
        if ask is None:
            return None
        why = f"the service refused the text turn: {event.message or event.code}"
        return [Warn(f"ask {ask.text[:60]!r}: {why} (no response requested)"), AskSettled(ask.event_id, why)]

    def settle_all(self, why: str) -> list[Action]:
        """The session ended: every pending ask fails with `why`."""
        asks, self._asks = self._asks, {}
        return [AskSettled(a.event_id, why) for a in asks.values()]
