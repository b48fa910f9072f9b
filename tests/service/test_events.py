"""The event bus (SPEC §12) on its own: fields, order, bounded backlogs, drops, replay."""

from __future__ import annotations

import asyncio
import json

import pytest

from agent.events import EventBus
from agent.status import AgentState, Status

pytestmark = pytest.mark.unit


def clock() -> float:
    return 1_700_000_000.25


def lines(sub) -> list[dict]:
    out = []
    while len(sub):
        out.append(json.loads(sub._lines.popleft()))
    return out


def test_each_event_is_one_json_line_with_event_and_time() -> None:
    bus = EventBus(clock=clock)
    sub = bus.subscribe()
    bus.publish("transcript", role="assistant", text="Grüß Gott", final=True)
    raw = sub._lines[0]
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert json.loads(raw) == {"event": "transcript", "t": 1_700_000_000.25, "role": "assistant",
                               "text": "Grüß Gott", "final": True}


@pytest.mark.parametrize(
    "event, fields, why",
    [
        ("stat", {"state": "idle"}, "unknown event 'stat'"),
        ("state", {"sate": "idle"}, "takes fields state"),
        ("turn", {"latency_ms": 1.0, "interrupted": False}, "latency_ms, interrupted, heard_ms"),
    ],
)
def test_events_and_fields_are_exactly_the_spec_ones(event: str, fields: dict, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        EventBus().publish(event, **fields)


def test_subscribers_get_events_in_publish_order() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    for i in range(100):
        bus.publish("volume", level=i)
    assert [e["level"] for e in lines(a)] == list(range(100))
    assert [e["level"] for e in lines(b)] == list(range(100))


def test_a_subscriber_that_falls_behind_is_dropped_with_a_last_error_line() -> None:
    bus = EventBus(backlog=8)
    slow, fast = bus.subscribe(), bus.subscribe()
    for i in range(20):
        bus.publish("wake", word="alexa", score=i / 20)
        lines(fast)  # keeps up
    assert slow.dropped and slow.closed and not fast.closed
    assert bus.subscribers == 1
    left = lines(slow)
    assert len(left) == 1 and left[0]["event"] == "error" and "more than 8" in left[0]["message"]


def test_a_new_subscriber_first_hears_the_current_state_and_volume() -> None:
    bus = EventBus()
    bus.publish("state", state="idle")  # nobody listening yet
    bus.publish("volume", level=70)
    bus.publish("state", state="listening")
    bus.publish("wake", word="alexa", score=0.8)  # not replayed: it is a moment, not a state
    assert [(e["event"], e.get("state"), e.get("level")) for e in lines(bus.subscribe())] == [
        ("state", "listening", None), ("volume", None, 70)]
    assert lines(bus.subscribe(replay=False)) == []


def test_close_ends_iteration_after_the_queued_lines() -> None:
    async def main() -> list[bytes]:
        bus = EventBus()
        sub = bus.subscribe()
        bus.publish("error", message="bye")
        bus.close()
        bus.publish("error", message="after close")
        return [line async for line in sub]

    got = asyncio.run(main())
    assert [json.loads(x)["message"] for x in got] == ["bye"]


def test_listeners_see_every_event_and_cannot_break_publish() -> None:
    bus = EventBus()
    seen: list[tuple[str, dict]] = []
    bus.listen(lambda e, f: seen.append((e, f)))
    bus.listen(lambda e, f: 1 / 0)
    bus.publish("tool", name="time", arguments={}, ok=True, ms=1.5)
    assert seen == [("tool", {"name": "time", "arguments": {}, "ok": True, "ms": 1.5})]


def test_the_status_publishes_state_changes_and_errors() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    status = Status(mode="omni", publish=bus.publish)
    status.set_state(AgentState.IDLE)
    status.set_state(AgentState.IDLE, "connected")  # a new reason for the same state is not a state event
    status.set_state(AgentState.THINKING)
    status.error("network down; retrying")
    assert [(e["event"], e.get("state") or e.get("message")) for e in lines(sub)] == [
        ("state", "idle"), ("state", "thinking"), ("error", "network down; retrying")]


def test_api_keys_never_reach_subscribers() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish("error", message="401 for key sk-0123456789abcdef0123456789abcdef")
    assert "0123456789abcdef0123" not in lines(sub)[0]["message"]
