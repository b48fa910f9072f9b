"""How remembered turns enter a new realtime session (omni mode, SPEC §11). Pure: no I/O.

The service keeps context only within one session and documents no way to import history
(reference/function-calling.md §4). What is known:

* user `message` items with `input_text` content are accepted by qwen3.5-omni-flash-realtime
  (observed on the wire, §1.9), although the client-events page lists only
  `function_call_output` for `conversation.item.create`;
* assistant-role items: neither documented nor observed (third-party clients assume they are
  refused);
* `instructions` (`session.update`) is the documented, always-safe place for context.

So each new session first gets the turns as conversation items (a user `input_text` item and an
assistant `text` item per turn, no `response.create`), each tagged with an `event_id` starting
with `memory_`. If the service refuses any of them (an `error` naming that event id, or naming an
item while the seed is being sent), the seed falls back: one `session.update` puts a summary of
the turns into `instructions`, and every later session of this process puts the summary there at
once and sends no items. Refusals of seed items are swallowed here, so they never reach the
conversation core as failures. A session that ends within seconds of a seed, before any response, counts
as a refusal too (a service might close the session over such items instead of answering).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from agent.memory import MemoryTurn
from agent.realtime import protocol as p

SEED_ID_PREFIX = "memory_"
SEED_TRUST_S = 15.0  # a session that ends sooner after its seed, having answered nothing, refused it
SUMMARY_MAX_CHARS = 6000  # of the instructions given to the remembered turns (newest kept)
SUMMARY_HEADER = ("Earlier conversation with this user (most recent last); continue from it "
                  "and do not repeat it:")

_ids = itertools.count(1)


def summary(turns: Sequence[MemoryTurn], max_chars: int = SUMMARY_MAX_CHARS) -> str:
    """`User: …` / `Assistant: …` lines of the newest turns that fit in `max_chars`."""
    lines: list[str] = []
    size = len(SUMMARY_HEADER)
    for turn in reversed(turns):
        block = []
        if turn.user:
            block.append(f"User: {turn.user}")
        answer = turn.answer_with_notes()
        if answer:
            block.append(f"Assistant: {answer}")
        cost = sum(len(b) + 1 for b in block)
        if size + cost > max_chars:
            break
        lines[:0] = block
        size += cost
    return "\n".join([SUMMARY_HEADER, *lines]) if lines else ""


def instructions_with(base: str, turns: Sequence[MemoryTurn]) -> str:
    """The session instructions followed by the summary of the remembered turns."""
    text = summary(turns)
    if not text:
        return base
    return f"{base}\n\n{text}" if base else text


def seed_items(turns: Sequence[MemoryTurn]) -> list[dict[str, Any]]:
    """`conversation.item.create` events for the turns, oldest first."""
    events: list[dict[str, Any]] = []
    for turn in turns:
        if turn.user:
            events.append(_item("user", "input_text", turn.user))
        answer = turn.answer_with_notes()
        if answer:
            events.append(_item("assistant", "text", answer))
    return events


def _item(role: str, kind: str, text: str) -> dict[str, Any]:
    return {
        "event_id": f"{SEED_ID_PREFIX}{next(_ids)}",
        "type": "conversation.item.create",
        "item": {"type": "message", "role": role, "content": [{"type": kind, "text": text}]},
    }


class SessionSeed:
    """Per mode instance: items first, the instructions once the service refused an item."""

    def __init__(self, base_instructions: str) -> None:
        self.base = base_instructions
        self.items_refused = False
        self._seeding = False  # seed items sent, the session's first response not yet seen
        self._unanswered = 0  # seed items the server has neither acknowledged nor refused yet
        self._seeded_at = 0.0

    def instructions(self, turns: Sequence[MemoryTurn]) -> str:
        """What the session's `instructions` should be now."""
        return instructions_with(self.base, turns) if self.items_refused else self.base

    def opening(self, turns: Sequence[MemoryTurn], now: float = 0.0) -> list[dict[str, Any]]:
        """Events to send right after the session's configuration (`now`: monotonic seconds)."""
        self._seeding, self._seeded_at, self._unanswered = False, now, 0
        if self.items_refused or not turns:
            return []
        events = seed_items(turns)
        self._seeding = bool(events)
        self._unanswered = len(events)
        return events

    def on_event(
        self, event: p.ServerEvent, turns: Sequence[MemoryTurn]
    ) -> tuple[bool, list[dict[str, Any]]]:
        """(handled here, events to send). A handled event is not given to the core."""
        if isinstance(event, p.ResponseCreated):
            self._seeding = False
            return False, []
        if isinstance(event, p.ItemCreated) and self._unanswered:
            # The server answers items in order and the seed went first: this ack is the seed's,
            # not the confirmation an `ask` sent later is waiting for.
            self._unanswered -= 1
            return True, []
        if not isinstance(event, p.ErrorEvent) or not self._is_seed_error(event):
            return False, []
        self._unanswered = max(0, self._unanswered - 1)
        if self.items_refused:
            return True, []  # the rest of this session's items: already falling back
        self.items_refused = True
        update = {"type": "session.update", "session": {"instructions": self.instructions(turns)}}
        return True, [update]

    def session_ended(self, now: float) -> None:
        """A session that ends within `SEED_TRUST_S` of its seed, having answered nothing, may
        have been closed for it: later sessions use the instructions, so a service that drops
        sessions over the items does not make the daemon reconnect in a loop. (A rotation comes
        a minute or more after the seed.)"""
        if self._seeding and now - self._seeded_at < SEED_TRUST_S:
            self.items_refused = True
        self._seeding = False

    def _is_seed_error(self, event: p.ErrorEvent) -> bool:
        ref = event.event_id
        if isinstance(ref, str) and ref:
            return ref.startswith(SEED_ID_PREFIX)
        # No event id in the error: while seed items are unanswered, an error about an item is ours.
        return bool(self._unanswered) and "item" in f"{event.param or ''} {event.message}".lower()
