"""MCP servers as tool sources (SPEC §11), against real servers written with the `mcp` SDK.

A stdio server (`mcp_light.py`, a pretend light switch) started and supervised by `McpSource`;
one that hangs (the call's timeout is the result), one that crashes (down, restarted with
backoff, up again, tools listed again); and a Streamable HTTP server in-process on loopback
behind a bearer token read from a file, the way Home Assistant's `/api/mcp` is reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from agent.tools.mcp import McpSource, McpTimings  # noqa: E402
from agent.tools.spec import ToolSource  # noqa: E402

LIGHT = str(Path(__file__).with_name("mcp_light.py"))
FAST = McpTimings(connect_s=15.0, relist_s=0.3, backoff_first_s=0.2, backoff_cap_s=0.5)
TOKEN = "ha-long-lived-token-0123456789abcdef"


def light(name: str = "light", **extra: object) -> dict[str, object]:
    return {"name": name, "command": [sys.executable, LIGHT], **extra}


@contextlib.asynccontextmanager
async def started(entry: dict[str, object], timeout_s: float = 5.0) -> AsyncIterator[McpSource]:
    source = McpSource(entry, timeout_s=timeout_s, timings=FAST)
    await source.start()
    try:
        yield source
    finally:
        await source.stop()


async def test_a_stdio_server_is_started_listed_and_called(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "voice-agent.mcp")
    async with started(light()) as source:
        assert isinstance(source, ToolSource)
        assert await source.settled(15) == "up"
        specs = {s.name: s for s in source.specs()}
        assert {"light_set", "light_get"} <= set(specs)
        assert specs["light_set"].description == "Switch the light on or off."
        assert specs["light_set"].parameters["properties"]["on"]["type"] == "boolean"
        assert specs["light_set"].as_chat()["function"]["parameters"]["type"] == "object"

        assert (await source.call("light_set", {"on": True})).text == "the light is on"
        got = await source.call("light_get", {})
        assert (got.text, got.is_error) == ("on", False)
    assert source.status() == "down" and source.specs() == []
    # The child's stderr is in our log, under the server's name.
    assert any(r.getMessage() == "mcp light: light server starting" for r in caplog.records)


async def test_the_allow_list_limits_what_the_model_is_offered_and_may_call(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "voice-agent.mcp")
    async with started(light(allow=["light_get", "light_toggle"])) as source:
        await source.wait_status("up", 15)
        assert [s.name for s in source.specs()] == ["light_get"]
        refused = await source.call("light_set", {"on": True})
        assert refused.is_error and "light_set" in refused.text
        assert (await source.call("light_get", {})).text == "off"
        await asyncio.sleep(0.7)  # re-listed twice (relist_s 0.3): the typo is still said once
    typo = [r for r in caplog.records if "allow lists" in r.getMessage()]
    assert [r.getMessage() for r in typo] == [
        "mcp light: allow lists light_toggle, which the server does not offer"]


async def test_a_tool_that_hangs_times_out_as_an_error_result() -> None:
    async with started(light(), timeout_s=0.5) as source:
        await source.wait_status("up", 15)
        t0 = time.monotonic()
        result = await source.call("slow", {})
        took = time.monotonic() - t0
        assert result.is_error and "timed out after 0.5 s" in result.text
        assert 0.4 < took < 2.0
        # The server is still there for the next call.
        assert (await source.call("light_get", {})).text == "off"
        assert source.status() == "up"


async def test_a_server_error_and_bad_arguments_come_back_as_error_results() -> None:
    async with started(light()) as source:
        await source.wait_status("up", 15)
        bad = await source.call("light_set", {"on": "maybe-not-a-bool"})
        assert bad.is_error
        unknown = await source.call("toaster", {})
        assert unknown.is_error and "toaster" in unknown.text


async def test_a_crashed_server_is_down_then_restarted_with_its_tools_listed_again() -> None:
    async with started(light()) as source:
        await source.wait_status("up", 15)
        crashed = await source.call("crash", {})
        assert crashed.is_error
        await source.wait_status("down", 5)
        assert source.specs() == []
        while_down = await source.call("light_get", {})  # never blocks while down
        assert while_down.is_error and "not reachable" in while_down.text
        await source.wait_status("up", 15)
        assert source.connects == 2
        assert "light_get" in {s.name for s in source.specs()}
        assert (await source.call("light_get", {})).text == "off"  # a fresh process


async def test_a_server_that_exits_by_itself_is_noticed_and_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "voice-agent.mcp")
    entry = light(env={"LIGHT_EXIT_ONCE": str(tmp_path / "exited")})
    async with started(entry) as source:
        await source.wait_status("up", 15)
        await source.wait_status("down", 5)  # no call needed: the re-listing notices
        await source.wait_status("up", 15)
        assert source.connects == 2
    downs = [r for r in caplog.records if "mcp light: down" in r.getMessage()]
    assert downs and "retrying in" in downs[0].getMessage()


async def test_a_server_that_cannot_start_never_blocks_and_keeps_being_retried() -> None:
    source = McpSource({"name": "ghost", "command": ["/nonexistent/mcp-server"]}, timings=FAST)
    t0 = time.monotonic()
    await source.start()
    assert time.monotonic() - t0 < 0.1
    try:
        assert source.status() == "down" and source.specs() == []
        assert await source.settled(5) == "down"  # the first attempt failed: no need to wait on
        result = await source.call("anything", {})
        assert result.is_error
        await asyncio.sleep(1.0)
        assert source.status() == "down" and source.last_error
    finally:
        await source.stop()


# --- Streamable HTTP with a bearer token (Home Assistant's shape) ------------------------------


@contextlib.asynccontextmanager
async def http_server(token: str) -> AsyncIterator[str]:
    """The SDK's Streamable HTTP server on loopback at /api/mcp, stateless JSON like Home
    Assistant's, refusing requests without `Authorization: Bearer <token>` (401)."""
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("home")
    lights = {"kitchen": False}

    @server.tool()
    def light_set(on: bool) -> str:
        """Switch the kitchen light."""
        lights["kitchen"] = on
        return f"kitchen light {'on' if on else 'off'}"

    app = server.streamable_http_app(streamable_http_path="/api/mcp", stateless_http=True,
                                     json_response=True)
    seen: list[str] = []

    async def guarded(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http":
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            seen.append(auth)
            if auth != f"Bearer {token}":
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"unauthorized"})
                return
        await app(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(guarded, log_level="warning", lifespan="on")
    web = uvicorn.Server(config)
    task = asyncio.create_task(web.serve(sockets=[sock]))
    try:
        while not web.started:
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}/api/mcp"
    finally:
        web.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
        assert seen, "the server was never asked"


async def test_an_http_server_is_reached_with_the_token_from_its_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "ha-token"
    token_file.write_text(TOKEN + "\n")
    async with http_server(TOKEN) as url, started(
        {"name": "home", "url": url, "token_file": str(token_file)}
    ) as source:
        await source.wait_status("up", 15)
        assert [s.name for s in source.specs()] == ["light_set"]
        result = await source.call("light_set", {"on": True})
        assert (result.text, result.is_error) == ("kitchen light on", False)
    assert TOKEN not in caplog.text


async def test_a_wrong_token_leaves_the_server_down_without_logging_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "ha-token"
    token_file.write_text("not-the-token-" + TOKEN)
    async with http_server(TOKEN) as url, started(
        {"name": "home", "url": url, "token_file": str(token_file)}
    ) as source:
        await asyncio.sleep(1.0)
        assert source.status() == "down" and source.specs() == []
        assert source.last_error
    assert TOKEN not in caplog.text
    assert any("mcp home: down" in r.getMessage() for r in caplog.records)


async def test_a_missing_token_file_is_reported_as_the_reason_for_down(tmp_path: Path) -> None:
    entry = {"name": "home", "url": "http://127.0.0.1:9/api/mcp",
             "token_file": str(tmp_path / "absent")}
    async with started(entry) as source:
        await asyncio.sleep(0.5)
        assert source.status() == "down"
        assert "token_file" in (source.last_error or "")
