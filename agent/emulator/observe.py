"""A public hook on what the emulator sends, and when (for benchmarks and tests).

Only the server knows the instant a frame leaves it: the end-to-end benchmark starts its clock
at "the first audio delta leaving the server". Instead of wrapping handlers or aiohttp from the
outside, a caller passes callbacks in `EmulatorOptions`:

* `on_connection(peer, event, t)`: a WebSocket connection or a streamed HTTP request (the
  `Peer`) starts (`event == "open"`, after the gateway's auth and fault checks, just before the
  API handler) or ends (`"close"`, when the handler returns);
* `on_sent(frame, t)`: a WebSocket text or binary frame (injected faulty frames included) or a
  chunk of a streamed (SSE) HTTP response was handed to the transport;
* `on_received(frame, t)`: a realtime WebSocket text frame arrived from the client (what the
  device sent upstream, e.g. to count the seconds of microphone audio it appended), or the JSON
  body of a text-generation request (e.g. the conversation history the client sent).

`t` is `time.monotonic()` taken right after the write (CLOCK_MONOTONIC is system-wide on Linux,
so other processes' stamps compare directly). The hooks run on the emulator's event loop and
must return quickly. With no hook set, nothing is recorded and nothing is allocated.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

# The peer being served by the current task (and the tasks it creates, which copy the context).
CURRENT_PEER: contextvars.ContextVar[Peer | None] = contextvars.ContextVar(
    "agent_emulator_peer", default=None
)


@dataclass(frozen=True)
class Peer:
    """One observed connection: which endpoint, which model, which client."""

    n: int  # 1, 2, … in order of opening, per emulator
    endpoint: str  # realtime | inference | llm | customization | uploads
    path: str
    model: str  # the `model` query parameter ("" for HTTP APIs, whose model is in the body)
    user_agent: str


@dataclass(frozen=True)
class SentFrame:
    """What left the server: a WS text frame (str), a WS binary frame or an SSE chunk (bytes)."""

    peer: Peer
    kind: Literal["text", "binary", "sse"]
    data: str | bytes


@dataclass(frozen=True)
class ReceivedFrame:
    """What reached the server from a client: a realtime WS text frame or an LLM request body."""

    peer: Peer
    data: str


SentHook = Callable[[SentFrame, float], None]
ReceivedHook = Callable[[ReceivedFrame, float], None]
ConnectionHook = Callable[[Peer, Literal["open", "close"], float], None]


class Hooks(Protocol):
    """Where the hooks are set (`EmulatorOptions`); read on every use, so they can be changed."""

    on_sent: SentHook | None
    on_connection: ConnectionHook | None
    on_received: ReceivedHook | None


class Observer:
    """Numbers the peers and calls the hooks; one per emulator (kept in its context)."""

    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks
        self._numbers = itertools.count(1)

    @property
    def on_sent(self) -> SentHook | None:
        return self._hooks.on_sent

    @property
    def on_connection(self) -> ConnectionHook | None:
        return self._hooks.on_connection

    @property
    def active(self) -> bool:
        hooks = self._hooks
        return hooks.on_sent is not None or hooks.on_connection is not None or \
            hooks.on_received is not None

    @contextlib.contextmanager
    def serving(self, endpoint: str, path: str, model: str, user_agent: str) -> Iterator[None]:
        """Around one API handler: report open/close and make the peer `CURRENT_PEER`."""
        peer = self._opened(endpoint, path, model, user_agent)
        if peer is None:
            yield
            return
        token = CURRENT_PEER.set(peer)
        try:
            yield
        finally:
            CURRENT_PEER.reset(token)
            on_connection = self.on_connection
            if on_connection is not None:
                on_connection(peer, "close", time.monotonic())

    def _opened(self, endpoint: str, path: str, model: str, user_agent: str) -> Peer | None:
        if not self.active:
            return None
        peer = Peer(next(self._numbers), endpoint, path, model, user_agent)
        on_connection = self.on_connection
        if on_connection is not None:
            on_connection(peer, "open", time.monotonic())
        return peer

    def reporter(self) -> Callable[[str | bytes], None] | None:
        """`sent` bound to the current peer, for a sender that knows nothing else (or None)."""
        peer = CURRENT_PEER.get()
        if peer is None or self.on_sent is None:
            return None
        return functools.partial(self.sent, peer)

    def received(self, data: str) -> None:
        """Report one text frame that arrived from the current peer's client."""
        on_received = self._hooks.on_received
        peer = CURRENT_PEER.get()
        if peer is not None and on_received is not None:
            on_received(ReceivedFrame(peer, data), time.monotonic())

    def sent(self, peer: Peer | None, data: str | bytes, sse: bool = False) -> None:
        """Report one frame or chunk just written for `peer` (None: the current peer)."""
        peer = peer or CURRENT_PEER.get()
        on_sent = self.on_sent
        if peer is None or on_sent is None:
            return
        kind: Literal["text", "binary", "sse"] = (
            "sse" if sse else "text" if isinstance(data, str) else "binary"
        )
        on_sent(SentFrame(peer, kind, data), time.monotonic())
