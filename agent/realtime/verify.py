"""What we asked of a realtime session against what the server says it runs with (audit R2, R3, R9).

An invalid `session.update` is answered by an `error` and the session keeps its previous
configuration; a field the server does not support may also be dropped silently, so that
`session.updated` shows something else than was asked. Either way the daemon must say so, naming
the field and what the session runs with instead, rather than serve on defaults unnoticed.

Pure: `verify_session(asked, got)` compares two session objects; `SessionCheck` follows one
session's updates and answers (events in, `Report`s out). The drivers (`agent.omni`,
`agent.asr`) log the reports and put the warnings into the status; `check --live` uses
`verify_session` for its realtime row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.realtime import protocol as p

# The legacy format names all mean 16-bit mono PCM (reference §5.2): one is not a mismatch.
_PCM = frozenset({"pcm", "pcm16", "pcm24"})
# Fields compared when we asked for them; `voice` is also judged when not echoed (R9).
_FIELDS = ("voice", "modalities", "input_audio_format", "output_audio_format", "sample_rate")


@dataclass(frozen=True)
class Mismatch:
    """One field the server runs with differently from what was asked."""

    field: str  # dotted path inside `session`, e.g. "voice", "turn_detection.type"
    asked: Any
    got: Any

    def describe(self) -> str:
        got = "(not echoed)" if self.got is None else _show(self.got)
        return f"{self.field}: asked {_show(self.asked)}, the server runs with {got}"


def _show(value: Any) -> str:
    return "null" if value is None else repr(value) if isinstance(value, str) else str(value)


def _same(field: str, asked: Any, got: Any) -> bool:
    if field.endswith("_format") and isinstance(asked, str) and isinstance(got, str):
        return asked == got or (asked in _PCM and got in _PCM)
    if field == "modalities" and isinstance(asked, list) and isinstance(got, list):
        return sorted(asked) == sorted(got)
    return bool(asked == got)


def verify_session(asked: Mapping[str, Any], got: Mapping[str, Any]) -> list[Mismatch]:
    """The fields of `asked` (a `session.update`'s `session`) that `got` (the `session` of
    `session.updated`) does not show. A field the server does not echo is not judged, except
    `voice` (a voice that is not echoed is not known to be in use)."""
    out: list[Mismatch] = []
    for name in _FIELDS:
        if name not in asked or asked[name] is None:
            continue
        if name not in got and name != "voice":
            continue
        if not _same(name, asked[name], got.get(name)):
            out.append(Mismatch(name, asked[name], got.get(name)))
    if "turn_detection" in asked:
        out += _turn_detection(asked["turn_detection"], got)
    return out


def _turn_detection(asked: Any, got: Mapping[str, Any]) -> list[Mismatch]:
    if "turn_detection" not in got:
        return []
    theirs = got["turn_detection"]
    if asked is None or theirs is None:
        if (asked is None) != (theirs is None):
            kind = None if theirs is None else theirs.get("type") if isinstance(theirs, dict) else theirs
            return [Mismatch("turn_detection", None if asked is None else asked.get("type"), kind)]
        return []
    if not isinstance(asked, Mapping) or not isinstance(theirs, Mapping):
        return []
    out = []
    if "type" in asked and asked["type"] != theirs.get("type"):
        out.append(Mismatch("turn_detection.type", asked["type"], theirs.get("type")))
    idle_asked, idle_got = asked.get("idle_timeout_ms"), theirs.get("idle_timeout_ms")
    if idle_asked != idle_got and (idle_asked is not None or idle_got is not None):
        # Not asked but set: the model will start talking by itself after a silence (R3).
        out.append(Mismatch("turn_detection.idle_timeout_ms", idle_asked, idle_got))
    return out


def lookup(session: Mapping[str, Any], param: str | None) -> tuple[str, Any]:
    """(field, value) for an error's `param` ("session.voice" → ("voice", session["voice"]))."""
    path = (param or "").removeprefix("session.").removeprefix("session")
    node: Any = session
    for part in [x for x in path.split(".") if x]:
        node = node.get(part) if isinstance(node, Mapping) else None
    return (path or "session"), (node if path else None)


def describe_turn_detection(session: Mapping[str, Any]) -> str:
    """`session.created`'s turn detection in one line, idle_timeout_ms included (R3)."""
    td = session.get("turn_detection")
    if not isinstance(td, Mapping):
        return "turn_detection: null (manual commit)" if "turn_detection" in session else \
            "turn_detection: not reported"
    shown = ", ".join(f"{k} {td[k]}" for k in ("type", "threshold", "prefix_padding_ms",
                                               "silence_duration_ms") if k in td)
    idle = td.get("idle_timeout_ms")
    tail = (f"idle_timeout_ms {idle} (the model speaks by itself after that much silence)"
            if idle is not None else "no idle_timeout_ms (the model never speaks unprompted)")
    return f"turn_detection: {shown}; {tail}"


@dataclass(frozen=True)
class Report:
    """Something to log; `surface`: also the status' `last_error` (a warning the user must see)."""

    level: int
    message: str
    surface: bool = False


@dataclass
class _Asked:
    session: dict[str, Any]
    mid_session: bool  # sent after the session was configured (e.g. a voice change)


class SessionCheck:
    """Follows one session's `session.update`s and what the server answers to each.

    `start(event)` for the first update of a new session, `sent(event)` for later ones (both give
    the event an `event_id` so that an `error` can be matched); `receive(event)` for every
    server event returns `(consumed, reports)`: `consumed` is true for an error that answered one
    of our updates (the caller need not handle it again).
    """

    def __init__(self, what: str) -> None:
        self.what = what  # "realtime session", "ASR session"
        self.effective: dict[str, Any] = {}  # the last configuration the server reported
        self._pending: dict[str, _Asked] = {}
        self._configured = False

    def start(self, event: dict[str, Any]) -> dict[str, Any]:
        self.effective = {}
        self._pending.clear()
        self._configured = False
        return self.sent(event)

    def sent(self, event: dict[str, Any]) -> dict[str, Any]:
        event = {"event_id": event.get("event_id") or p.new_event_id(), **event}
        session = event.get("session")
        self._pending[event["event_id"]] = _Asked(dict(session) if isinstance(session, dict) else {},
                                                  self._configured)
        return event

    def receive(self, event: p.ServerEvent) -> tuple[bool, list[Report]]:
        if isinstance(event, p.SessionCreated):
            self.effective = dict(event.session)
            model = self.effective.get("model") or "?"
            voice = self.effective.get("voice")
            text = f"{self.what} created ({model}{f', voice {voice}' if voice else ''}); " \
                   f"{describe_turn_detection(self.effective)}"
            return False, [Report(logging.INFO, text)]
        if isinstance(event, p.SessionUpdated):
            self.effective = dict(event.session)
            if not self._pending:
                return False, []
            asked = self._pending.pop(next(iter(self._pending)))
            self._configured = True
            return False, [self._mismatch(m, asked) for m in verify_session(asked.session, self.effective)]
        if isinstance(event, p.ErrorEvent) and not event.fatal:
            asked = self._claim(event)
            if asked is None:
                return False, []
            self._configured = True
            field, value = lookup(self.effective, event.param)
            instead = "its previous configuration" if field == "session" or value is None \
                else f"{field} = {_show(value)}"
            text = (f"{self.what}: session.update refused, field {field}: "
                    f"{event.message or event.code}; the session runs with {instead} instead")
            return True, [Report(logging.WARNING, text, surface=True)]
        return False, []

    def _claim(self, event: p.ErrorEvent) -> _Asked | None:
        """The update this error answers: by `error.event_id`; without one, a `session.*` param,
        or no param at all, while an update waits (never silent: R2)."""
        if event.event_id is not None:
            return self._pending.pop(event.event_id, None)
        if self._pending and (not event.param or event.param.startswith("session")):
            return self._pending.pop(next(iter(self._pending)))
        return None

    def _mismatch(self, m: Mismatch, asked: _Asked) -> Report:
        text = f"{self.what}: session.updated differs from what was asked, {m.describe()}"
        if m.field == "voice" and asked.mid_session:
            text += f"; voice {_show(m.asked)} will be used from the next session (at the next rotation)"
        return Report(logging.WARNING, text, surface=True)
