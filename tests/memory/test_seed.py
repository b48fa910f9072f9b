"""How remembered turns enter a new realtime session (agent.conversation.seed)."""

from __future__ import annotations

import json

import pytest

from agent.conversation.seed import (
    SEED_ID_PREFIX,
    SUMMARY_HEADER,
    SessionSeed,
    instructions_with,
    seed_items,
    summary,
)
from agent.memory import MemoryTurn
from agent.realtime import protocol as p

pytestmark = pytest.mark.unit

TURNS = (
    MemoryTurn("my name is Ada", "Nice to meet you, Ada."),
    MemoryTurn("turn on the light", "It is on.", ('light_set {"on": true} -> the light is on',)),
)


def error_for(event_id: str | None, param: str = "item.role") -> p.ServerEvent:
    err = {"type": "invalid_request_error", "code": "invalid_value",
           "message": "Only user messages can be created.", "param": param}
    if event_id is not None:
        err["event_id"] = event_id
    return p.parse_event(json.dumps({"type": "error", "error": err}))


def test_turns_become_user_input_text_and_assistant_text_items() -> None:
    events = seed_items(TURNS)
    assert [e["item"]["role"] for e in events] == ["user", "assistant", "user", "assistant"]
    assert events[0]["item"]["content"] == [{"type": "input_text", "text": "my name is Ada"}]
    assert events[1]["item"]["content"] == [{"type": "text", "text": "Nice to meet you, Ada."}]
    assert "light_set" in events[3]["item"]["content"][0]["text"]
    assert all(e["type"] == "conversation.item.create" for e in events)
    assert all(e["event_id"].startswith(SEED_ID_PREFIX) for e in events)
    assert not any(e["type"] == "response.create" for e in events)


def test_the_summary_keeps_the_newest_turns_that_fit() -> None:
    many = [MemoryTurn(f"question {i}", f"answer {i}") for i in range(100)]
    text = summary(many, max_chars=400)
    assert text.startswith(SUMMARY_HEADER) and len(text) <= 400
    assert "question 99" in text and "question 0\n" not in text
    assert instructions_with("Be brief.", TURNS).startswith("Be brief.\n\n" + SUMMARY_HEADER)
    assert instructions_with("Be brief.", ()) == "Be brief."


def test_items_first_then_the_instructions_once_the_service_refuses_an_item() -> None:
    seed = SessionSeed("Be brief.")
    opening = seed.opening(TURNS)
    assert len(opening) == 4 and seed.instructions(TURNS) == "Be brief."

    handled, sends = seed.on_event(error_for(opening[1]["event_id"]), TURNS)
    assert handled and seed.items_refused
    assert sends == [{"type": "session.update",
                      "session": {"instructions": instructions_with("Be brief.", TURNS)}}]
    # The other refusals of this session are swallowed without a second update.
    assert seed.on_event(error_for(opening[3]["event_id"]), TURNS) == (True, [])
    # The next session carries the turns in its instructions and sends no items.
    assert seed.opening(TURNS) == []
    assert "Ada" in seed.instructions(TURNS)


def item_created(role: str, kind: str) -> p.ServerEvent:
    return p.parse_event(json.dumps({"type": "conversation.item.created", "item": {
        "id": "item_1", "type": "message", "role": role, "content": [{"type": kind, "text": "x"}]}}))


def test_the_seed_consumes_its_own_acknowledgements_not_those_of_a_later_ask() -> None:
    seed = SessionSeed("Be brief.")
    opening = seed.opening(TURNS)
    for _ in opening:  # all four accepted
        assert seed.on_event(item_created("user", "input_text"), TURNS) == (True, [])
    # The next acknowledgement answers an `ask`: the conversation core must see it.
    assert seed.on_event(item_created("user", "input_text"), TURNS) == (False, [])
    assert not seed.items_refused


def test_an_error_without_an_event_id_counts_only_while_seed_items_are_unanswered() -> None:
    seed = SessionSeed("Be brief.")
    for _ in seed.opening(TURNS):
        seed.on_event(item_created("user", "input_text"), TURNS)
    assert seed.on_event(error_for(None), TURNS) == (False, [])
    seed2 = SessionSeed("Be brief.")
    seed2.opening(TURNS)
    handled, _ = seed2.on_event(error_for(None), TURNS)
    assert handled


def test_other_errors_are_left_to_the_conversation() -> None:
    seed = SessionSeed("Be brief.")
    seed.opening(TURNS)
    assert seed.on_event(error_for("event_other", param="type"), TURNS) == (False, [])
    assert not seed.items_refused


def test_nothing_is_sent_without_turns() -> None:
    seed = SessionSeed("Be brief.")
    assert seed.opening(()) == []
    assert seed.instructions(()) == "Be brief."


def test_a_session_lost_right_after_the_seed_switches_to_the_instructions() -> None:
    seed = SessionSeed("Be brief.")
    assert seed.opening(TURNS, now=100.0)
    seed.session_ended(now=101.0)  # closed at once, before answering: maybe over the items
    assert seed.items_refused and seed.opening(TURNS) == []
    assert "Ada" in seed.instructions(TURNS)


def test_a_session_lost_after_it_served_keeps_the_items() -> None:
    seed = SessionSeed("Be brief.")
    seed.opening(TURNS, now=100.0)
    seed.on_event(p.parse_event('{"type": "response.created", "response": {"id": "r"}}'), TURNS)
    seed.session_ended(now=101.0)
    assert not seed.items_refused and len(seed.opening(TURNS)) == 4


def test_a_quiet_session_rotated_later_keeps_the_items() -> None:
    seed = SessionSeed("Be brief.")
    seed.opening(TURNS, now=100.0)
    seed.session_ended(now=100.0 + 60 * 100)  # a rotation, nobody spoke
    assert not seed.items_refused
