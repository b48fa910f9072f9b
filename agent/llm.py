"""Stream an LLM answer from DashScope text generation (native SSE endpoint) as text deltas.

Why a direct aiohttp SSE client rather than the SDK's `dashscope.AioGeneration.call(stream=True)`
(both were evaluated against the emulator; details in docs/pipeline.md):

- Errors. The SDK yields error *responses* instead of raising; a mid-stream ``event:error`` always
  gets ``status_code`` 400 because its parser ignores the ``:HTTP_STATUS/429`` comment line, and a
  network failure is logged with a full traceback (``logger.exception``) before it propagates. A
  barge-in-heavy daemon needs typed exceptions it can act on: `AuthError` (stop, tell the
  operator), `ThrottledError` (retry later), `TransientError` (retry now), `RequestError` (our bug).
- Timeouts. The SDK only sets a socket-read timeout (default 300 s) and no connect timeout; here
  connect and idle-read timeouts are explicit and short enough for a conversation.
- State. The SDK reads its base URL from module globals (`dashscope.base_http_api_url`; a
  per-call ``base_address`` kwarg exists but is undocumented) and shares one process-wide
  `ClientSession` (``trust_env=True``). Here each client has its own URL, key, workspace and
  session, so the emulator and the cloud (or two regions) can coexist in one process and tests.
- Cancellation. Both close the HTTP response promptly when the consuming task is cancelled (the SDK
  via CPython's async-generator finalizer). `LLMStream.aclose()` here closes the response
  explicitly, also from *another* task than the consumer (the barge-in handler), which an async
  generator cannot do.
- Dependencies: none added (aiohttp is already required; the SDK stays for enrollment and as the
  protocol oracle in tests).

Only the first attempt is retried, and only on a transient failure before any text arrived: once
the user heard words, repeating the request would repeat them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp

from agent.account import DashScopeAccount
from agent.backoff import Backoff
from agent.llm_errors import (
    AuthError,
    LLMError,
    RequestError,
    ThrottledError,
    TransientError,
    error_for,
)
from agent.llm_history import Conversation, Turn
from agent.llm_sse import SSEEvent, SSEParser, ToolCallAssembler, delta_of

log = logging.getLogger("agent.llm")



class LLMStream:
    """One streamed answer: `async for delta in stream`, then `usage`, `finish_reason`, metrics.

    `aclose()` ends it at once from any task (barge-in): the HTTP response is closed and a pending
    `__anext__` finishes with StopAsyncIteration instead of an error.
    """

    def __init__(self, client: LLMClient, messages: list[dict[str, Any]],
                 tools: list[dict[str, Any]] | None = None) -> None:
        self._client = client
        self._messages = messages
        self._tools = tools
        self._tool_calls = ToolCallAssembler()
        self._clock = client.clock
        self._gen = self._run()
        self._response: aiohttp.ClientResponse | None = None
        self._closed = False
        self.text = ""
        self.started_at: float | None = None
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.request_id: str | None = None
        self.attempts = 0
        self.malformed_events = 0

    @property
    def tool_calls(self) -> list[dict[str, str]]:
        """The functions the model called ([{id, name, arguments}]); read once the stream ended
        (`finish_reason` "tool_calls")."""
        return self._tool_calls.calls()

    @property
    def first_token_latency(self) -> float | None:
        """Seconds from sending the request to the first non-empty delta."""
        if self.first_token_at is None or self.started_at is None:
            return None
        return self.first_token_at - self.started_at

    def __aiter__(self) -> LLMStream:
        return self

    async def __anext__(self) -> str:
        if self._closed:
            raise StopAsyncIteration
        return await self._gen.__anext__()

    async def __aenter__(self) -> LLMStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        resp = self._response
        if resp is not None:
            resp.close()
        try:
            await self._gen.aclose()
        except RuntimeError:
            pass  # the generator is running in another task; closing the response ends it

    async def _run(self):  # type: ignore[no-untyped-def]  # AsyncGenerator[str, None]
        client = self._client
        backoff = Backoff(first=client.retry_first_s, cap=max(2.0, client.retry_first_s))
        self.started_at = self._clock()
        while True:
            self.attempts += 1
            try:
                async for delta in self._attempt():
                    yield delta
                return
            except TransientError as e:
                if self._closed:
                    return
                if self.text or self.attempts > client.max_retries:
                    raise
                delay = backoff.next_delay()
                log.info("LLM attempt %d failed (%s); retrying in %.2f s", self.attempts, e, delay)
                await asyncio.sleep(delay)
            finally:
                self._close_response()

    def _close_response(self) -> None:
        resp, self._response = self._response, None
        if resp is not None:
            resp.close()

    async def _attempt(self):  # type: ignore[no-untyped-def]  # AsyncGenerator[str, None]
        client = self._client
        self._tool_calls = ToolCallAssembler()  # a retried attempt starts its calls afresh
        try:
            session = await client._get_session()
            self._response = await session.post(
                client.url,
                json=client.request_body(self._messages, self._tools),
                headers=client.headers(),
                timeout=client.timeout,
            )
            resp = self._response
            self.request_id = resp.headers.get("x-request-id")
            if resp.status != 200:
                raise await _http_error(resp)
            if "text/event-stream" not in resp.headers.get("Content-Type", ""):
                msg = await resp.json(content_type=None)
                text = self._consume(msg)
                if text:
                    yield text
                return
            parser = SSEParser()
            while True:
                raw = await resp.content.readline()
                if not raw:
                    ev = parser.finish()
                    if ev is not None:
                        for delta in self._event(ev):
                            yield delta
                    break
                ev = parser.feed_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
                if ev is None:
                    continue
                for delta in self._event(ev):
                    yield delta
                if self.finish_reason is not None:
                    self.finished_at = self._clock()
                    return
        except LLMError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
            if self._closed:
                return
            raise TransientError(
                f"LLM connection failed: {type(e).__name__}: {e}", request_id=self.request_id
            ) from None
        if self._closed:
            return
        raise TransientError("LLM stream ended before the answer was complete",
                             request_id=self.request_id)

    def _event(self, ev: SSEEvent) -> list[str]:
        try:
            msg = json.loads(ev.data) if ev.data else {}
        except ValueError:
            if ev.event == "error":
                raise error_for(ev.status, None, ev.data[:200], self.request_id) from None
            self.malformed_events += 1
            log.debug("LLM: skipping malformed event data %r", ev.data[:80])
            return []
        if not isinstance(msg, dict):
            self.malformed_events += 1
            return []
        if isinstance(msg.get("request_id"), str):
            self.request_id = msg["request_id"]
        if ev.event == "error" or ("code" in msg and "output" not in msg):
            raise error_for(
                ev.status, _s(msg.get("code")), _s(msg.get("message")) or "", self.request_id
            )
        text = self._consume(msg)
        return [text] if text else []

    def _consume(self, msg: Mapping[str, Any]) -> str:
        text, finish = delta_of(msg)
        self._tool_calls.feed(msg)
        if isinstance(msg.get("usage"), dict):
            self.usage = dict(msg["usage"])
        if finish:
            self.finish_reason = finish
        if text:
            if self.first_token_at is None:
                self.first_token_at = self._clock()
            self.text += text
        return text


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return float(value) * scale
            except ValueError:
                pass
    return None


async def _http_error(resp: aiohttp.ClientResponse) -> LLMError:
    code = message = None
    rid = resp.headers.get("x-request-id")
    try:
        body = await resp.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        body = None
    if isinstance(body, dict):
        err = body.get("error") if isinstance(body.get("error"), dict) else body  # OpenAI shape
        code, message = _s(err.get("code")), _s(err.get("message")) or _s(err.get("msg"))
        rid = _s(body.get("request_id")) or rid
    return error_for(resp.status, code, message or resp.reason or "", rid, _retry_after(resp.headers))


class LLMClient:
    """Streams answers from `{http_base}/api/v1/services/aigc/text-generation/generation`.

    One client per daemon; it owns an aiohttp session unless one is passed in (then the caller
    closes it). `parameters` are merged into the request's `parameters` (temperature, max_tokens…).
    """

    def __init__(
        self,
        account: DashScopeAccount,
        model: str,
        *,
        parameters: Mapping[str, Any] | None = None,
        session: aiohttp.ClientSession | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        max_retries: int = 1,
        retry_first_s: float = 0.3,
        trust_env: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = account.urls.generation
        self.model = model
        self.parameters = dict(parameters or {})
        self.max_retries = max_retries
        self.retry_first_s = retry_first_s
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout_s, sock_connect=connect_timeout_s,
            sock_read=read_timeout_s,
        )
        self._account = account
        self._session = session
        self._own_session = session is None
        self._trust_env = trust_env
        self.last_stream: LLMStream | None = None

    @property
    def last_first_token_latency(self) -> float | None:
        return self.last_stream.first_token_latency if self.last_stream else None

    def headers(self) -> dict[str, str]:
        return self._account.headers({
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "text/event-stream",
            "X-DashScope-SSE": "enable",
            "X-Accel-Buffering": "no",
        })

    def request_body(self, messages: Iterable[Mapping[str, Any]],
                     tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """`tools`: `ToolSpec.as_chat()` entries; the model decides (`tool_choice` auto)."""
        parameters: dict[str, Any] = {"result_format": "message", "incremental_output": True,
                                      **self.parameters}
        if tools:
            parameters["tools"] = tools
            parameters["tool_choice"] = "auto"
        return {"model": self.model, "input": {"messages": [dict(m) for m in messages]},
                "parameters": parameters}

    def stream(self, messages: Iterable[Mapping[str, Any]],
               tools: list[dict[str, Any]] | None = None) -> LLMStream:
        """Start streaming an answer; iterate the result for text deltas (and, when the model
        called functions, read `tool_calls` after it ended)."""
        s = LLMStream(self, [dict(m) for m in messages], tools)
        self.last_stream = s
        return s

    async def complete(self, messages: Iterable[Mapping[str, Any]]) -> str:
        """The whole answer (announcements, tests)."""
        async with self.stream(messages) as s:
            async for _ in s:
                pass
            return s.text

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._own_session:
                raise TransientError("the HTTP session given to LLMClient is closed")
            self._session = aiohttp.ClientSession(trust_env=self._trust_env)
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None


__all__ = [  # the error, history and SSE names are re-exported: `agent.llm` stays their import path
    "AuthError",
    "Conversation",
    "LLMClient",
    "LLMError",
    "LLMStream",
    "RequestError",
    "SSEEvent",
    "SSEParser",
    "ThrottledError",
    "TransientError",
    "Turn",
    "delta_of",
    "error_for",
]
