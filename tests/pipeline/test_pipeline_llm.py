"""LLM streaming (agent.llm): SSE parsing, typed errors, retries, cancellation — over loopback."""

from __future__ import annotations

import asyncio

import pytest

from agent.emulator.answers import answer_for
from agent.emulator.server import Emulator
from agent.llm import (
    AuthError,
    Conversation,
    LLMClient,
    RequestError,
    SSEParser,
    ThrottledError,
    TransientError,
    error_for,
)
from tests.support.emulator import API_KEY, MakeEmulator, account_at, account_for

QUESTION = "what is the weather like"
ANSWER = answer_for(QUESTION)


def client_for(emu: Emulator, key: str = API_KEY, **kw: object) -> LLMClient:
    return LLMClient(account_for(emu, key), "qwen-plus", **kw)  # type: ignore[arg-type]


def ask(text: str = QUESTION) -> list[dict[str, str]]:
    return Conversation("You are terse.").messages(text)


# --- pure parts --------------------------------------------------------------------------------


@pytest.mark.unit
def test_sse_parser_dashscope_framing() -> None:
    p = SSEParser()
    lines = ["id:1", "event:result", ":HTTP_STATUS/200", 'data:{"a":1}', "",
             "id:2", "event:error", ":HTTP_STATUS/429", 'data:{"code":"Throttling"}', ""]
    events = [e for e in (p.feed_line(line) for line in lines) if e]
    assert [(e.id, e.event, e.status, e.data) for e in events] == [
        ("1", "result", 200, '{"a":1}'), ("2", "error", 429, '{"code":"Throttling"}'),
    ]


@pytest.mark.unit
def test_sse_parser_standard_framing_and_edge_cases() -> None:
    p = SSEParser()
    assert p.feed_line(": keep-alive") is None
    assert p.feed_line("") is None  # a comment alone is no event
    for line in ["data: first", "data: second", "status: 503"]:
        assert p.feed_line(line) is None
    ev = p.feed_line("")
    assert ev is not None and ev.data == "first\nsecond" and ev.status == 503 and ev.event == "message"
    p.feed_line("data:{}")
    tail = p.finish()  # stream ended without the blank line
    assert tail is not None and tail.data == "{}"
    assert p.finish() is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, "InvalidApiKey", AuthError),
        (403, "AccessDenied", AuthError),
        (429, "Throttling.RateQuota", ThrottledError),
        (500, "InternalError", TransientError),
        (503, "ServiceUnavailable", TransientError),
        (408, None, TransientError),
        (400, "InvalidParameter", RequestError),
        (404, "ModelNotFound", RequestError),
        (None, "Throttling.AllocationQuota", ThrottledError),
        (None, "InvalidApiKey", AuthError),
        (None, "InternalError.Algo", TransientError),
    ],
)
def test_error_mapping(status: int | None, code: str | None, kind: type) -> None:
    err = error_for(status, code, "msg")
    assert type(err) is kind and err.status == status and err.code == code


@pytest.mark.unit
def test_error_messages_never_contain_the_key() -> None:
    from agent.secrets import register_secret

    register_secret("sk-supersecret-123456")
    err = error_for(401, "InvalidApiKey", "bad key sk-supersecret-123456")
    assert "supersecret" not in str(err)


@pytest.mark.unit
def test_conversation_is_bounded_and_ordered() -> None:
    conv = Conversation("SYS", history_turns=2)
    for i in range(4):
        conv.add(f"q{i}", f"a{i}")
    conv.add("q4", "")  # interrupted before anything was said
    msgs = conv.messages("now")
    assert msgs == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "q3"}, {"role": "assistant", "content": "a3"},
        {"role": "user", "content": "q4"},
        {"role": "user", "content": "now"},
    ]
    none = Conversation("", history_turns=0)
    none.add("q", "a")
    assert none.messages("x") == [{"role": "user", "content": "x"}] and none.turns == ()
    conv.clear()
    assert len(conv.messages("y")) == 2


@pytest.mark.unit
def test_request_body_is_native_incremental_message_format() -> None:
    c = LLMClient(account_at("http://x", "k", "ws1"), "qwen-plus", parameters={"temperature": 0.3})
    body = c.request_body([{"role": "user", "content": "hi"}])
    assert body == {"model": "qwen-plus", "input": {"messages": [{"role": "user", "content": "hi"}]},
                    "parameters": {"result_format": "message", "incremental_output": True,
                                   "temperature": 0.3}}
    h = c.headers()
    assert h["X-DashScope-SSE"] == "enable" and h["Accept"] == "text/event-stream"
    assert h["X-DashScope-WorkSpace"] == "ws1" and h["Authorization"] == "Bearer k"


# --- against the emulator ----------------------------------------------------------------------


async def test_streams_incremental_deltas_with_metrics(emulator: Emulator) -> None:
    llm = client_for(emulator)
    try:
        stream = llm.stream(ask())
        deltas = [d async for d in stream]
        assert len(deltas) > 10  # really streamed, not one blob
        assert "".join(deltas) == ANSWER == stream.text
        assert stream.finish_reason == "stop"
        assert stream.usage["output_tokens"] >= len(deltas)
        assert stream.first_token_latency is not None and 0 < stream.first_token_latency < 2
        assert llm.last_first_token_latency == stream.first_token_latency
        assert stream.request_id and stream.attempts == 1
        assert await llm.complete(ask("tell me a joke")) == answer_for("tell me a joke")
    finally:
        await llm.close()


async def test_history_reaches_the_server(emulator: Emulator) -> None:
    conv = Conversation("Be brief.", history_turns=3)
    conv.add("hello", "Hi there.")
    llm = client_for(emulator)
    try:
        assert await llm.complete(conv.messages("thank you")) == answer_for("thank you")
    finally:
        await llm.close()


async def test_a_tool_message_answering_no_call_is_refused_like_the_service_does(
        emulator: Emulator) -> None:
    orphan = [{"role": "user", "content": "what time is it"},
              {"role": "tool", "tool_call_id": "call_0", "content": "It is noon."},
              {"role": "user", "content": "thanks"}]
    llm = client_for(emulator)
    try:
        with pytest.raises(RequestError) as ei:
            await llm.complete(orphan)
    finally:
        await llm.close()
    assert (ei.value.status, ei.value.code) == (400, "InvalidParameter")
    assert 'must be a response to a preceeding message with "tool_calls"' in str(ei.value)


async def test_json_response_without_sse_is_accepted(emulator: Emulator) -> None:
    class NoSSE(LLMClient):
        def headers(self) -> dict[str, str]:
            return {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    llm = NoSSE(account_for(emulator), "qwen-plus")
    try:
        stream = llm.stream(ask())
        assert [d async for d in stream] == [ANSWER] and stream.finish_reason == "stop"
    finally:
        await llm.close()


async def test_wrong_key_is_auth_error(emulator: Emulator) -> None:
    llm = client_for(emulator, key="sk-wrong-key-0000")
    try:
        with pytest.raises(AuthError) as ei:
            await llm.complete(ask())
        assert ei.value.status == 401 and ei.value.code == "InvalidApiKey"
        assert "sk-wrong-key-0000" not in str(ei.value)
        assert llm.last_stream is not None and llm.last_stream.attempts == 1  # never retried
    finally:
        await llm.close()


@pytest.mark.parametrize(("fault", "kind"), [("http=401@llm", AuthError), ("http=429@llm", ThrottledError),
                                             ("http=400@llm", RequestError)])
async def test_injected_http_errors_are_typed_and_not_retried(
    make_emulator: MakeEmulator, fault: str, kind: type
) -> None:
    emu = await make_emulator(faults=fault)
    llm = client_for(emu)
    try:
        with pytest.raises(kind):
            await llm.complete(ask())
        assert llm.last_stream is not None and llm.last_stream.attempts == 1
    finally:
        await llm.close()


async def test_server_error_once_is_retried(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="http=500@llm*1")
    llm = client_for(emu, retry_first_s=0.01)
    try:
        stream = llm.stream(ask())
        assert "".join([d async for d in stream]) == ANSWER
        assert stream.attempts == 2
    finally:
        await llm.close()


async def test_persistent_server_error_is_transient_error(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="http=500@llm")
    llm = client_for(emu, retry_first_s=0.01, max_retries=2)
    try:
        with pytest.raises(TransientError) as ei:
            await llm.complete(ask())
        assert ei.value.status == 500 and llm.last_stream is not None
        assert llm.last_stream.attempts == 3
    finally:
        await llm.close()


async def test_mid_stream_error_event_after_text_is_raised(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="error_event=4@llm")
    llm = client_for(emu)
    try:
        stream = llm.stream(ask())
        got: list[str] = []
        with pytest.raises(TransientError) as ei:
            async for d in stream:
                got.append(d)
        assert got and ANSWER.startswith("".join(got))  # words already heard are not repeated
        assert ei.value.status == 500 and stream.attempts == 1
    finally:
        await llm.close()


async def test_error_event_before_any_text_is_retried(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="error_event=0@llm*1")
    llm = client_for(emu, retry_first_s=0.01)
    try:
        stream = llm.stream(ask())
        assert "".join([d async for d in stream]) == ANSWER and stream.attempts == 2
    finally:
        await llm.close()


async def test_malformed_event_is_skipped(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="malformed=3@llm")
    llm = client_for(emu)
    try:
        stream = llm.stream(ask())
        assert "".join([d async for d in stream]) == ANSWER
        assert stream.malformed_events == 1
    finally:
        await llm.close()


async def test_dropped_stream_is_transient_error(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="drop_after=5@llm")
    llm = client_for(emu, max_retries=0)
    try:
        stream = llm.stream(ask())
        got: list[str] = []
        with pytest.raises(TransientError):
            async for d in stream:
                got.append(d)
        assert 0 < len(got) <= 5
    finally:
        await llm.close()


async def test_silent_server_hits_the_read_timeout(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="half_open=2@llm")
    llm = client_for(emu, read_timeout_s=0.3, max_retries=0)
    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TransientError, match="Timeout"):
            await llm.complete(ask())
        assert loop.time() - t0 < 2
    finally:
        await llm.close()


async def test_cancelling_the_consumer_closes_the_http_stream_at_once(
    make_emulator: MakeEmulator,
) -> None:
    emu = await make_emulator(llm_token_s=0.5)  # a slow answer: plenty of stream left
    llm = client_for(emu)
    try:
        stream = llm.stream(ask())
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in stream:
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 2)
        resp = stream._response
        assert resp is not None and not resp.closed
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert resp.closed and resp.connection is None  # socket gone, not parked in the pool
        assert stream.finish_reason is None
    finally:
        await llm.close()


async def test_aclose_from_another_task_ends_iteration_quietly(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(llm_token_s=1.0)
    llm = client_for(emu)
    try:
        stream = llm.stream(ask())
        got: list[str] = []

        async def consume() -> None:
            async for d in stream:
                got.append(d)

        task = asyncio.create_task(consume())
        while not got:
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await stream.aclose()  # the barge-in handler, not the consumer
        await asyncio.wait_for(task, 0.5)  # ends without an exception, long before the next token
        assert loop.time() - t0 < 0.3
        assert len(got) == 1
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
    finally:
        await llm.close()


async def test_unreachable_server_is_transient_error() -> None:
    llm = LLMClient(account_at("http://127.0.0.1:9"), "qwen-plus", max_retries=1,
                    retry_first_s=0.01, connect_timeout_s=1)
    try:
        with pytest.raises(TransientError, match="connection failed"):
            await llm.complete(ask())
        assert llm.last_stream is not None and llm.last_stream.attempts == 2
    finally:
        await llm.close()
