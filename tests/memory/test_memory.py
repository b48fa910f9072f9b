"""Conversation memory (SPEC §11): what is remembered, the file, a corrupt file, `forget`."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path

import pytest

from agent.config import ConfigError, settings_from_dict
from agent.memory import FILENAME, MAX_RESULT, MAX_TEXT, MAX_TOOLS, Memory, MemoryTurn, TurnRecorder
from agent.tools.spec import ToolResult

pytestmark = pytest.mark.unit


def say(memory: Memory | TurnRecorder, user: str, answer: str, **turn: object) -> object:
    memory.observe("transcript", {"role": "user", "text": user, "final": True})
    memory.observe("transcript", {"role": "assistant", "text": answer[:3], "final": False})
    memory.observe("transcript", {"role": "assistant", "text": answer, "final": True})
    return memory.observe("turn", {"latency_ms": 300.0, "interrupted": False, "heard_ms": None,
                                   **turn})


def test_a_turn_is_recorded_from_the_transcript_and_turn_events_with_its_tool_result() -> None:
    recorder = TurnRecorder()
    recorder.observe("transcript", {"role": "user", "text": "turn on the light", "final": True})
    recorder.tool("light_set", {"on": True}, "the light is on", ok=True)
    recorder.observe("transcript", {"role": "assistant", "text": "It is on.", "final": True})
    turn = recorder.observe("turn", {"latency_ms": 1, "interrupted": False, "heard_ms": None})
    assert turn == MemoryTurn("turn on the light", "It is on.",
                              ('light_set {"on": true} -> the light is on',))
    # Nothing is left over for the next turn.
    assert recorder.observe("turn", {"latency_ms": 1, "interrupted": False, "heard_ms": None}) is None


def test_tool_results_are_kept_in_short_and_failures_say_why() -> None:
    memory = Memory(5)
    memory.observe("transcript", {"role": "user", "text": "what is on my calendar", "final": True})
    memory.observe_tool("calendar", {"day": "today"}, ToolResult("Standup at nine. " * 40))
    memory.observe_tool("weather", "{not json", ToolResult("error: the arguments are not valid JSON", True))
    say(memory, "", "You have standups all day.")
    (turn,) = memory.turns
    calendar, weather = turn.tools
    assert calendar.startswith('calendar {"day": "today"} -> Standup at nine. Standup at nine.')
    result = calendar.split(" -> ", 1)[1]
    assert len(result) == MAX_RESULT and result.endswith("…"), "a long result is cut to its start"
    assert weather == "weather {not json -> failed: error: the arguments are not valid JSON"
    # The next session is told what the tool said, not only that it ran.
    assert "Standup at nine." in turn.answer_with_notes()


def test_a_turn_keeps_a_bounded_number_of_tool_notes_and_a_result_survives_a_restart(
        tmp_path: Path) -> None:
    memory = Memory(5, tmp_path / FILENAME)
    memory.observe("transcript", {"role": "user", "text": "switch everything", "final": True})
    for i in range(MAX_TOOLS + 3):
        memory.observe_tool(f"switch_{i}", {"on": True, "room": "x" * 500}, ToolResult(f"switch {i} on"))
    say(memory, "", "Done.")
    (turn,) = memory.turns
    assert len(turn.tools) == MAX_TOOLS
    assert all(len(note) < 250 for note in turn.tools), "long arguments are cut too"
    again = Memory(5, tmp_path / FILENAME)
    again.load()
    assert again.turns[0].tools[0].endswith("-> switch 0 on")


def test_the_registry_hands_every_result_to_memory(tmp_path: Path) -> None:
    from agent.tools.builtin import BuiltinSource
    from agent.tools.registry import ToolRegistry

    memory = Memory(5)
    registry = ToolRegistry([BuiltinSource(("volume",), volume=lambda level: 35)])
    registry.on_call.append(memory.tool_call)
    memory.observe("transcript", {"role": "user", "text": "how loud is it", "final": True})
    asyncio.run(registry.call("volume", "{}"))
    asyncio.run(registry.call("volume", '{"level": '))
    say(memory, "", "35.")
    ok, failed = memory.turns[0].tools
    assert ok.startswith("volume {} -> ") and "35" in ok
    assert failed.startswith("volume {\"level\": -> failed: error: the arguments are not valid JSON")


def test_a_late_tool_result_is_filed_under_the_turn_that_made_the_call() -> None:
    memory = Memory(5)
    memory.observe("transcript", {"role": "user", "text": "turn on the light", "final": True})
    take = memory.tool_call("light_set", {"on": True})  # the call starts; a barge-in ends the turn
    memory.observe("turn", {"latency_ms": None, "interrupted": True, "heard_ms": None})
    memory.observe("transcript", {"role": "user", "text": "what time is it", "final": True})
    take(ToolResult("the light is on"))  # the late result, while the next turn is open
    say(memory, "", "It is ten.")
    first, second = memory.turns
    assert first.tools == ('light_set {"on": true} -> the light is on',) and first.interrupted
    assert second.tools == ()


def test_a_late_tool_result_of_a_forgotten_or_unremembered_turn_is_dropped(tmp_path: Path) -> None:
    memory = Memory(5, tmp_path / FILENAME)
    memory.observe("transcript", {"role": "user", "text": "turn on the light", "final": True})
    before_forget = memory.tool_call("light_set", {"on": True})
    memory.observe("turn", {"latency_ms": None, "interrupted": True, "heard_ms": None})
    unsaid = memory.tool_call("timer", {"seconds": 5})  # a turn in which nothing was said
    memory.observe("turn", {"latency_ms": None, "interrupted": True, "heard_ms": None})
    asyncio.run(memory.forget())
    say(memory, "hello", "Hi.")
    before_forget(ToolResult("the light is on"))
    unsaid(ToolResult("the timer is set"))
    assert [t.tools for t in memory.turns] == [()]


def test_an_interrupted_answer_is_remembered_as_interrupted() -> None:
    turn = say(TurnRecorder(), "tell me a story", "Once upon a time", interrupted=True)
    assert isinstance(turn, MemoryTurn) and turn.interrupted


def test_only_the_last_turns_are_kept() -> None:
    memory = Memory(3)
    for i in range(5):
        say(memory, f"question {i}", f"answer {i}")
    assert [t.user for t in memory.turns] == ["question 2", "question 3", "question 4"]


def test_long_texts_are_clipped_so_memory_stays_bounded() -> None:
    memory = Memory(2)
    say(memory, "x" * 10_000, "y" * 10_000)
    assert len(memory.turns[0].user) == MAX_TEXT and len(memory.turns[0].assistant) == MAX_TEXT


def test_zero_turns_turns_memory_off() -> None:
    memory = Memory(0, None)
    say(memory, "hello", "hi")
    assert len(memory) == 0 and not memory.enabled


def test_persisted_turns_survive_a_new_process_in_a_private_file(tmp_path: Path) -> None:
    counts: list[int] = []
    first = Memory(5, tmp_path / FILENAME)
    first.on_change = counts.append
    say(first, "my name is Ada", "Nice to meet you, Ada.")
    path = tmp_path / FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [FILENAME]  # no temporary file left behind
    assert counts == [1]

    second = Memory(5, path)
    second.load()
    assert second.turns == (MemoryTurn("my name is Ada", "Nice to meet you, Ada."),)


def test_a_smaller_limit_keeps_the_newest_turns_of_the_file(tmp_path: Path) -> None:
    big = Memory(10, tmp_path / FILENAME)
    for i in range(6):
        say(big, f"q{i}", f"a{i}")
    small = Memory(2, tmp_path / FILENAME)
    small.load()
    assert [t.user for t in small.turns] == ["q4", "q5"]


@pytest.mark.parametrize("content", [b"{not json", b'{"turns": 3}', b"[1, 2]", b"\xff\xfe",
                                     b'{"turns": [{"user": 5}]}'])
def test_a_corrupt_file_is_set_aside_with_a_warning_and_memory_starts_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    path = tmp_path / FILENAME
    path.write_bytes(content)
    memory = Memory(5, path)
    with caplog.at_level(logging.WARNING, "voice-agent.memory"):
        memory.load()
    assert len(memory) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(f"{FILENAME}.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert not path.exists()
    assert any(r.levelno == logging.WARNING and "moved aside" in r.getMessage() for r in caplog.records)
    say(memory, "still", "works")  # and memory works on
    assert path.exists()


async def test_forget_clears_memory_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    memory = Memory(5, path)
    forgotten: list[bool] = []
    memory.on_forget.append(lambda: forgotten.append(True))
    say(memory, "remember the code 1234", "I will.")
    await memory.flush()
    assert path.exists()
    await memory.forget()
    assert len(memory) == 0 and not path.exists() and forgotten == [True]
    reloaded = Memory(5, path)
    reloaded.load()
    assert len(reloaded) == 0


async def test_writes_from_the_event_loop_land_on_disk_by_flush(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    memory = Memory(50, path)
    for i in range(20):
        say(memory, f"q{i}", f"a{i}")
    await memory.flush()
    doc = json.loads(path.read_text())
    assert [t["user"] for t in doc["turns"]][-1] == "q19" and len(doc["turns"]) == 20


def test_without_persist_nothing_is_written(tmp_path: Path) -> None:
    settings = settings_from_dict({"memory": {"turns": 4, "persist": False}})
    memory = Memory.from_settings(settings, tmp_path)
    say(memory, "hello", "hi")
    assert len(memory) == 1 and list(tmp_path.iterdir()) == []


def test_the_memory_section_is_checked() -> None:
    assert settings_from_dict({}).memory.turns == 20
    assert settings_from_dict({}).memory.persist is True
    with pytest.raises(ConfigError, match="memory.turns"):
        settings_from_dict({"memory": {"turns": 100_000}})
    with pytest.raises(ConfigError, match="memory.persit"):
        settings_from_dict({"memory": {"persit": True}})
