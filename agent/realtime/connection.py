"""The realtime WebSocket connection: handshake, keepalive, framing — and nothing else.

A thin I/O layer over the protocol core: it opens the socket with the DashScope headers, sends
client events, and yields parsed server events. Reconnect policy lives with the caller (one
task owns the connection and loops connect → run → wait → reconnect).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agent.realtime import protocol
from agent.secrets import redact

log = logging.getLogger("voice-agent.realtime")

# Keepalive: a silent peer (half-open TCP, a hung server) is noticed within about
# PING_INTERVAL + PING_TIMEOUT seconds instead of never.
PING_INTERVAL = 5.0
PING_TIMEOUT = 5.0
OPEN_TIMEOUT = 10.0


class AuthFailed(Exception):
    """The server refused the key at the upgrade (401/403): retrying soon will not help."""


class ConnectFailed(Exception):
    """Could not open the WebSocket (network down, DNS, refused, server error)."""


def auth_headers(api_key: str, workspace: str | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {api_key}", "user-agent": "voice-agent"}
    if workspace:
        headers["X-DashScope-WorkSpace"] = workspace
    return headers


async def open_socket(
    url: str, api_key: str, workspace: str | None, *, max_size: int = protocol.MAX_MESSAGE_BYTES
) -> ClientConnection:
    """Open a DashScope WebSocket; map handshake failures to AuthFailed / ConnectFailed."""
    try:
        return await connect(
            url,
            additional_headers=auth_headers(api_key, workspace),
            open_timeout=OPEN_TIMEOUT,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
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

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, api_key: str, workspace: str | None) -> RealtimeConnection:
        return cls(await open_socket(url, api_key, workspace))

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(protocol.encode(event))

    async def events(self) -> AsyncIterator[protocol.ServerEvent]:
        """Parsed server events until the socket closes; garbage raises ProtocolError."""
        try:
            async for message in self.ws:
                yield protocol.parse_event(message)
        except ConnectionClosed as e:
            raise ConnectFailed(f"connection closed ({e.rcvd.code if e.rcvd else 'no close frame'})") from None

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
