"""Test doubles for the control socket: a recording handler and a line-protocol client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any


class FakeHandler:
    """Records calls; `gate` lets a test hold say/ask open to build up concurrent clients."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.gate: asyncio.Event | None = None
        self.fail_with: Exception | None = None
        self.status_doc: dict[str, Any] = {"state": "idle", "mode": "omni", "turns": 3}
        self.say_delay = 0.0

    def status(self) -> dict[str, Any]:
        self.calls.append(("status", None))
        return self.status_doc

    async def say(self, text: str) -> None:
        self.calls.append(("say", text))
        if self.fail_with:
            raise self.fail_with
        if self.gate is not None:
            await self.gate.wait()
        if self.say_delay:
            await asyncio.sleep(self.say_delay)

    async def ask(self, text: str) -> None:
        self.calls.append(("ask", text))

    async def interrupt(self) -> None:
        self.calls.append(("interrupt", None))

    def mute(self) -> None:
        self.calls.append(("mute", None))

    def unmute(self) -> None:
        self.calls.append(("unmute", None))


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, path: Path) -> Client:
        r, w = await asyncio.open_unix_connection(str(path), limit=1 << 22)
        return cls(r, w)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self, timeout: float = 3.0) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), timeout)
        assert line.endswith(b"\n"), f"no complete reply line: {line!r}"
        return json.loads(line)

    async def request(self, doc: Any) -> dict[str, Any]:
        await self.send_raw(json.dumps(doc).encode() + b"\n")
        return await self.reply()

    async def closed_by_server(self, timeout: float = 3.0) -> bool:
        return await asyncio.wait_for(self.reader.read(), timeout) == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, BrokenPipeError):
            pass
