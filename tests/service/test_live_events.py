"""Issue 17 end to end: a subscriber and a Prometheus scrape watch a real turn of the daemon
(file audio, the emulator on loopback), in both modes."""

from __future__ import annotations

import pytest

from tests.support.daemon import RunDaemon
from tests.support.integration import scrape, subscribed, value
from tests.support.rig import free_port

QUESTION = "Thank you very much."  # omni's emulator answers it; so does the pipeline's LLM


def _index(events: list[dict], pred) -> int:
    return next(i for i, e in enumerate(events) if pred(e))


@pytest.mark.parametrize("daemon_mode", ["omni", "pipeline"])
async def test_a_subscriber_sees_a_real_turn_in_order_with_captions_and_the_metrics_move(
    daemon: RunDaemon, daemon_mode: str
) -> None:
    port = free_port()
    async with daemon([(1.5, QUESTION)], metrics__listen=f"127.0.0.1:{port}") as run:
        _, _, before = await scrape(port)
        assert value(before, "voice_agent_turns_total") == 0
        stream = await subscribed(run.work / "control.sock", lambda e: e["event"] == "turn")
        turn = await run.next_turn()
        events = await stream
        _, _, after = await scrape(port)
        assert await run.stop() == 0

    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["state", "volume"] or kinds[:2] == ["volume", "state"]  # replayed first
    assert all(isinstance(e["t"], float) for e in events)
    assert [e["t"] for e in events[2:]] == sorted(e["t"] for e in events[2:])

    # Captions: the user's words, then the answer growing, then the final answer; then the turn.
    user = _index(events, lambda e: e["event"] == "transcript" and e["role"] == "user")
    assert events[user]["text"] == QUESTION and events[user]["final"] is True
    partial = _index(events, lambda e: e["event"] == "transcript" and e["role"] == "assistant")
    final = _index(events, lambda e: e["event"] == "transcript" and e["role"] == "assistant" and e["final"])
    assert user < partial <= final < len(events) - 1
    assert events[final]["text"] == turn.answered
    partials = [e["text"] for e in events[partial:final] if e["event"] == "transcript" and not e["final"]]
    assert all(turn.answered.startswith(p.rstrip()[:10]) for p in partials)
    done = events[-1]
    assert done["event"] == "turn" and done["interrupted"] is False and done["heard_ms"] is None
    assert done["latency_ms"] == pytest.approx(turn.latency_ms, abs=0.1)

    # The LED ring's view: listening → thinking → speaking, in that order.
    states = [e["state"] for e in events if e["event"] == "state"]
    assert states.index("thinking") < states.index("speaking")

    # The operator's view: the counters moved with the turn.
    assert value(after, "voice_agent_turns_total") == 1
    assert value(after, "voice_agent_audio_received_seconds_total") > 0.5
    assert value(after, "voice_agent_voice_to_voice_latency_seconds_count") == 1
