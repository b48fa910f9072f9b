"""Talking to the emulator's WebSocket endpoints as JSON: connect, send, receive until."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import websockets

from agent.emulator.server import Emulator
from tests.support import emulator as emu

OMNI = "qwen3.5-omni-flash-realtime"
ASR = "qwen3-asr-flash-realtime"


async def start_emulator(faults: str | None = None, **overrides: Any) -> Emulator:
    """An emulator with `WS_FAST` timings (the test stops it)."""
    return await emu.start_emulator(faults, **{**emu.WS_FAST, **overrides})


def headers(faults: str | None = None, key: str = emu.API_KEY) -> dict[str, str]:
    h = {"Authorization": f"Bearer {key}"}
    if faults:
        h["X-Emulator-Faults"] = faults
    return h


async def connect(em: Emulator, path: str, faults: str | None = None) -> Any:
    return await websockets.connect(
        em.ws_url + path, additional_headers=headers(faults), max_size=None, open_timeout=5
    )


async def recv(ws: Any, timeout: float = 5.0) -> Any:
    """Next frame: a dict for JSON text, bytes for binary."""
    msg = await asyncio.wait_for(ws.recv(), timeout)
    return msg if isinstance(msg, bytes) else json.loads(msg)


async def send(ws: Any, obj: dict[str, Any]) -> None:
    await ws.send(json.dumps(obj))


async def until(ws: Any, kind: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Realtime events up to and including the first of type `kind`."""
    seen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ev = await recv(ws, max(0.01, deadline - loop.time()))
        seen.append(ev)
        if ev.get("type") == kind:
            return seen


async def closed(ws: Any, timeout: float = 5.0) -> int | None:
    """Read until the server closes; the close code (1006 when the socket was just dropped)."""

    async def drain() -> None:
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass

    await asyncio.wait_for(drain(), timeout)
    return ws.close_code


async def append_audio(ws: Any, pcm: np.ndarray, chunk: int = 3200) -> None:
    for i in range(0, pcm.size, chunk):
        b64 = base64.b64encode(pcm[i : i + chunk].astype("<i2").tobytes()).decode()
        await send(ws, {"type": "input_audio_buffer.append", "audio": b64})


def pcm_of(events: list[dict[str, Any]], kind: str = "response.audio.delta") -> np.ndarray:
    data = b"".join(base64.b64decode(e["delta"]) for e in events if e.get("type") == kind)
    return np.frombuffer(data, dtype="<i2")


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]
