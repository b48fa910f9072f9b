"""The emulated realtime model calls a declared tool like the recorded live service does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from agent.emulator.server import Emulator
from agent.tools.builtin import SPECS
from tests.support.ws import OMNI, connect, recv, send, start_emulator, types, until

PATH = "/api-ws/v1/realtime?model="
TOOLS = [SPECS["time"].as_chat(), SPECS["timer"].as_chat()]


@pytest.fixture
async def em() -> AsyncIterator[Emulator]:
    emulator = await start_emulator(realtime_speed=50.0)
    yield emulator
    await emulator.stop()


def ask(text: str) -> dict:
    return {"type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}}


async def test_a_call_follows_the_recorded_event_order_and_its_result_is_read_back(em: Emulator) -> None:
    ws = await connect(em, PATH + OMNI)
    assert (await recv(ws))["type"] == "session.created"
    await send(ws, {"type": "session.update", "session": {"tools": TOOLS}})
    updated = await recv(ws)
    assert [t["function"]["name"] for t in updated["session"]["tools"]] == ["time", "timer"]
    await send(ws, ask("Set a tea timer for ten seconds."))
    await send(ws, {"type": "response.create"})
    events = await until(ws, "response.done")
    calling = types(events)[types(events).index("response.created"):]
    assert calling == ["response.created", "response.output_item.added", "conversation.item.created",
                       "response.function_call_arguments.delta", "response.function_call_arguments.delta",
                       "response.function_call_arguments.done", "response.output_item.done",
                       "response.done"]
    done = events[-1]["response"]
    (call,) = done["output"]
    assert (call["type"], call["name"], json.loads(call["arguments"])) == (
        "function_call", "timer", {"action": "set", "seconds": 10, "name": "tea"})
    assert "".join(e["delta"] for e in events if e["type"].endswith("arguments.delta")) == call["arguments"]
    assert "response.audio.delta" not in types(events)  # a calling response has no audio

    await send(ws, {"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call["call_id"], "output": "The tea timer is set for 10 seconds."}})
    assert (await until(ws, "conversation.item.created"))[-1]["item"]["type"] == "function_call_output"
    await send(ws, {"type": "response.create"})
    answer = await until(ws, "response.done")
    spoken = "".join(e["delta"] for e in answer if e["type"] == "response.audio_transcript.delta")
    assert spoken == "The tea timer is set for 10 seconds."
    await ws.close()


async def test_no_call_without_a_declared_tool_or_on_a_model_without_function_calling(em: Emulator) -> None:
    for model, tools in ((OMNI, []), ("qwen3-omni-flash-realtime", TOOLS)):
        ws = await connect(em, PATH + model)
        await recv(ws)
        await send(ws, {"type": "session.update", "session": {"tools": tools, "voice": "Cherry"}
                        if model != OMNI else {"tools": tools}})
        await recv(ws)
        await send(ws, ask("What time is it?"))
        await send(ws, {"type": "response.create"})
        events = await until(ws, "response.done")
        assert "response.function_call_arguments.done" not in types(events), model
        assert events[-1]["response"]["output"][0]["type"] == "message"
        await ws.close()
