"""The realtime WebSocket connection: handshake, keepalive, framing — and nothing else.

A thin I/O layer over the protocol core: it opens the socket with the DashScope headers, sends
client events, and yields parsed server events. Reconnect policy lives with the caller (one
task owns the connection and loops connect → run → wait → reconnect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent.account import DashScopeAccount
from agent.realtime import protocol
from agent.secrets import redact

log = logging.getLogger("voice-agent.realtime")



@dataclass(frozen=True)
class Timings:
    """How long the realtime socket waits for things; tests inject short ones.

    Keepalive: a silent peer (half-open TCP, a hung server) is noticed within about
    `ping_interval + ping_timeout` seconds instead of never. 20 s / 20 s is the `websockets`
    default that the official raw Omni client runs with (the 1.x SDK sends no pings at all);
    a stricter timeout only adds reconnects on a slow uplink (audit R10).
    `session_start`: a server that accepts the upgrade but never starts the session (a stalled
    backend) still answers pings, so keepalive cannot see it: the first event must arrive
    within this long.
    """

    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    open: float = 10.0
    session_start: float = 10.0


# The timings every connection uses unless one is passed; tests replace this one object.
TIMINGS = Timings()


class AuthFailed(Exception):
    """The server refused the key at the upgrade (401/403): retrying soon will not help."""


class ConnectFailed(Exception):
    """Could not open the WebSocket (network down, DNS, refused, server error)."""


def auth_headers(api_key: str, workspace: str | None) -> dict[str, str]:
    return DashScopeAccount(api_key, workspace).ws_headers({"user-agent": "voice-agent"})


async def open_socket(
    url: str, api_key: str, workspace: str | None, *, max_size: int = protocol.MAX_MESSAGE_BYTES,
    timings: Timings | None = None,
) -> ClientConnection:
    """Open a DashScope WebSocket; map handshake failures to AuthFailed / ConnectFailed."""
    t = timings or TIMINGS
    try:
        return await connect(
            url,
            additional_headers=auth_headers(api_key, workspace),
            open_timeout=t.open,
            ping_interval=t.ping_interval,
            ping_timeout=t.ping_timeout,
            close_timeout=2.0,
            max_size=max_size,
            compression=None,  # PCM does not compress; deflate only costs CPU on a Pi
            user_agent_header=None,
        )
    except InvalidStatus as e:
        status = e.response.status_code
        if status in (401, 403):
            raise AuthFailed(f"the server refused the API key (HTTP {status})") from None
        raise ConnectFailed(f"WebSocket upgrade refused with HTTP {status}") from None
    except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake) as e:
        raise ConnectFailed(redact(f"{e.__class__.__name__}: {e}") or "connection failed") from None


class RealtimeConnection:
    """One realtime session over one socket."""

    def __init__(self, ws: ClientConnection, timings: Timings | None = None) -> None:
        self.ws = ws
        self.timings = timings or TIMINGS
        self._started = False  # the server has sent its first event (session.created)

    @classmethod
    async def open(cls, url: str, api_key: str, workspace: str | None,
                   timings: Timings | None = None) -> RealtimeConnection:
        t = timings or TIMINGS
        return cls(await open_socket(url, api_key, workspace, timings=t), t)

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code once the socket is closed (None before)."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason

    async def send(self, event: dict[str, Any]) -> None:
        """Send one client event; a closed socket is a lost session (ConnectFailed), which every
        session loop handles, never a websockets exception that would end the daemon."""
        try:
            await self.ws.send(protocol.encode(event))
        except ConnectionClosed as e:
            raise ConnectFailed(f"connection closed: {redact(str(e))}") from None

    async def events(self) -> AsyncIterator[protocol.ServerEvent]:
        """Parsed server events until the socket closes; garbage raises ProtocolError.

        A clean close by the server simply ends the iteration (the caller decides what that
        means); an abnormal one raises ConnectFailed with websockets' description of it
        ("sent 1009 (message too big) …", "… keepalive ping timeout …"), which is what the status
        shows, so it must say why.
        """
        try:
            if not self._started:
                limit = self.timings.session_start
                try:
                    first = await asyncio.wait_for(self.ws.recv(), limit)
                except asyncio.TimeoutError:
                    raise ConnectFailed(f"no session.created within {limit:g} s of connecting") from None
                self._started = True
                yield protocol.parse_event(first)
            async for message in self.ws:
                yield protocol.parse_event(message)
        except ConnectionClosed as e:
            raise ConnectFailed(f"connection closed: {redact(str(e))}") from None

    async def finish(self, timeout: float = 2.0) -> None:
        """End the session politely: `session.finish`, wait briefly for `session.finished`, close."""
        try:
            await asyncio.wait_for(self._finish(), timeout)
        except (asyncio.TimeoutError, ConnectionClosed, ConnectFailed, protocol.ProtocolError, OSError):
            pass
        await self.close()

    async def _finish(self) -> None:
        await self.send(protocol.session_finish())
        async for event in self.events():
            if isinstance(event, protocol.SessionFinished):
                return

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 2.0)
        except (asyncio.TimeoutError, OSError):
            self.ws.transport.abort()
