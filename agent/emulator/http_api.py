"""HTTP plumbing shared by all emulator routes: auth, fault injection, JSON bodies, route table.

Every API route goes through `guarded()`, which does what the cloud gateway does before a request
reaches a service (reject a bad key with 401) and what the fault plan asks for (stall, latency,
injected status, dropped or silent connections). Handlers only implement the API itself.
"""

from __future__ import annotations

import asyncio
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


# --- runtime fault control API ------------------------------------------------------------------


async def faults_get(request: web.Request, ctx: EmulatorContext) -> web.StreamResponse:
    return json_response(request, {"request_id": request_id(request), **ctx.faults.describe()})


async def faults_set(request: web.Request, ctx: EmulatorContext) -> web.StreamResponse:
    raw = (await request.read()).decode("utf-8", errors="replace").strip()
    spec: Any = raw
    if raw.startswith("{"):
        try:
            spec = json.loads(raw).get("spec")
        except (json.JSONDecodeError, AttributeError):
            raise invalid('Body must be a fault spec or JSON {"spec": "..."}.') from None
        if spec is not None and not isinstance(spec, str):
            raise invalid("'spec' must be a string.")
    try:
        ctx.faults.set(spec)
    except FaultSpecError as e:
        raise invalid(str(e)) from None
    ctx.log.info("fault plan set to %r", ctx.faults.spec)
    return json_response(request, {"request_id": request_id(request), **ctx.faults.describe()})


async def faults_clear(request: web.Request, ctx: EmulatorContext) -> web.StreamResponse:
    ctx.faults.clear()
    ctx.log.info("fault plan cleared")
    return json_response(request, {"request_id": request_id(request), **ctx.faults.describe()})


async def health(request: web.Request) -> web.StreamResponse:
    return json_response(request, {"status": "ok"})


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
        return await handler(request, ctx)

    return wrapped


def add_routes(app: web.Application, ctx: EmulatorContext) -> None:
    """All routes of the emulator (HTTP APIs, control API, WebSocket endpoints)."""
    from agent.emulator import customization, textgen, uploads

    r = app.router
    r.add_post(
        "/api/v1/services/audio/tts/customization",
        guarded(ctx, "customization", customization.handle),
    )
    r.add_get("/api/v1/uploads", guarded(ctx, "uploads", uploads.handle_get_policy))
    r.add_post(uploads.SINK_PATH, uploads.sink_handler(ctx))
    r.add_post(
        "/api/v1/services/aigc/text-generation/generation",
        guarded(ctx, "llm", textgen.handle_generation),
    )
    r.add_post(
        "/compatible-mode/v1/chat/completions", guarded(ctx, "llm", textgen.handle_chat_completions)
    )
    r.add_get("/_emulator/health", health)
    r.add_get("/_emulator/faults", guarded(ctx, None, faults_get))
    r.add_post("/_emulator/faults", guarded(ctx, None, faults_set))
    r.add_put("/_emulator/faults", guarded(ctx, None, faults_set))
    r.add_delete("/_emulator/faults", guarded(ctx, None, faults_clear))
    realtime = ws_route(ctx, "realtime", "agent.emulator.realtime_ws", "handle_realtime")
    inference = ws_route(ctx, "inference", "agent.emulator.cosyvoice_ws", "handle_inference")
    r.add_get("/api-ws/v1/realtime", realtime)
    r.add_get("/api-ws/v1/inference", inference)
    r.add_get("/api-ws/v1/inference/", inference)
