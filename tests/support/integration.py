"""The integration surface from outside: the event stream over the control socket and a scrape of
the Prometheus endpoint, as an integrator's kiosk or a Prometheus server sees them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.controlclient import iter_events

Event = dict[str, Any]




async def subscribed(sock: Path, until: Callable[[Event], bool]) -> asyncio.Task[list[Event]]:
    """A task collecting events, started once the subscription is in place (its replayed
    `state`/`volume` lines prove it)."""
    first: list[Event] = []
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()

    def read() -> list[Event]:
        for event in iter_events(sock):
            first.append(event)
            if len(first) == 1:
                loop.call_soon_threadsafe(ready.set)
            if until(event):
                break
        loop.call_soon_threadsafe(ready.set)
        return first

    task = asyncio.create_task(asyncio.to_thread(read))
    await asyncio.wait_for(ready.wait(), 10)
    return task


async def scrape(port: int, path: str = "/metrics") -> tuple[str, dict[str, str], str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    status, *lines = head.split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return status, headers, body


def value(body: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
    assert m, f"{name} not in the exposition"
    return float(m.group(1))
