"""The emulator's route table (HTTP APIs, the runtime fault-control API, WebSocket endpoints)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from agent.emulator import customization, textgen, uploads
from agent.emulator.context import EmulatorContext
from agent.emulator.errors import invalid, request_id
from agent.emulator.faults import FaultSpecError
from agent.emulator.httputil import guarded, json_response, ws_route

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


def add_routes(app: web.Application, ctx: EmulatorContext) -> None:
    """All routes of the emulator (HTTP APIs, control API, WebSocket endpoints)."""
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
