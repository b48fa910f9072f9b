"""Prometheus metrics (SPEC §12, `metrics.listen`): how an operator sees a fleet in one place.

Off by default. When `metrics.listen` is set (`HOST:PORT`, checked by `parse_listen`), the daemon
serves the Prometheus text format at `/metrics`. `prometheus-client` is an optional extra
(`pip install 'voice-agent[metrics]'`), imported only here and only when metrics are on.

Where the numbers come from, chosen so that the daemon pays nothing per audio block:

* read from `Status` at scrape time (a custom collector): turns, barge-ins, reconnects,
  underruns, seconds of microphone audio sent (`listen.sent_s`), seconds of answer audio
  received (a callable the daemon passes), and the added playout latency of each response
  finished since the last scrape (the player's archive of recent responses);
* counted from the event bus (a synchronous listener, one dict lookup and an increment per
  event): wakes, tool calls, tool errors, errors, and the voice-to-voice latency of each `turn`;
* process metrics: prometheus-client's process, platform and GC collectors.

The HTTP endpoint runs on the daemon's event loop (asyncio server, one short request per
connection), not in a thread: a scrape reads `Status` on the thread that writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from agent.config import parse_listen  # noqa: F401 (re-exported: the address rules live with the config)
from agent.events import EventBus
from agent.status import Status

if TYPE_CHECKING:
    from agent.audio.stats import ResponseStats

log = logging.getLogger("voice-agent.metrics")

PREFIX = "voice_agent"
INSTALL_HINT = "pip install 'voice-agent[metrics]'"
# Voice-to-voice (end of speech → first answer sample) and playout (first chunk → first sample).
LATENCY_BUCKETS_S = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)
PLAYOUT_BUCKETS_S = (0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 1.0)
MAX_REQUEST = 8192  # bytes of an HTTP request head
REQUEST_TIMEOUT_S = 5.0


def require_prometheus() -> Any:
    """The `prometheus_client` module, or ImportError naming the extra to install."""
    try:
        import prometheus_client
    except ImportError:
        raise ImportError(
            f"metrics.listen is set but prometheus-client is not installed: {INSTALL_HINT}"
        ) from None
    return prometheus_client


class Metrics:
    """The daemon's metrics: a private registry fed by `Status` and the event bus.

    `received_s()` returns seconds of answer audio received since start; `responses()` returns
    the player's recent finished responses (`Player.finished_responses`). Both are optional.
    """

    def __init__(
        self,
        status: Status,
        bus: EventBus | None = None,
        *,
        received_s: Callable[[], float] | None = None,
        responses: Callable[[], list[ResponseStats]] | None = None,
    ) -> None:
        prom = require_prometheus()
        from prometheus_client import core

        self._prom = prom
        self.status = status
        self._received_s = received_s
        self._responses = responses
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.registry = prom.CollectorRegistry(auto_describe=True)
        prom.ProcessCollector(registry=self.registry)
        prom.PlatformCollector(registry=self.registry)
        prom.GCCollector(registry=self.registry)
        reg = self.registry
        self.wakes = prom.Counter(f"{PREFIX}_wakes", "Wake-word detections.", registry=reg)
        self.tool_calls = prom.Counter(f"{PREFIX}_tool_calls", "Tool calls.", registry=reg)
        self.tool_errors = prom.Counter(f"{PREFIX}_tool_errors", "Tool calls that failed.", registry=reg)
        self.errors = prom.Counter(f"{PREFIX}_errors", "Problems reported (error events).", registry=reg)
        self.voice_latency = prom.Histogram(
            f"{PREFIX}_voice_to_voice_latency_seconds",
            "End of user speech to the first answer sample at the output.",
            buckets=LATENCY_BUCKETS_S, registry=reg,
        )
        self.playout_latency = prom.Histogram(
            f"{PREFIX}_playout_added_latency_seconds",
            "First answer audio received to its first sample at the output (jitter buffer).",
            buckets=PLAYOUT_BUCKETS_S, registry=reg,
        )
        self._family = core.CounterMetricFamily
        reg.register(_StatusCollector(self))
        if bus is not None:
            bus.listen(self.on_event)
        self._server: asyncio.AbstractServer | None = None

    # --- feeding -----------------------------------------------------------------------------

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        """The bus listener: one increment per event, nothing for the events not counted."""
        if event == "wake":
            self.wakes.inc()
        elif event == "tool":
            self.tool_calls.inc()
            if not fields.get("ok"):
                self.tool_errors.inc()
        elif event == "error":
            self.errors.inc()
        elif event == "turn" and fields.get("latency_ms") is not None:
            self.voice_latency.observe(fields["latency_ms"] / 1000.0)

    def _observe_playout(self) -> None:
        """Fold responses finished since the last scrape into the playout histogram (the archive
        holds 64; a scrape interval never sees that many answers)."""
        if self._responses is None:
            return
        for st in self._responses():
            if st.response_id in self._seen:
                continue
            self._seen[st.response_id] = None
            if len(self._seen) > 256:
                self._seen.popitem(last=False)
            ms = st.added_latency_ms
            if ms is not None and not st.interrupted:
                self.playout_latency.observe(ms / 1000.0)

    def _status_counters(self) -> Iterator[Any]:
        s = self.status
        doc = s.as_dict()
        listen = doc.get("listen") or {}
        audio = doc.get("audio") or {}
        values = (
            ("turns", "Turns answered.", s.turns),
            ("barge_ins", "Answers interrupted by the user.", s.barge_ins),
            ("reconnects", "Service sessions re-established.", s.reconnects),
            ("underruns", "Playout gaps (the jitter buffer ran dry mid-answer).", audio.get("underruns", 0)),
            ("audio_sent_seconds", "Microphone audio sent upstream.", listen.get("sent_s", 0.0)),
            ("audio_received_seconds", "Answer audio received.",
             self._received_s() if self._received_s else 0.0),
        )
        for name, help_text, value in values:
            yield self._family(f"{PREFIX}_{name}", help_text, value=float(value or 0))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type (what `/metrics` serves)."""
        self._observe_playout()  # before the histograms are collected
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST

    # --- serving -----------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        """Serve `/metrics` on host:port (port 0: any free port, see `port`)."""
        self._server = await asyncio.start_server(self._on_client, host, port, limit=MAX_REQUEST)
        log.info("metrics at http://%s:%d/metrics", host, self.port)

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            method, _, rest = head.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, body, ctype = "405 Method Not Allowed", b"GET /metrics\n", "text/plain"
            elif path != b"/metrics":
                status, body, ctype = "404 Not Found", b"metrics are at /metrics\n", "text/plain"
            else:
                body, ctype = self.render()
                status = "200 OK"
            head_out = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            writer.write(head_out if method == b"HEAD" else head_out + body)
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                TimeoutError, asyncio.TimeoutError):
            pass
        except Exception:  # a scrape must never take the daemon down
            log.exception("metrics request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class _StatusCollector:
    """Reads `Status` at scrape time (prometheus-client calls `collect()`)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self._metrics._status_counters()

    def describe(self) -> list[Any]:
        return []  # no describe at registration: collect() would run (and read Status) too early
