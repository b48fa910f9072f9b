"""Server-wide behaviour: auth on every route, error envelopes, request ids, WS upgrade gate."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import pytest
from aiohttp import web

from agent.emulator.context import EmulatorContext, EmulatorOptions
from agent.emulator.server import Emulator, EmulatorThread, build_app, resolve_api_key

ROUTES = [
    ("POST", "/api/v1/services/audio/tts/customization"),
    ("GET", "/api/v1/uploads?action=getPolicy&model=voice-enrollment"),
    ("POST", "/api/v1/services/aigc/text-generation/generation"),
    ("GET", "/_emulator/faults"),
    ("POST", "/_emulator/faults"),
    ("DELETE", "/_emulator/faults"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", "sk-emulator-test", "Basic sk-emulator-test", "Bearer"]
)
async def test_every_route_requires_the_key(
    emulator: Emulator, http, method, path, authorization
) -> None:
    h = {} if authorization is None else {"Authorization": authorization}
    r = await http.request(method, emulator.base_url + path, json={}, headers=h)
    assert r.status == 401
    body = await r.json()
    assert body["code"] == "InvalidApiKey" and body["message"] == "Invalid API-key provided."
    assert body["request_id"] and r.headers["x-request-id"] == body["request_id"]


async def test_lowercase_bearer_is_accepted(emulator: Emulator, http, api_key) -> None:
    r = await http.get(
        emulator.base_url + "/_emulator/faults", headers={"Authorization": f"bearer {api_key}"}
    )
    assert r.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api-ws/v1/realtime?model=qwen3.5-omni-flash-realtime",
        "/api-ws/v1/inference",
        "/api-ws/v1/inference/",
    ],
)
async def test_ws_upgrade_rejected_with_401(emulator: Emulator, http, path) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await http.ws_connect(emulator.ws_url + path, headers={"Authorization": "Bearer wrong"})
    assert exc.value.status == 401
    r = await http.get(emulator.base_url + path)  # the body is the usual JSON error
    assert r.status == 401 and (await r.json())["code"] == "InvalidApiKey"


async def test_unknown_path_and_method(emulator: Emulator, http, headers) -> None:
    r = await http.get(emulator.base_url + "/api/v1/nothing", headers=headers)
    body = await r.json()
    assert r.status == 404 and set(body) == {"request_id", "code", "message"}
    r = await http.get(
        emulator.base_url + "/api/v1/services/audio/tts/customization", headers=headers
    )
    assert r.status == 405 and (await r.json())["code"] == "MethodNotAllowed"


async def test_health_needs_no_key(emulator: Emulator, http) -> None:
    r = await http.get(emulator.base_url + "/_emulator/health")
    assert r.status == 200 and (await r.json()) == {"status": "ok"}


async def test_unexpected_exception_becomes_json_500(http) -> None:
    ctx = EmulatorContext(EmulatorOptions())
    app = build_app(ctx)

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app.router.add_get("/boom", boom)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        r = await http.get(f"http://127.0.0.1:{port}/boom")
        text = await r.text()
        assert r.status == 500 and "secret internals" not in text and "Traceback" not in text
        assert (await r.json())["code"] == "InternalError"
    finally:
        await runner.cleanup()


async def test_emulator_properties_and_restart_guard() -> None:
    em = Emulator()
    assert em.base_url == "" and em.ws_url == ""
    url = await em.start()
    try:
        assert url == em.base_url and url.startswith("http://127.0.0.1:")
        assert em.ws_url == "ws" + url[4:] and em.api_key == "sk-emulator"
        with pytest.raises(RuntimeError):
            await em.start()
    finally:
        await em.stop()
    await em.stop()  # idempotent


def test_emulator_thread_serves_sync_clients() -> None:
    import requests

    with EmulatorThread(options=EmulatorOptions(api_key="k1")) as et:
        r = requests.get(
            et.base_url + "/_emulator/faults", headers={"Authorization": "Bearer k1"}, timeout=5
        )
        assert r.status_code == 200
        assert et.call(asyncio.sleep(0, result=7)) == 7  # runs on the emulator's loop
        url = et.base_url
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/_emulator/health", timeout=2)


@pytest.mark.unit
def test_api_key_resolution(monkeypatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-env")
    assert resolve_api_key("sk-flag") == "sk-flag"
    assert resolve_api_key(None) == "sk-env"
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    assert resolve_api_key(None) == "sk-emulator" and "DASHSCOPE_API_KEY" not in os.environ


async def test_request_log_is_wired(emulator: Emulator, http, headers) -> None:
    pytest.importorskip("agent.emulator.requestlog")
    await http.get(
        emulator.base_url + "/api/v1/uploads?action=getPolicy&model=voice-enrollment",
        headers=headers,
    )
    r = await http.get(emulator.base_url + "/_emulator/requests", headers=headers)
    records = (await r.json())["requests"]
    assert any(
        rec["path"] == "/api/v1/uploads" and rec["model"] == "voice-enrollment" for rec in records
    )


async def test_faults_query_parameter(emulator: Emulator, http, headers) -> None:
    r = await http.get(
        emulator.base_url + "/api/v1/uploads",
        params={"action": "getPolicy", "model": "m", "faults": "http=403"},
        headers=headers,
    )
    assert r.status == 403 and (await r.json())["code"] == "AccessDenied"
