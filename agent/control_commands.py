"""What each control-socket command does (SPEC §6): one table, one small function per command.

control.py is the server (framing, limits, permissions, event streams); this module is the
dispatch it calls for a parsed request, so a new command is one function and one table row
here. Optional commands (`volume`, `forget`, `listen`, `talk`) are looked up on the handler by name: a
handler without them answers with an error naming the command instead of failing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from agent.controlproto import error, reply
from agent.events import EventBus

log = logging.getLogger("voice-agent.control")


@dataclass(frozen=True)
class Request:
    """One parsed request: `text` for say/ask, `action` for talk, `level` for volume."""

    cmd: str
    text: str | None = None
    level: int | None = None

    @property
    def action(self) -> str | None:
        return self.text  # parse_command carries talk's action in the text slot


Command = Callable[[Any, Request], Awaitable[bytes]]


@runtime_checkable
class ControlHandler(Protocol):
    """What the daemon exposes to the control socket.

    `status` must be cheap and return JSON-serialisable data (SPEC §6 fields). `say`/`ask` should
    queue the work and return promptly; the client waits for them (up to the handler timeout).
    Optional: `async listen()` and `async talk(action)` (the listening front end, SPEC §10).
    """

    def status(self) -> dict[str, Any]: ...

    async def say(self, text: str) -> None: ...

    async def ask(self, text: str) -> None: ...

    async def interrupt(self) -> None: ...

    def mute(self) -> None: ...

    def unmute(self) -> None: ...


@runtime_checkable
class IntegrationHandler(ControlHandler, Protocol):
    """A `ControlHandler` that also serves SPEC §12: the event bus and the volume.

    `volume(None)` returns the level, `volume(n)` sets it (already validated 0–100) and returns
    it. A handler without these answers `volume`/`subscribe` with an error naming the command.
    """

    events: EventBus

    def volume(self, level: int | None) -> int: ...


def _optional(h: Any, name: str) -> Callable[..., Any] | None:
    return getattr(h, name, None)


async def _status(h: Any, req: Request) -> bytes:
    status = h.status()
    json.dumps(status, default=str)  # fail here, as an error reply, if it can't be sent
    return reply(True, status=status)


async def _volume(h: Any, req: Request) -> bytes:
    volume = _optional(h, "volume")
    if volume is None:
        return error("volume: this daemon has no volume control")
    now = volume(req.level)
    if req.level is not None:
        log.info("control: volume %d", now)
    return reply(True, volume=now)


async def _subscribe(h: Any, req: Request) -> bytes:  # only reached without an event bus
    return error("subscribe: this daemon has no event stream")


async def _say(h: Any, req: Request) -> bytes:
    assert req.text is not None
    await h.say(req.text)
    return _done(req)


async def _ask(h: Any, req: Request) -> bytes:
    assert req.text is not None
    await h.ask(req.text)
    return _done(req)


async def _interrupt(h: Any, req: Request) -> bytes:
    await h.interrupt()
    return _done(req)


async def _mute(h: Any, req: Request) -> bytes:
    h.mute()
    return _done(req)


async def _unmute(h: Any, req: Request) -> bytes:
    h.unmute()
    return _done(req)


async def _forget(h: Any, req: Request) -> bytes:
    forget = _optional(h, "forget")
    if forget is None:
        return error("forget: this daemon has no conversation memory")
    await forget()
    return _done(req)


async def _listen(h: Any, req: Request) -> bytes:
    listen = _optional(h, "listen")
    if listen is None:
        return error("listen: this daemon has no listening front end")
    await listen()
    return _done(req)


async def _talk(h: Any, req: Request) -> bytes:
    talk = _optional(h, "talk")
    if talk is None:
        return error("talk: this daemon has no listening front end")
    await talk(req.action)
    log.info("control: talk %s", req.action)
    return reply(True)


def _done(req: Request) -> bytes:
    log.info("control: %s", req.cmd)  # status polls are not logged: integrators poll often
    return reply(True)


COMMAND_TABLE: dict[str, Command] = {
    "status": _status,
    "volume": _volume,
    "subscribe": _subscribe,
    "forget": _forget,
    "say": _say,
    "ask": _ask,
    "interrupt": _interrupt,
    "mute": _mute,
    "unmute": _unmute,
    "listen": _listen,
    "talk": _talk,
}


async def run_command(handler: Any, req: Request) -> bytes:
    """The reply line for one parsed request (the table must cover every parsed command)."""
    return await COMMAND_TABLE[req.cmd](handler, req)
