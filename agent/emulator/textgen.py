"""LLM text generation: native DashScope generation (JSON and SSE) and OpenAI-compatible chat.

Answers come from `answers.answer_for` on the last user message and are streamed word by word
with the configured first-token and per-token delays, so clients see realistic time-to-first-
token and can test sentence splitting and cancellation. SSE framing follows the service byte for
byte: `id:N`, `event:result`, the `:HTTP_STATUS/200` comment line, `data:{...}`, blank line.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiohttp import web

from agent.emulator.answers import answer_for, count_tokens, tokens_of
from agent.emulator.context import EmulatorContext
from agent.emulator.errors import compact, for_status, invalid, openai_error_body, request_id
from agent.emulator.faults import ConnectionFaults
from agent.emulator.httputil import (
    abort_connection,
    connection_faults,
    json_response,
    read_json,
    wait_until_client_leaves,
)
from agent.emulator.tool_script import choose_call, preamble, speak_results

ROLES = {"system", "user", "assistant", "tool", "function"}
DEFAULT_ERROR_AFTER = 2  # SSE events sent before an injected mid-stream error
MALFORMED_DATA = '{"output":{"choices":[{"message":{"content":"'  # truncated JSON


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    raise invalid("Message 'content' must be a string or an array of content parts.")


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise invalid("Parameter 'messages' must be a non-empty array.")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise invalid(f"messages[{i}] must be an object.")
        if m.get("role") not in ROLES:
            raise invalid(f"messages[{i}].role must be one of {sorted(ROLES)}.")
        _text_of(m.get("content"))
    if not any(m["role"] == "user" for m in messages):
        raise invalid("At least one message with role 'user' is required.")
    _check_tool_answers(messages)
    return messages


TOOL_NOT_ANSWERING = ('messages with role "tool" must be a response to a preceeding message with '
                      '"tool_calls"')  # the service's words, typo included (function-calling.md §2.1)


def _check_tool_answers(messages: list[dict[str, Any]]) -> None:
    """Every `tool` message answers a call id of the assistant `tool_calls` message before it,
    and every call id gets exactly one answer before any other message (or the end): the
    service rejects other histories with 400 InvalidParameter. Stricter than the reference in
    one point on purpose: `tool_call_id` is required (the docs mark it optional; without it
    parallel calls cannot be paired, and our client always sends it)."""
    pending: list[str] = []
    for i, m in enumerate(messages):
        if m["role"] == "tool":
            call_id = m.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in pending:
                raise invalid(f"{TOOL_NOT_ANSWERING} (messages[{i}]).")
            if not isinstance(m.get("content"), str):
                raise invalid(f"messages[{i}]: the content of a tool message must be a string.")
            pending.remove(call_id)
            continue
        if pending:
            raise invalid(f"{TOOL_NOT_ANSWERING}: tool_call_id {pending[0]} has no tool message "
                          f"before messages[{i}].")
        calls = m.get("tool_calls") if m["role"] == "assistant" else None
        if calls is not None:
            if not isinstance(calls, list) or not calls:
                raise invalid(f"messages[{i}].tool_calls must be a non-empty array.")
            for c in calls:
                call_id = c.get("id") if isinstance(c, dict) else None
                if not isinstance(call_id, str) or not call_id:
                    raise invalid(f"messages[{i}].tool_calls: every call needs an id.")
                pending.append(call_id)
    if pending:
        raise invalid(f"{TOOL_NOT_ANSWERING}: tool_call_id {pending[0]} has no tool message.")


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    return next(_text_of(m.get("content")) for m in reversed(messages) if m["role"] == "user")


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None or model == "":
        raise invalid("Missing required parameter 'model'.")
    if not isinstance(model, str):
        raise invalid("Parameter 'model' must be a string.")
    return model


def _max_tokens(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid("Parameter 'max_tokens' must be a positive integer.")
    return value


def _bool(params: dict[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise invalid(f"Parameter '{key}' must be a boolean.")
    return value


class _Plan:
    """The tokens to stream and the usage bookkeeping of one completion."""

    def __init__(self, question: str, prompt_text: str, max_tokens: int | None,
                 answer: str | None = None) -> None:
        tokens = tokens_of(answer_for(question) if answer is None else answer)
        self.finish = "stop"
        if max_tokens is not None and len(tokens) > max_tokens:
            tokens, self.finish = tokens[:max_tokens], "length"
        self.tokens = tokens
        self.input_tokens = max(1, count_tokens(prompt_text))

    @property
    def text(self) -> str:
        return "".join(self.tokens)


class _Streamer:
    """Writes events with token pacing and the per-event faults of this request."""

    def __init__(self, request: web.Request, ctx: EmulatorContext, cf: ConnectionFaults) -> None:
        self.request, self.ctx, self.cf = request, ctx, cf
        self.sent = 0
        self.response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream;charset=UTF-8",
                "Cache-Control": "no-cache",
                "x-request-id": request_id(request),
            }
        )

    async def start(self) -> None:
        await self.response.prepare(self.request)

    async def pace(self) -> bool:
        """Wait for the next token; False when a fault ended the stream (caller returns)."""
        cf = self.cf
        if cf.should_drop(self.sent):
            abort_connection(self.request)
            return False
        if cf.is_silent(self.sent):
            await wait_until_client_leaves(self.request)
            abort_connection(self.request)
            return False
        opts = self.ctx.options
        await asyncio.sleep(opts.llm_first_token_s if self.sent == 0 else opts.llm_token_s)
        if self.sent:
            await cf.delay()  # the wrapper already delayed the first event
        return True

    def error_due(self) -> bool:
        after = DEFAULT_ERROR_AFTER if self.cf.error_after is None else self.cf.error_after
        return self.cf.error_event and self.sent == after

    def malformed_due(self) -> bool:
        after = 1 if self.cf.malformed_after is None else self.cf.malformed_after
        return self.cf.malformed and self.sent == after

    async def write(self, chunk: str) -> None:
        data = chunk.encode("utf-8")
        await self.response.write(data)
        self.sent += 1
        self.ctx.observer.sent(None, data, sse=True)


# --- native: /api/v1/services/aigc/text-generation/generation ------------------------------------


def _native_event(n: int, data: str, status: int = 200, event: str = "result") -> str:
    return f"id:{n}\nevent:{event}\n:HTTP_STATUS/{status}\ndata:{data}\n\n"


def _native_body(rid: str, fmt: str, content: str, finish: str, plan: _Plan, out: int) -> dict:
    if fmt == "message":
        output: dict[str, Any] = {
            "choices": [
                {"message": {"content": content, "role": "assistant"}, "finish_reason": finish}
            ]
        }
    else:
        output = {"text": content, "finish_reason": finish}
    usage = {
        "total_tokens": plan.input_tokens + out,
        "output_tokens": out,
        "input_tokens": plan.input_tokens,
    }
    return {"output": output, "usage": usage, "request_id": rid}


def _wants_sse(request: web.Request) -> bool:
    return request.headers.get("X-DashScope-SSE", "").lower() == "enable" or (
        "text/event-stream" in request.headers.get("Accept", "")
    )


async def _report_body(request: web.Request, ctx: EmulatorContext) -> None:
    """The request body to the observer's `on_received` (what the client sent, even if invalid)."""
    if ctx.observer.active:
        ctx.observer.received((await request.read()).decode("utf-8", "replace"))


async def handle_generation(request: web.Request, ctx: EmulatorContext) -> web.StreamResponse:
    await _report_body(request, ctx)
    body = await read_json(request)
    _model(body)
    inp = body.get("input")
    if not isinstance(inp, dict):
        raise invalid("Missing required parameter 'input' (a JSON object).")
    params = body.get("parameters", {})
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise invalid("Parameter 'parameters' must be a JSON object.")
    if inp.get("messages") is not None:
        messages = _check_messages(inp["messages"])
        question = _last_user_text(messages)
        prompt_text = " ".join(_text_of(m.get("content")) for m in messages)
    elif isinstance(inp.get("prompt"), str) and inp["prompt"].strip():
        question = prompt_text = inp["prompt"]
    else:
        raise invalid("Either 'input.messages' or 'input.prompt' is required.")
    fmt = params.get("result_format", "text")
    if fmt not in ("text", "message"):
        raise invalid("Parameter 'result_format' must be 'text' or 'message'.")
    incremental = _bool(params, "incremental_output", False)
    messages = inp.get("messages") or []
    results = _trailing_tool_results(messages)
    plan = _Plan(question, prompt_text, _max_tokens(params.get("max_tokens")),
                 speak_results(results) if results else None)
    rid = request_id(request)
    cf = connection_faults(request, ctx, "llm")
    call = None if results or not messages or messages[-1]["role"] != "user" else (
        choose_call(question, params.get("tools")))
    if call is not None and _wants_sse(request):
        s = _Streamer(request, ctx, cf)
        await s.start()
        await _stream_tool_call(s, plan, rid, *call, said=preamble(question))
        return s.response

    if not _wants_sse(request):
        if cf.error_event:
            raise for_status(500)
        opts = ctx.options
        await asyncio.sleep(opts.llm_first_token_s + opts.llm_token_s * len(plan.tokens))
        return json_response(
            request, _native_body(rid, fmt, plan.text, plan.finish, plan, len(plan.tokens))
        )

    s = _Streamer(request, ctx, cf)
    await s.start()
    try:
        await _stream_native(s, plan, rid, fmt, incremental)
    except ConnectionResetError:
        ctx.log.info("client left the generation stream after %d events", s.sent)
    return s.response


def _trailing_tool_results(messages: list[dict[str, Any]]) -> list[str]:
    """The `tool` messages after the last assistant call: the model now reads them back."""
    out: list[str] = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        out.insert(0, _text_of(m.get("content")))
    return out


async def _stream_tool_call(s: _Streamer, plan: _Plan, rid: str, name: str, arguments: str,
                            said: str = "") -> None:
    """A call as the native stream sends it: the first fragment has the id and the name, the
    next the rest of the arguments, the last `finish_reason: tool_calls` (accumulate by index).
    `said`: words streamed as content before the call."""
    for token in tokens_of(said):
        if not await s.pace():
            return
        await s.write(_native_event(s.sent + 1, compact(_native_body(rid, "message", token, "null", plan, 1))))
    call_id = "call_" + uuid.uuid4().hex[:24]
    half = len(arguments) // 2
    fragments = [
        {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments[:half]}},
        {"index": 0, "id": "", "type": "function", "function": {"arguments": arguments[half:]}},
    ]
    for i, frag in enumerate(fragments):
        if not await s.pace():
            return
        last = i == len(fragments) - 1
        payload = _native_body(rid, "message", "", "tool_calls" if last else "null", plan, i + 1)
        payload["output"]["choices"][0]["message"]["tool_calls"] = [frag]
        await s.write(_native_event(s.sent + 1, compact(payload)))
    await s.response.write_eof()


async def _stream_native(s: _Streamer, plan: _Plan, rid: str, fmt: str, incremental: bool) -> None:
    for i, token in enumerate(plan.tokens + [""]):
        if not await s.pace():
            return
        if s.error_due():
            err = for_status(500)
            data = compact({"request_id": rid, "code": err.code, "message": err.message})
            await s.write(_native_event(s.sent + 1, data, err.status, "error"))
            return
        if s.malformed_due():
            await s.write(_native_event(s.sent + 1, MALFORMED_DATA))
        last = i == len(plan.tokens)
        out = min(i + 1, len(plan.tokens))
        content = token if incremental else "".join(plan.tokens[: i + 1])
        payload = _native_body(rid, fmt, content, plan.finish if last else "null", plan, out)
        await s.write(_native_event(s.sent + 1, compact(payload)))
    await s.response.write_eof()


# --- OpenAI-compatible: /compatible-mode/v1/chat/completions ------------------------------------


async def handle_chat_completions(request: web.Request, ctx: EmulatorContext) -> web.StreamResponse:
    await _report_body(request, ctx)
    body = await read_json(request)
    model = _model(body)
    messages = _check_messages(body.get("messages"))
    stream = _bool(body, "stream", False)
    options = body.get("stream_options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise invalid("Parameter 'stream_options' must be an object.")
    include_usage = _bool(options, "include_usage", False)
    plan = _Plan(
        _last_user_text(messages),
        " ".join(_text_of(m.get("content")) for m in messages),
        _max_tokens(body.get("max_tokens", body.get("max_completion_tokens"))),
    )
    rid = request_id(request)
    cf = connection_faults(request, ctx, "llm")
    base = {
        "id": f"chatcmpl-{uuid.uuid4()}",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
    }
    usage = {
        "prompt_tokens": plan.input_tokens,
        "completion_tokens": len(plan.tokens),
        "total_tokens": plan.input_tokens + len(plan.tokens),
    }

    if not stream:
        if cf.error_event:
            raise for_status(500)
        opts = ctx.options
        await asyncio.sleep(opts.llm_first_token_s + opts.llm_token_s * len(plan.tokens))
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": plan.text},
            "finish_reason": plan.finish,
            "logprobs": None,
        }
        return json_response(
            request, {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
        )

    def chunk(delta: dict[str, Any], finish: str | None) -> str:
        c = {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return f"data: {compact(c)}\n\n"

    s = _Streamer(request, ctx, cf)
    deltas = [{"role": "assistant", "content": ""}] + [{"content": t} for t in plan.tokens]

    async def run() -> None:
        for i, delta in enumerate([*deltas, {"content": ""}]):
            if not await s.pace():
                return
            if s.error_due():
                err = openai_error_body(for_status(500), rid)
                await s.write(f"data: {compact(err)}\n\n")
                return
            if s.malformed_due():
                await s.write(f"data: {MALFORMED_DATA}\n\n")
            await s.write(chunk(delta, plan.finish if i == len(deltas) else None))
        if include_usage:
            tail = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            await s.write(f"data: {compact(tail)}\n\n")
        await s.write("data: [DONE]\n\n")
        await s.response.write_eof()

    await s.start()
    try:
        await run()
    except ConnectionResetError:
        ctx.log.info("client left the chat stream after %d chunks", s.sent)
    return s.response
