"""A bounded log of the HTTP requests an emulator received, for tests and integrators.

Tests of "exactly one voice was created" or "nothing was sent before the sample was rejected" need
to see what reached the server, not what the client believes it sent. Each request is recorded on
*arrival* (before fault-injected latency and before the handler runs), with the JSON body's
`model` and `input.action` when present, so a test can wait for "the create request has arrived"
and then, e.g., kill the client.

Wiring: `attach(app, ctx)` before the app starts (appends the middleware and sets
`ctx.request_log`); `GET /_emulator/requests` is added by `add_route(app, ctx)` when wanted.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

DEFAULT_MAXLEN = 1000
_MAX_PEEK_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class RequestRecord:
    seq: int
    time: float
    method: str
    path: str
    query: str
    model: str | None = None
    action: str | None = None


class RequestLog:
    """Thread-safe ring buffer of RequestRecords (EmulatorThread tests read it from another thread)."""

    def __init__(self, maxlen: int = DEFAULT_MAXLEN) -> None:
        self._items: collections.deque[RequestRecord] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._seq = 0

    def add(self, method: str, path: str, query: str, model: str | None, action: str | None) -> RequestRecord:
        with self._lock:
            self._seq += 1
            rec = RequestRecord(self._seq, time.time(), method, path, query, model, action)
            self._items.append(rec)
            return rec

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def find(self, *, path: str | None = None, model: str | None = None,
             action: str | None = None) -> list[RequestRecord]:
        return [
            r for r in self.records()
            if (path is None or r.path == path)
            and (model is None or r.model == model)
            and (action is None or r.action == action)
        ]

    async def wait_for(self, timeout_s: float = 10.0, **match: str) -> RequestRecord:
        """Wait until a request matching `match` (path/model/action) has arrived."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.find(**match)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no request matching {match} within {timeout_s} s")
            await asyncio.sleep(0.005)


def middleware(log: RequestLog) -> Any:
    @web.middleware
    async def record_request(request: web.Request, handler: Any) -> web.StreamResponse:
        model = action = None
        if request.method == "POST" and request.content_type == "application/json":
            # read() caches the body, so the handler can read it again.
            if (request.content_length or 0) <= _MAX_PEEK_BYTES:
                try:
                    body = json.loads(await request.read())
                except (ValueError, UnicodeDecodeError):
                    body = None
                if isinstance(body, dict):
                    model = body.get("model") if isinstance(body.get("model"), str) else None
                    inp = body.get("input")
                    if isinstance(inp, dict) and isinstance(inp.get("action"), str):
                        action = inp["action"]
        elif request.method == "GET":
            action = request.query.get("action")
            model = request.query.get("model")
        log.add(request.method, request.path, request.query_string, model, action)
        return await handler(request)

    return record_request


def attach(app: web.Application, ctx: Any, maxlen: int = DEFAULT_MAXLEN) -> RequestLog:
    """Install the middleware (outermost) on a not-yet-started app; `ctx.request_log` = the log."""
    log = getattr(ctx, "request_log", None)
    if isinstance(log, RequestLog):
        return log  # already attached (idempotent: the server may wire it itself)
    log = RequestLog(maxlen)
    ctx.request_log = log
    app.middlewares.insert(0, middleware(log))
    return log


def add_route(app: web.Application, ctx: Any) -> None:
    """`GET /_emulator/requests` → {"requests": [...]} (needs the API key like the other routes)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if not ctx.check_auth(request):
            return web.json_response({"code": "InvalidApiKey", "message": "Invalid API-key provided."}, status=401)
        log: RequestLog = ctx.request_log
        return web.json_response({"requests": [asdict(r) for r in log.records()]})

    app.router.add_get("/_emulator/requests", handle)
