"""Fault injection for the emulator: a small spec grammar, a run-wide plan, per-connection views.

Integrators need to see how their client copes with a flaky cloud (latency, stalls, drops, error
events, throttling, garbage frames, sockets that go silent) without waiting for the real service to
misbehave. A spec is parsed once into rules; every WebSocket connection or HTTP request asks the
plan for a `ConnectionFaults` view that says what to do to *that* connection.

Grammar (full description and examples in docs/emulator.md)::

    spec   := "" | "none" | item ("," item)*
    item   := name ["=" value] ["@" scope] ["*" count]
    scope  := realtime | inference | customization | uploads | llm | ws | http
    count  := positive integer | "once"            (apply to the first N matching connections)

    latency=50ms  jitter=20ms  stall=3s  drop_after=25  error_event[=N]  task_failed
    http=429  malformed[=N]  binary_frame[=N]  oversized[=BYTES]  half_open[=N]
    refuse_input_text  misreport=FIELD   (realtime; FIELD: voice | input_audio_format |
                                          output_audio_format | turn_detection; repeatable)
    response_failed[=N]                  (realtime: the Nth answer of a connection, default 1,
                                          ends with response.done status "failed")
    call_failed[=N]                      (realtime: the Nth calling response, default 1, fails
                                          while its call's arguments stream)

Durations take a unit (`ms` or `s`). Without a scope a rule applies to every connection kind;
without a count it applies to every connection for as long as the plan is in force.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FAULTS_HEADER = "X-Emulator-Faults"
FAULTS_QUERY = "faults"

WS_KINDS = ("realtime", "inference")
HTTP_KINDS = ("customization", "uploads", "llm")
KINDS = WS_KINDS + HTTP_KINDS
SCOPE_ALIASES: dict[str, tuple[str, ...]] = {
    **{k: (k,) for k in KINDS},
    "ws": WS_KINDS,
    "http": HTTP_KINDS,
}

DEFAULT_OVERSIZED_BYTES = 2 * 1024 * 1024  # above the 1 MiB most WS clients accept by default

# name -> value kind: "dur" (required duration), "int" (required int >= 1), "status"
# (required HTTP status), "opt_int" (optional int >= 0), "flag" (no value)
_FAULTS: dict[str, str] = {
    "latency": "dur",
    "jitter": "dur",
    "stall": "dur",
    "drop_after": "int",
    "error_event": "opt_int",
    "task_failed": "flag",
    "http": "status",
    "malformed": "opt_int",
    "binary_frame": "opt_int",
    "oversized": "opt_int",
    "half_open": "opt_int",
    "refuse_input_text": "flag",
    "misreport": "field",
    "response_failed": "opt_int",
    "call_failed": "opt_int",
}
# `response_failed`: the service's shape of a failed response is not documented (only the status
# value, dashscope-protocol.md §5.4); `status_details` follows OpenAI Realtime (beta), whose event
# names DashScope uses, as the emulator's `cancelled` details already do.
RESPONSE_FAILED_DETAILS: dict[str, Any] = {
    "type": "failed",
    "error": {"type": "server_error", "code": "internal_error",
              "message": "The response failed (injected by the emulator)."},
}
# `misreport=FIELD`: `session.updated` shows another value for FIELD than the session runs with.
MISREPORT_FIELDS = ("voice", "input_audio_format", "output_audio_format", "turn_detection")

_ITEM_RE = re.compile(
    r"^(?P<name>[a-z_]+)"
    r"(?:=(?P<value>[^@*]+))?"
    r"(?:@(?P<scope>[a-z]+))?"
    r"(?:\*(?P<count>[0-9]+|once))?$"
)
_DUR_RE = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s)$")


class FaultSpecError(ValueError):
    """A fault spec that cannot be parsed; the message names the offending item and the fix."""


@dataclass
class FaultRule:
    name: str
    value: float | int | str | None
    scopes: tuple[str, ...]
    count: int | None  # remaining connections it applies to; None = unlimited
    text: str  # the item as written, for describe()

    def matches(self, kind: str) -> bool:
        return kind in self.scopes


def _parse_duration(text: str, item: str) -> float:
    m = _DUR_RE.match(text)
    if not m:
        raise FaultSpecError(
            f"fault {item!r}: duration {text!r} needs a unit, e.g. '50ms' or '1.5s'"
        )
    num = float(m.group("num"))
    return num / 1000.0 if m.group("unit") == "ms" else num


def _parse_item(item: str) -> FaultRule:
    m = _ITEM_RE.match(item)
    if not m:
        raise FaultSpecError(
            f"fault {item!r} is not of the form name[=value][@scope][*count], "
            "e.g. 'drop_after=25@realtime*1'"
        )
    name, value_text, scope, count_text = m.group("name", "value", "scope", "count")
    kind = _FAULTS.get(name)
    if kind is None:
        raise FaultSpecError(f"unknown fault {name!r}; known faults: {', '.join(_FAULTS)}")
    value: float | int | str | None = None
    if kind == "flag":
        if value_text is not None:
            raise FaultSpecError(f"fault {name!r} takes no value (got {value_text!r})")
    elif value_text is None:
        if kind != "opt_int":
            example = {"dur": "50ms", "int": "25", "status": "429", "field": "voice"}[kind]
            raise FaultSpecError(f"fault {name!r} needs a value, e.g. '{name}={example}'")
    elif kind == "dur":
        value = _parse_duration(value_text, item)
    elif kind == "field":
        if value_text not in MISREPORT_FIELDS:
            raise FaultSpecError(f"fault {item!r}: field must be one of {', '.join(MISREPORT_FIELDS)}")
        value = value_text
    else:
        if not value_text.isdigit():
            raise FaultSpecError(f"fault {item!r}: value {value_text!r} must be an integer")
        value = int(value_text)
        if (kind == "int" or name in ("response_failed", "call_failed")) and value < 1:
            raise FaultSpecError(f"fault {item!r}: value must be at least 1")
        if kind == "status" and not 400 <= value <= 599:
            raise FaultSpecError(f"fault {item!r}: HTTP status must be in 400..599")
    if scope is None:
        scopes = KINDS
    elif scope in SCOPE_ALIASES:
        scopes = SCOPE_ALIASES[scope]
    else:
        raise FaultSpecError(
            f"fault {item!r}: unknown scope {scope!r}; scopes: {', '.join(SCOPE_ALIASES)}"
        )
    count: int | None = None
    if count_text is not None:
        count = 1 if count_text == "once" else int(count_text)
        if count < 1:
            raise FaultSpecError(f"fault {item!r}: count must be at least 1")
    return FaultRule(name=name, value=value, scopes=scopes, count=count, text=item)


def parse_spec(spec: str | None) -> list[FaultRule]:
    """Parse a spec string into rules; raises FaultSpecError with a one-line explanation."""
    if spec is None:
        return []
    text = spec.strip()
    if text in ("", "none"):
        return []
    rules = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise FaultSpecError(f"empty item in fault spec {spec!r} (stray comma?)")
        rules.append(_parse_item(item))
    return rules


@dataclass
class ConnectionFaults:
    """What to do to one connection (WebSocket) or one HTTP request.

    Counters are the caller's: handlers count the server messages they have sent and ask
    `should_drop(n)` / `is_silent(n)` before sending message n+1. Handler contract:

    - `start_stall()` once before the first message, `delay()` before every message;
    - `should_drop(n)`: close the transport abruptly (no close frame / no final SSE event);
    - `is_silent(n)`: send nothing more but keep the socket open until the client leaves;
    - `error_event` (after `error_after` messages, or at the handler's natural point): realtime
      sends an `error` event, inference a `task-failed`, SSE an `event:error`;
    - `task_failed`: inference answers run-task with task-failed (realtime: a fatal `error`);
    - `malformed` / `binary_frame` (after `*_after` messages, default handler's choice): one
      non-JSON text frame / one unexpected binary frame; `oversized`: one text frame of
      `oversized_bytes`;
    - `http_status`: HTTP routes answer with that status; WS upgrades are refused with it;
    - `refuse_input_text`: realtime refuses user `message` items with `input_text` content (the
      reading of the client-events page that lists no such item type, audit R1);
    - `misreport`: realtime `session.updated` shows other values for these fields than asked;
    - `response_failed`: realtime ends its Nth answer (1-based; responses that only call a tool
      are not counted) after its first audio chunk with `response.done` status "failed" and
      `RESPONSE_FAILED_DETAILS`; the session stays open and later answers are normal;
    - `call_failed`: realtime fails its Nth calling response (1-based; only responses that call a
      tool are counted) after the first half of the call's arguments: `output_item.done` with
      the item `incomplete` and the partial arguments, no `function_call_arguments.done`, then
      `response.done` status "failed" with `RESPONSE_FAILED_DETAILS`.
    """

    kind: str = ""
    latency_s: float = 0.0
    jitter_s: float = 0.0
    stall_s: float = 0.0
    drop_after: int | None = None  # close abruptly once this many messages were sent
    error_event: bool = False
    error_after: int | None = None  # messages to send before the error (None: handler's choice)
    task_failed: bool = False
    http_status: int | None = None
    malformed: bool = False
    malformed_after: int | None = None
    binary_frame: bool = False
    binary_frame_after: int | None = None
    oversized: bool = False
    oversized_bytes: int = DEFAULT_OVERSIZED_BYTES
    half_open: bool = False
    half_open_after: int = 0  # messages sent before going silent
    refuse_input_text: bool = False
    misreport: tuple[str, ...] = ()
    response_failed: int | None = None  # which answer of the connection fails (1-based)
    call_failed: int | None = None  # which calling response of the connection fails (1-based)
    rules: list[str] = field(default_factory=list)
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    @property
    def active(self) -> bool:
        return bool(self.rules)

    async def delay(self) -> None:
        """Latency (+ uniform jitter) to wait before each server message."""
        d = self.latency_s + (self._rng.uniform(0.0, self.jitter_s) if self.jitter_s else 0.0)
        if d > 0:
            await asyncio.sleep(d)

    async def start_stall(self) -> None:
        """Slow-start stall before the first server message."""
        if self.stall_s > 0:
            await asyncio.sleep(self.stall_s)

    def should_drop(self, sent_count: int) -> bool:
        return self.drop_after is not None and sent_count >= self.drop_after

    def is_silent(self, sent_count: int) -> bool:
        """True once a half-open connection must stop sending (the socket stays open)."""
        return self.half_open and sent_count >= self.half_open_after

    def describe(self) -> str:
        return ",".join(self.rules)

    def _apply(self, rule: FaultRule) -> None:
        v = rule.value
        n = rule.name
        if n == "latency":
            self.latency_s = float(v or 0)
        elif n == "jitter":
            self.jitter_s = float(v or 0)
        elif n == "stall":
            self.stall_s = float(v or 0)
        elif n == "drop_after":
            self.drop_after = int(v or 0)
        elif n == "error_event":
            self.error_event, self.error_after = True, (None if v is None else int(v))
        elif n == "task_failed":
            self.task_failed = True
        elif n == "http":
            self.http_status = int(v or 0)
        elif n == "malformed":
            self.malformed, self.malformed_after = True, (None if v is None else int(v))
        elif n == "binary_frame":
            self.binary_frame, self.binary_frame_after = True, (None if v is None else int(v))
        elif n == "oversized":
            self.oversized = True
            if v:
                self.oversized_bytes = int(v)
        elif n == "half_open":
            self.half_open, self.half_open_after = True, int(v or 0)
        elif n == "refuse_input_text":
            self.refuse_input_text = True
        elif n == "misreport":
            self.misreport = (*self.misreport, str(v))
        elif n == "response_failed":
            self.response_failed = 1 if v is None else int(v)
        elif n == "call_failed":
            self.call_failed = 1 if v is None else int(v)
        self.rules.append(rule.text)


class FaultPlan:
    """The run-wide fault rules; replaceable at runtime (thread-safe) via `set()` / `clear()`."""

    def __init__(self, spec: str | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = parse_spec(spec)
        self._spec = "" if spec is None else spec.strip()

    @property
    def spec(self) -> str:
        return self._spec

    def set(self, spec: str | None) -> None:
        """Replace the plan (validating first, so a bad spec leaves the old plan in force)."""
        rules = parse_spec(spec)
        with self._lock:
            self._rules = rules
            self._spec = "" if spec is None else spec.strip()

    def clear(self) -> None:
        self.set(None)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly state for `GET /_emulator/faults`."""
        with self._lock:
            return {
                "spec": self._spec,
                "rules": [
                    {
                        "fault": r.name,
                        "value": r.value,
                        "scopes": list(r.scopes),
                        "remaining": r.count,
                        "text": r.text,
                    }
                    for r in self._rules
                ],
            }

    def for_connection(self, kind: str, request: Any = None) -> ConnectionFaults:
        """Faults for one new connection/request of `kind`.

        A `X-Emulator-Faults` header or `faults=` query parameter on the request replaces the
        run-wide plan for this connection only (and consumes no counts). Otherwise every matching
        rule applies, and counted rules are used up. Raises FaultSpecError for a bad override.
        Repeated calls for the same aiohttp request return the same (cached) view.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown connection kind {kind!r}")
        # The server's route wrapper already asked (to refuse the upgrade / inject a status);
        # the handler asking again must get the same view, not consume counted rules twice.
        cache_key = _CACHE_KEYS[kind]
        cached = _cache_get(request, cache_key)
        if cached is not None:
            return cached
        override = _override_spec(request)
        cf = ConnectionFaults(kind=kind)
        if override is not None:
            for rule in parse_spec(override):
                if rule.matches(kind):
                    cf._apply(rule)
        else:
            with self._lock:
                for rule in self._rules:
                    if not rule.matches(kind) or rule.count == 0:
                        continue
                    if rule.count is not None:
                        rule.count -= 1
                    cf._apply(rule)
        _cache_set(request, cache_key, cf)
        return cf

    def http_status_for(self, route_name: str, request: Any = None) -> int | None:
        """The injected HTTP status for one request to a route group, if any."""
        return self.for_connection(route_name, request).http_status


def _request_key(name: str) -> Any:
    """A typed aiohttp request key when available (aiohttp >= 3.12 warns on plain strings)."""
    try:
        from aiohttp.web import RequestKey
    except ImportError:  # older aiohttp
        return name
    return RequestKey(name, ConnectionFaults)


_CACHE_KEYS = {kind: _request_key(f"emulator_faults_{kind}") for kind in KINDS}


def _cache_get(request: Any, key: Any) -> ConnectionFaults | None:
    getter = getattr(request, "get", None)
    if request is None or getter is None or not hasattr(request, "__setitem__"):
        return None
    value = getter(key)
    return value if isinstance(value, ConnectionFaults) else None


def _cache_set(request: Any, key: Any, cf: ConnectionFaults) -> None:
    if request is not None and hasattr(request, "__setitem__") and hasattr(request, "get"):
        request[key] = cf


def _override_spec(request: Any) -> str | None:
    if request is None:
        return None
    headers: Mapping[str, str] | None = getattr(request, "headers", None)
    query: Mapping[str, str] | None = getattr(request, "query", None)
    parts = []
    if headers is not None and headers.get(FAULTS_HEADER) is not None:
        parts.append(headers[FAULTS_HEADER])
    if query is not None and query.get(FAULTS_QUERY) is not None:
        parts.append(query[FAULTS_QUERY])
    if not parts:
        return None
    return ",".join(p for p in (s.strip() for s in parts) if p and p != "none")


FAULT_NAMES = tuple(_FAULTS)
