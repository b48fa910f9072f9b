"""The emulator's observation hooks see every frame it writes, as it writes them.

`bench/probe.py` stamps "the first audio delta leaving the server" with these hooks instead of
wrapping the emulator's handlers and aiohttp from the outside. The reference here is exactly what
the probe used to wrap: aiohttp's `WebSocketResponse.send_str` / `send_bytes` and
`StreamResponse.write`. Whatever the emulator hands to those (injected faulty frames included)
the `on_sent` hook must report, in the same order, for the right peer, stamped after the write.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

import pytest
from aiohttp import web

from agent.emulator.observe import Peer, SentFrame
from tests.emulator.test_cosyvoice_ws import collect, finish, run_task, text
from tests.support.ws import OMNI, connect, headers, recv, send, start_emulator, until

GEN = "/api/v1/services/aigc/text-generation/generation"


class Recorder:
    """The hooks' view and aiohttp's view of the same run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hooked: list[tuple[int, str, str | bytes, float]] = []
        self.written: list[tuple[str, str | bytes, float]] = []
        self.peers: dict[int, Peer] = {}
        self.events: list[tuple[int, str, float]] = []
        send_str, send_bytes = web.WebSocketResponse.send_str, web.WebSocketResponse.send_bytes
        write = web.StreamResponse.write
        written = self.written

        async def send_str_(ws: web.WebSocketResponse, data: str, *a: Any, **k: Any) -> None:
            await send_str(ws, data, *a, **k)
            written.append(("text", data, time.monotonic()))

        async def send_bytes_(ws: web.WebSocketResponse, data: bytes, *a: Any, **k: Any) -> None:
            await send_bytes(ws, data, *a, **k)
            written.append(("binary", bytes(data), time.monotonic()))

        async def write_(resp: web.StreamResponse, data: bytes) -> None:
            await write(resp, data)
            written.append(("sse", bytes(data), time.monotonic()))

        monkeypatch.setattr(web.WebSocketResponse, "send_str", send_str_)
        monkeypatch.setattr(web.WebSocketResponse, "send_bytes", send_bytes_)
        monkeypatch.setattr(web.StreamResponse, "write", write_)

    def on_sent(self, frame: SentFrame, t: float) -> None:
        self.hooked.append((frame.peer.n, frame.kind, frame.data, t))

    def on_connection(self, peer: Peer, event: Literal["open", "close"], t: float) -> None:
        self.peers[peer.n] = peer
        self.events.append((peer.n, event, t))

    def check_same_frames(self) -> None:
        assert [(k, d) for _, k, d, _ in self.hooked] == [(k, d) for k, d, _ in self.written]
        for (_, _, _, t_hook), (_, _, t_write) in zip(self.hooked, self.written, strict=True):
            assert t_hook >= t_write, "stamped after the frame was handed to the transport"
        opened = {n: t for n, e, t in self.events if e == "open"}
        closed = {n: t for n, e, t in self.events if e == "close"}
        for n, _, _, t in self.hooked:
            assert opened[n] <= t <= closed.get(n, float("inf"))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return Recorder(monkeypatch)


async def test_realtime_frames_are_all_reported_for_their_peer(recorder: Recorder) -> None:
    em = await start_emulator(on_sent=recorder.on_sent, on_connection=recorder.on_connection)
    try:
        ws = await connect(em, f"/api-ws/v1/realtime?model={OMNI}")
        await until(ws, "session.created")
        await send(ws, {"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What's the weather?"}]}})
        await send(ws, {"type": "response.create"})
        events = await until(ws, "response.done")
        await ws.close()
        await until_closed(recorder, 1)
    finally:
        await em.stop()
    assert any(e["type"] == "response.audio.delta" for e in events)
    recorder.check_same_frames()
    peer = recorder.peers[1]
    assert (peer.endpoint, peer.path, peer.model) == ("realtime", "/api-ws/v1/realtime", OMNI)
    assert [json.loads(d)["type"] for _, _, d, _ in recorder.hooked][-1] == "response.done"


async def test_cosyvoice_frames_and_injected_faulty_frames_are_reported(recorder: Recorder) -> None:
    em = await start_emulator(on_sent=recorder.on_sent, on_connection=recorder.on_connection)
    try:
        ws = await connect(em, "/api-ws/v1/inference")
        tid = uuid.uuid4().hex
        await send(ws, run_task(tid))
        assert (await recv(ws))["header"]["event"] == "task-started"
        await send(ws, text(tid, "Hello there. How are you?"))
        await send(ws, finish(tid))
        frames = await collect(ws)
        await ws.close()
        faulty = await connect(em, "/api-ws/v1/inference", faults="malformed=1,binary_frame=2")
        await send(faulty, run_task(uuid.uuid4().hex))
        for _ in range(3):
            await recv_raw(faulty)
        await faulty.close()
        await until_closed(recorder, 2)
    finally:
        await em.stop()
    recorder.check_same_frames()
    kinds = [(n, k) for n, k, _, _ in recorder.hooked]
    assert sum(1 for f in frames if isinstance(f, bytes)) == kinds.count((1, "binary")) > 0
    assert (2, "binary") in kinds, "the injected binary frame is reported too"
    assert {p.endpoint for p in recorder.peers.values()} == {"inference"}


async def test_native_sse_chunks_are_reported_with_the_client(recorder: Recorder) -> None:
    import aiohttp

    em = await start_emulator(on_sent=recorder.on_sent, on_connection=recorder.on_connection,
                              llm_first_token_s=0.005, llm_token_s=0.0)
    body = {"model": "qwen-plus", "input": {"messages": [{"role": "user", "content": "hi"}]},
            "parameters": {"incremental_output": True}}
    try:
        async with aiohttp.ClientSession() as http:
            r = await http.post(em.base_url + GEN, json=body, headers={
                **headers(), "X-DashScope-SSE": "enable", "User-Agent": "kiosk-test/1"})
            streamed = await r.read()
    finally:
        await em.stop()
    recorder.check_same_frames()
    assert b"".join(d for _, _, d, _ in recorder.hooked) == streamed  # type: ignore[misc]
    peer = recorder.peers[1]
    assert (peer.endpoint, peer.path, peer.user_agent) == ("llm", GEN, "kiosk-test/1")
    assert [e for _, e, _ in recorder.events] == ["open", "close"]


async def test_without_hooks_nothing_is_observed() -> None:
    em = await start_emulator()
    try:
        assert not em.context.observer.active
        ws = await connect(em, f"/api-ws/v1/realtime?model={OMNI}")
        await until(ws, "session.created")
        await ws.close()
    finally:
        await em.stop()


async def recv_raw(ws: Any) -> str | bytes:
    import asyncio

    return await asyncio.wait_for(ws.recv(), 5)


async def until_closed(recorder: Recorder, peers: int, timeout: float = 5.0) -> None:
    """The server side ends a moment after the client closes: wait for its `close` events."""
    import asyncio

    deadline = time.monotonic() + timeout
    while sum(1 for _, e, _ in recorder.events if e == "close") < peers:
        assert time.monotonic() < deadline, recorder.events
        await asyncio.sleep(0.01)
