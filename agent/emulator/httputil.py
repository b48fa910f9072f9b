"""HTTP plumbing shared by all emulator routes: auth, fault injection, JSON bodies, the WS gate.

Every API route goes through `guarded()`, which does what the cloud gateway does before a request
reaches a service (reject a bad key with 401) and what the fault plan asks for (stall, latency,
injected status, dropped or silent connections). Handlers only implement the API itself. The
route table is `routes.py`; handlers import these helpers, never the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.emulator.context import EmulatorContext
from agent.emulator.errors import (
    ApiError,
    compact,
    error_response,
    for_status,
    invalid,
    request_id,
)
from agent.emulator.faults import FAULTS_HEADER, ConnectionFaults, FaultSpecError

Handler = Callable[[web.Request, EmulatorContext], Awaitable[web.StreamResponse]]

MAX_JSON_BYTES = 16 * 1024 * 1024  # a 10 MB audio sample as a data URI fits


def json_response(request: web.Request, body: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(
        body,
        status=status,
        headers={"x-request-id": request_id(request)},
        dumps=lambda o: compact(o),
    )


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or 400 InvalidParameter like the real gateway."""
    raw = await request.read()
    if not raw:
        raise invalid("Request body is empty; a JSON object is required.")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise invalid(f"Request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object.")
    return body


def connection_faults(request: web.Request, ctx: EmulatorContext, group: str) -> ConnectionFaults:
    try:
        return ctx.faults.for_connection(group, request)
    except FaultSpecError as e:
        raise invalid(f"{FAULTS_HEADER}: {e}") from None


async def wait_until_client_leaves(request: web.Request, limit_s: float = 3600.0) -> None:
    """Half-open: hold the connection without sending until the peer closes it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.2)


def abort_connection(request: web.Request) -> None:
    """Drop the TCP connection without a response (what a crashed gateway looks like)."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _serving(request: web.Request, ctx: EmulatorContext, endpoint: str) -> contextlib.AbstractContextManager[None]:
    """The observer's view of one served request (see observe.py)."""
    return ctx.observer.serving(
        endpoint, request.path, request.query.get("model", ""), request.headers.get("User-Agent", "")
    )


def guarded(ctx: EmulatorContext, group: str | None, handler: Handler) -> web.RequestHandler:
    """Wrap an API handler with auth, fault injection and error-body conversion.

    For a plain (non-streaming) response, `drop_after` and `half_open` act on the response itself:
    the work is done but the answer is lost or never comes, as when a gateway dies mid-request.
    Streaming handlers (SSE) prepare their own response and apply per-event faults themselves.
    """

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            if not ctx.check_auth(request):
                raise ApiError(401, "InvalidApiKey", "Invalid API-key provided.")
            cf = connection_faults(request, ctx, group) if group else ConnectionFaults()
            if cf.active:
                ctx.log.info("faults for %s %s: %s", request.method, request.path, cf.describe())
                await cf.start_stall()
                await cf.delay()
                if cf.http_status:
                    raise for_status(cf.http_status)
            with _serving(request, ctx, group) if group else contextlib.nullcontext():
                response = await handler(request, ctx)
        except ApiError as err:
            return error_response(request, err)
        if not response.prepared and cf.active:
            if cf.drop_after is not None:
                abort_connection(request)
                return response
            if cf.is_silent(0):
                await wait_until_client_leaves(request)
                abort_connection(request)
        return response

    return wrapped


# --- WebSocket upgrade gate ---------------------------------------------------------------------


def ws_route(ctx: EmulatorContext, kind: str, module: str, func: str) -> web.RequestHandler:
    """Check auth and injected statuses *before* the upgrade, then hand over to the WS module."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            if not ctx.check_auth(request):
                raise ApiError(401, "InvalidApiKey", "Invalid API-key provided.")
            cf = connection_faults(request, ctx, kind)
            if cf.http_status:
                raise for_status(cf.http_status)
            try:
                handler = getattr(importlib.import_module(module), func)
            except (ImportError, AttributeError) as e:
                ctx.log.warning("WebSocket endpoint %s unavailable: %s", request.path, e)
                raise ApiError(
                    501, "NotImplemented", f"{request.path} is not available in this build."
                ) from None
        except ApiError as err:
            return error_response(request, err)
        with _serving(request, ctx, kind):
            return await handler(request, ctx)

    return wrapped
