"""Wire shapes of function calling, without sockets: the emulator's scripted model and the
pipeline's streamed `tool_calls` assembly."""

from __future__ import annotations

import json

import pytest

from agent.emulator.tool_script import choose_call, speak_results
from agent.llm import LLMClient
from agent.llm_sse import ToolCallAssembler
from agent.tools.builtin import SPECS
from tests.support.emulator import account_at

pytestmark = pytest.mark.unit

DECLARED = [SPECS[n].as_chat() for n in ("time", "timer", "volume")]


@pytest.mark.parametrize("said, call", [
    ("What time is it?", ("time", {})),
    ("Set a timer for five minutes.", ("timer", {"action": "set", "seconds": 300})),
    ("set a tea timer for 30 seconds", ("timer", {"action": "set", "seconds": 30, "name": "tea"})),
    ("Cancel the tea timer.", ("timer", {"action": "cancel", "name": "tea"})),
    ("Which timers are running?", ("timer", {"action": "list"})),
    ("Set the volume to 40.", ("volume", {"level": 40})),
    ("How loud is the volume?", ("volume", {})),
])
def test_the_scripted_model_calls_the_tool_a_phrase_names(said: str, call: tuple[str, dict]) -> None:
    name, arguments = choose_call(said, DECLARED)  # type: ignore[misc]
    assert (name, json.loads(arguments)) == call


def test_the_scripted_model_only_calls_declared_tools_and_finds_prefixed_names() -> None:
    assert choose_call("What time is it?", []) is None
    assert choose_call("Tell me a joke.", DECLARED) is None
    assert choose_call("What time is it?", [SPECS["timer"].as_chat()]) is None
    flat = {**SPECS["time"].as_realtime(), "name": "clock_time"}
    assert choose_call("What time is it?", [flat]) == ("clock_time", "{}")


LIGHTS = [{"type": "function", "function": {"name": n}} for n in ("home_light_get", "home_light_set")]


@pytest.mark.parametrize("said, on", [
    ("Turn on the light.", True), ("turn the kitchen light off", False),
    ("Switch off the lights, please.", False), ("switch the light on", True),
])
def test_the_scripted_model_switches_a_declared_light(said: str, on: bool) -> None:
    name, arguments = choose_call(said, LIGHTS + DECLARED)  # type: ignore[misc]
    assert (name, json.loads(arguments)) == ("home_light_set", {"on": on})


def test_a_light_is_switched_only_through_a_declared_setter_with_light_in_its_name() -> None:
    assert choose_call("Turn on the light.", DECLARED) is None
    assert choose_call("Turn on the light.", [{"name": "light_get"}]) is None
    assert choose_call("Turn on the light.", [{"name": "kitchen_light"}]) == ("kitchen_light", '{"on": true}')


def test_broken_arguments_are_not_json() -> None:
    name, arguments = choose_call("What time is it, with broken arguments?", DECLARED)  # type: ignore[misc]
    with pytest.raises(ValueError):
        json.loads(arguments)


def test_results_are_read_back_and_errors_apologised_for() -> None:
    assert speak_results(["It is 10:05 on Thursday."]) == "It is 10:05 on Thursday."
    assert speak_results(["Timer set for 5 seconds", "error: no such timer"]) == (
        "Timer set for 5 seconds. Sorry, that did not work: no such timer.")


def _frame(fragments: list[dict], finish: str = "null", content: str = "") -> dict:
    return {"output": {"choices": [{"message": {"role": "assistant", "content": content,
                                                "tool_calls": fragments}, "finish_reason": finish}]}}


def test_streamed_tool_calls_are_assembled_by_index() -> None:
    asm = ToolCallAssembler()
    asm.feed(_frame([{"index": 0, "id": "call_a", "type": "function",
                      "function": {"name": "timer", "arguments": '{"action": '}}]))
    asm.feed(_frame([{"index": 1, "id": "call_b", "type": "function",
                      "function": {"name": "time", "arguments": ""}}]))
    asm.feed(_frame([{"index": 0, "id": "", "function": {"arguments": '"set", "seconds": 5}'}},
                     {"index": 1, "id": "", "function": {"arguments": "{}"}}], "tool_calls"))
    asm.feed({"output": {"text": "plain"}})  # other shapes carry no calls
    assert asm.calls() == [
        {"id": "call_a", "name": "timer", "arguments": '{"action": "set", "seconds": 5}'},
        {"id": "call_b", "name": "time", "arguments": "{}"}]


def test_the_generation_request_offers_the_tools_and_lets_the_model_choose() -> None:
    llm = LLMClient(account_at("http://x", "sk-test"), "qwen-plus")
    body = llm.request_body([{"role": "user", "content": "hi"}], DECLARED)
    assert body["parameters"]["tools"] == DECLARED and body["parameters"]["tool_choice"] == "auto"
    assert "tools" not in llm.request_body([{"role": "user", "content": "hi"}])["parameters"]
