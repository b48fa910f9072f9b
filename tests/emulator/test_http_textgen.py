"""Text generation: native JSON + SSE (framing parsed strictly) and OpenAI-compatible chat."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time

import pytest

from agent.emulator.answers import answer_for
from agent.emulator.context import EmulatorOptions
from agent.emulator.server import Emulator

GEN = "/api/v1/services/aigc/text-generation/generation"
CHAT = "/compatible-mode/v1/chat/completions"
EVENT_RE = re.compile(r"id:(\d+)\nevent:(result|error)\n:HTTP_STATUS/(\d{3})\ndata:(\{.*\})")


def parse_native_sse(text: str) -> list[tuple[int, str, int, dict]]:
    """Every event must be exactly id/event/:HTTP_STATUS/data lines and ids must count from 1."""
    assert text.endswith("\n\n"), repr(text[-20:])
    events = []
    for block in text[:-2].split("\n\n"):
        m = EVENT_RE.fullmatch(block)
        assert m, f"bad SSE block: {block!r}"
        events.append((int(m[1]), m[2], int(m[3]), json.loads(m[4])))
    assert [e[0] for e in events] == list(range(1, len(events) + 1))
    return events


def parse_openai_sse(text: str) -> list[dict | str]:
    assert text.endswith("\n\n")
    out: list[dict | str] = []
    for block in text[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, repr(block)
        payload = block[len("data: ") :]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


@pytest.fixture
def gen(emulator: Emulator, http, headers):
    async def _gen(body, sse=True, extra=None):
        h = {**headers, **(extra or {})}
        if sse:
            h["X-DashScope-SSE"] = "enable"
        r = await http.post(emulator.base_url + GEN, json=body, headers=h)
        return r, await r.text()

    return _gen


def body(question="What's the weather?", **params):
    return {
        "model": "qwen-plus",
        "input": {
            "messages": [
                {"role": "system", "content": "You are a kiosk."},
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "Hi!"},
                {"role": "user", "content": question},
            ]
        },
        "parameters": params,
    }


async def test_sse_incremental_message_format(gen) -> None:
    r, text = await gen(body(result_format="message", incremental_output=True))
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    events = parse_native_sse(text)
    assert {e[1] for e in events} == {"result"} and {e[2] for e in events} == {200}
    choices = [e[3]["output"]["choices"][0] for e in events]
    assert "".join(c["message"]["content"] for c in choices) == answer_for("What's the weather?")
    assert all(c["message"]["role"] == "assistant" for c in choices)
    assert [c["finish_reason"] for c in choices] == ["null"] * (len(choices) - 1) + ["stop"]
    assert choices[-1]["message"]["content"] == ""
    usages = [e[3]["usage"] for e in events]
    assert [u["output_tokens"] for u in usages[:-1]] == list(range(1, len(usages)))
    assert all(u["total_tokens"] == u["input_tokens"] + u["output_tokens"] for u in usages)
    assert len({u["input_tokens"] for u in usages}) == 1
    assert len({e[3]["request_id"] for e in events}) == 1
    assert events[0][3]["request_id"] == r.headers["x-request-id"]


async def test_sse_cumulative_text_format(gen) -> None:
    r, text = await gen(
        {
            "model": "qwen-turbo",
            "input": {"prompt": "tell me a joke"},
            "parameters": {"incremental_output": False},
        }
    )
    events = parse_native_sse(text)
    texts = [e[3]["output"]["text"] for e in events]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))
    assert texts[-1] == answer_for("tell me a joke")
    assert [e[3]["output"]["finish_reason"] for e in events][-2:] == ["null", "stop"]


async def test_sse_via_accept_header(gen) -> None:
    r, text = await gen(body(), sse=False, extra={"Accept": "text/event-stream"})
    assert len(parse_native_sse(text)) > 5


async def test_max_tokens_gives_length(gen) -> None:
    _, text = await gen(body(result_format="message", incremental_output=True, max_tokens=3))
    events = parse_native_sse(text)
    assert len(events) == 4 and events[-1][3]["output"]["choices"][0]["finish_reason"] == "length"
    assert events[-1][3]["usage"]["output_tokens"] == 3


async def test_non_stream(gen) -> None:
    r, text = await gen(body(result_format="message"), sse=False)
    data = json.loads(text)
    choice = data["output"]["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["content"] == answer_for(
        "What's the weather?"
    )
    assert data["request_id"] == r.headers["x-request-id"]
    r, text = await gen({"model": "qwen-plus", "input": {"prompt": "hi"}}, sse=False)
    assert json.loads(text)["output"] == {"text": answer_for("hi"), "finish_reason": "stop"}


async def test_mid_stream_error_event(gen) -> None:
    _, text = await gen(body(incremental_output=True), extra={"X-Emulator-Faults": "error_event=2"})
    events = parse_native_sse(text)
    assert [e[1] for e in events] == ["result", "result", "error"]
    assert events[-1][2] == 500
    assert set(events[-1][3]) == {"request_id", "code", "message"}
    assert events[-1][3]["code"] == "InternalError"


async def test_non_stream_error_event_fault(gen) -> None:
    r, text = await gen(body(), sse=False, extra={"X-Emulator-Faults": "error_event"})
    assert r.status == 500 and json.loads(text)["code"] == "InternalError"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"input": {"prompt": "hi"}}, "model"),
        ({"model": "qwen-plus"}, "input"),
        ({"model": "qwen-plus", "input": {}}, "messages"),
        ({"model": "qwen-plus", "input": {"messages": []}}, "messages"),
        ({"model": "qwen-plus", "input": {"messages": "hi"}}, "messages"),
        (
            {"model": "qwen-plus", "input": {"messages": [{"role": "robot", "content": "x"}]}},
            "role",
        ),
        (
            {"model": "qwen-plus", "input": {"messages": [{"role": "system", "content": "x"}]}},
            "user",
        ),
        (
            {"model": "qwen-plus", "input": {"messages": [{"role": "user", "content": 5}]}},
            "content",
        ),
        (
            {
                "model": "qwen-plus",
                "input": {"prompt": "hi"},
                "parameters": {"result_format": "xml"},
            },
            "result_format",
        ),
        (
            {
                "model": "qwen-plus",
                "input": {"prompt": "hi"},
                "parameters": {"incremental_output": "yes"},
            },
            "incremental_output",
        ),
        (
            {"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": {"max_tokens": 0}},
            "max_tokens",
        ),
        ({"model": "qwen-plus", "input": {"prompt": "hi"}, "parameters": "x"}, "parameters"),
    ],
)
async def test_native_validation(gen, payload, needle) -> None:
    r, text = await gen(payload)
    data = json.loads(text)
    assert r.status == 400 and data["code"] == "InvalidParameter" and needle in data["message"]
    assert r.headers["Content-Type"].startswith("application/json")


async def test_token_pacing(http) -> None:
    em = Emulator(options=EmulatorOptions(api_key="k", llm_first_token_s=0.2, llm_token_s=0.01))
    await em.start()
    try:
        t0 = time.monotonic()
        h = {"Authorization": "Bearer k", "X-DashScope-SSE": "enable"}
        async with http.post(em.base_url + GEN, json=body(incremental_output=True), headers=h) as r:
            first_event = await r.content.readuntil(b"\n\n")
            first = time.monotonic() - t0
            rest = await r.text()
            total = time.monotonic() - t0
        events = parse_native_sse(first_event.decode() + rest)
        assert 0.19 <= first < 0.6  # time to first token
        assert total - first >= 0.01 * (len(events) - 1) * 0.9  # then one token per interval
    finally:
        await em.stop()


# --- OpenAI-compatible ---------------------------------------------------------------------------


async def test_chat_stream_with_usage(emulator: Emulator, http, headers) -> None:
    req = {
        "model": "qwen-plus",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    }
    r = await http.post(emulator.base_url + CHAT, json=req, headers=headers)
    chunks = parse_openai_sse(await r.text())
    assert chunks[-1] == "[DONE]"
    usage_chunk = chunks[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] > 5
    body_chunks = chunks[:-2]
    assert body_chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(
        c["object"] == "chat.completion.chunk" and c["model"] == "qwen-plus" for c in body_chunks
    )
    assert len({c["id"] for c in body_chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in body_chunks)
    assert text == answer_for("hello")
    reasons = [c["choices"][0]["finish_reason"] for c in body_chunks]
    assert reasons[-1] == "stop" and set(reasons[:-1]) == {None}


async def test_chat_stream_without_usage(emulator: Emulator, http, headers) -> None:
    req = {"model": "qwen-plus", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    r = await http.post(emulator.base_url + CHAT, json=req, headers=headers)
    chunks = parse_openai_sse(await r.text())
    assert chunks[-1] == "[DONE]" and all("usage" not in c for c in chunks[:-1])


async def test_chat_non_stream(emulator: Emulator, http, headers) -> None:
    req = {"model": "qwen-max", "messages": [{"role": "user", "content": "what time is it"}]}
    r = await http.post(emulator.base_url + CHAT, json=req, headers=headers)
    data = await r.json()
    assert data["object"] == "chat.completion" and data["model"] == "qwen-max"
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": answer_for("what time is it"),
    }
    assert (
        data["usage"]["total_tokens"]
        == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    )


async def test_chat_errors_are_openai_shaped(emulator: Emulator, http, headers) -> None:
    url = emulator.base_url + CHAT
    r = await http.post(url, json={"model": "qwen-plus", "messages": []}, headers=headers)
    data = await r.json()
    assert r.status == 400 and set(data) == {"error", "request_id"}
    assert set(data["error"]) == {"message", "type", "param", "code"}
    assert data["error"]["code"] == "invalid_parameter_error"
    r = await http.post(
        url,
        json={"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": "Bearer nope"},
    )
    data = await r.json()
    assert r.status == 401 and data["error"]["code"] == "invalid_api_key"
    r = await http.post(url, data=b"{", headers=headers)
    assert r.status == 400 and (await r.json())["error"]["type"] == "invalid_request_error"
    r = await http.post(
        url,
        json={
            "model": "qwen-plus",
            "stream": "yes",
            "messages": [{"role": "user", "content": "x"}],
        },
        headers=headers,
    )
    assert r.status == 400 and "stream" in (await r.json())["error"]["message"]


async def test_chat_mid_stream_error(emulator: Emulator, http, headers) -> None:
    req = {"model": "qwen-plus", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    r = await http.post(
        emulator.base_url + CHAT,
        json=req,
        headers={**headers, "X-Emulator-Faults": "error_event=2"},
    )
    chunks = parse_openai_sse(await r.text())
    assert len(chunks) == 3 and chunks[-1]["error"]["code"] == "internal_error"


async def test_client_leaving_mid_stream_is_not_an_error(
    emulator: Emulator, http, headers, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="agent.emulator")
    emulator.context.options.llm_token_s = 0.02
    h = {**headers, "X-DashScope-SSE": "enable"}
    async with http.post(emulator.base_url + GEN, json=body(), headers=h) as r:
        await r.content.readuntil(b"\n\n")
    for _ in range(50):
        if "client left the generation stream" in caplog.text:
            break
        await asyncio.sleep(0.02)
    assert "client left the generation stream" in caplog.text
    assert "unhandled error" not in caplog.text
