"""The emulator as a benchmark process, with a probe on what it sends and when.

    python bench/probe.py --out DIR [--first-delta-s 0.2 --chunk-ms 100 --speed 4 --faults SPEC]

Prints the base URL on the first stdout line (like `voice-agent emulator`) and serves until
SIGTERM. Why a probe: the end-to-end metric starts at "the first audio delta leaving the
server", and only the server knows that instant. The emulator does not record it, so instead of
editing emulator files this module observes it from outside, opt-in and only in this process:

* The three handlers whose output matters — `realtime_ws.handle_realtime` and
  `cosyvoice_ws.handle_inference` (looked up by name on every upgrade, see `http_api.ws_route`)
  and `textgen.handle_generation` (looked up when the app is built, after `install()`) — are
  wrapped to put the connection's identity (endpoint, model, user agent) into a context
  variable. Every task the handler creates inherits it.
* aiohttp's public `WebSocketResponse.send_str` / `send_bytes` and `StreamResponse.write` are
  wrapped: after a frame or SSE chunk has been handed to the transport (written to the socket),
  the probe stamps it with `time.monotonic()` — CLOCK_MONOTONIC is system-wide on Linux, so
  the contenders' own stamps compare directly. Frames of unwrapped handlers are not looked at.

What is recorded: realtime `speech_started`/`speech_stopped`/`response.*` events and every
response's audio (first delta stamped); CosyVoice `task-started`/`task-finished` and every
task's audio (first binary frame stamped); the LLM stream's first non-empty content chunk.
Bounded: at most `--max-audio-s` of PCM per response or task and `--max-responses` of them.
Records go to DIR/events.jsonl and DIR/audio/<response or task id>.pcm (the audio exactly as
sent), so the orchestrator can find each answer in a contender's output WAV.
"""

from __future__ import annotations

import argparse
import base64
import contextvars
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from agent.emulator import cosyvoice_ws, realtime_ws, textgen
from agent.emulator import server as emulator_server
from agent.emulator.context import EmulatorOptions

Handler = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]


@dataclass
class _Conn:
    n: int
    endpoint: str  # realtime | inference | llm
    model: str
    user_agent: str
    streams: dict[str, int] = field(default_factory=dict)  # response/task id -> bytes recorded
    task: str = ""  # CosyVoice: the task the next binary frame belongs to
    first_token: bool = False  # LLM: the first content chunk was stamped


_CONN: contextvars.ContextVar[_Conn | None] = contextvars.ContextVar("bench_probe_conn", default=None)

# Server events the analysis needs (everything else is not recorded).
_KINDS = {
    "input_audio_buffer.speech_started": "speech_started",
    "input_audio_buffer.speech_stopped": "speech_stopped",
    "response.created": "response_created",
    "response.done": "response_done",
    "session.finished": "session_finished",
    "task-started": "task_started",
    "task-finished": "task_finished",
    "task-failed": "task_failed",
}


class Probe:
    """Stamps what the emulator writes; see the module docstring."""

    def __init__(self, out_dir: Path, max_audio_s: float = 120.0, max_responses: int = 2000) -> None:
        self.out_dir = out_dir
        (out_dir / "audio").mkdir(parents=True, exist_ok=True)
        self.max_audio_bytes = int(max_audio_s * 24000 * 2)
        self.max_responses = max_responses
        self._events: IO[str] = open(out_dir / "events.jsonl", "a", buffering=1)  # noqa: SIM115
        self._conns = 0
        self._responses = 0

    def install(self) -> None:
        """Wrap the hook points (this process only; nothing is written to the package)."""
        realtime_ws.handle_realtime = self._tagged("realtime", realtime_ws.handle_realtime)  # type: ignore[assignment]
        cosyvoice_ws.handle_inference = self._tagged("inference", cosyvoice_ws.handle_inference)  # type: ignore[assignment]
        textgen.handle_generation = self._tagged("llm", textgen.handle_generation)  # type: ignore[assignment]
        send_str, send_bytes = web.WebSocketResponse.send_str, web.WebSocketResponse.send_bytes
        write = web.StreamResponse.write
        probe = self

        async def send_str_(ws: web.WebSocketResponse, data: str, *args: Any, **kwargs: Any) -> None:
            await send_str(ws, data, *args, **kwargs)
            conn = _CONN.get()
            if conn is not None:
                probe._text(conn, data, time.monotonic())

        async def send_bytes_(ws: web.WebSocketResponse, data: bytes, *args: Any, **kwargs: Any) -> None:
            await send_bytes(ws, data, *args, **kwargs)
            conn = _CONN.get()
            if conn is not None and conn.task:
                probe._audio(conn, conn.task, bytes(data), time.monotonic(), "tts_first_audio")

        async def write_(resp: web.StreamResponse, data: bytes) -> None:
            await write(resp, data)
            conn = _CONN.get()
            if conn is not None and conn.endpoint == "llm" and not conn.first_token:
                probe._sse(conn, data, time.monotonic())

        web.WebSocketResponse.send_str = send_str_  # type: ignore[method-assign]
        web.WebSocketResponse.send_bytes = send_bytes_  # type: ignore[method-assign]
        web.StreamResponse.write = write_  # type: ignore[method-assign]

    def _tagged(self, endpoint: str, handler: Handler) -> Handler:
        probe = self

        async def wrapped(request: web.Request, ctx: Any) -> web.StreamResponse:
            probe._conns += 1
            conn = _Conn(probe._conns, endpoint, request.query.get("model", ""),
                         request.headers.get("User-Agent", ""))
            probe._write({"conn": conn.n, "kind": "open", "t": time.monotonic(), "endpoint": endpoint,
                          "model": conn.model, "ua": conn.user_agent})
            token = _CONN.set(conn)
            try:
                return await handler(request, ctx)
            finally:
                _CONN.reset(token)
                probe._write({"conn": conn.n, "kind": "close", "t": time.monotonic()})

        return wrapped

    def _text(self, conn: _Conn, data: str, t: float) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            return  # an injected malformed frame
        if not isinstance(event, dict):
            return
        header = event.get("header")
        if isinstance(header, dict):  # CosyVoice: {"header": {"task_id", "event"}, "payload"}
            conn.task = str(header.get("task_id", ""))
            kind = header.get("event")
            if kind in _KINDS:
                self._write({"conn": conn.n, "kind": _KINDS[kind], "t": t, "task": conn.task})
            return
        kind = event.get("type")
        if kind == "response.audio.delta":
            pcm = base64.b64decode(event.get("delta", ""))
            self._audio(conn, str(event.get("response_id", "")), pcm, t, "first_delta")
        elif kind in _KINDS:
            rec: dict[str, Any] = {"conn": conn.n, "kind": _KINDS[kind], "t": t}
            resp = event.get("response") if isinstance(event.get("response"), dict) else None
            if resp is not None:
                rec["rid"] = resp.get("id")
                rec["status"] = resp.get("status")
            self._write(rec)

    def _sse(self, conn: _Conn, data: bytes, t: float) -> None:
        """Stamp the first SSE chunk that carries answer text (either result format)."""
        for line in data.decode("utf-8", "replace").splitlines():
            if not line.startswith("data:"):
                continue
            try:
                doc = json.loads(line[5:])
                output = doc.get("output") or {}
                choices = output.get("choices") or [{}]
                text = (choices[0].get("message") or {}).get("content") or output.get("text") or ""
            except (ValueError, AttributeError, IndexError):
                continue
            if text:
                conn.first_token = True
                self._write({"conn": conn.n, "kind": "llm_first_token", "t": t})
                return

    def _audio(self, conn: _Conn, sid: str, pcm: bytes, t: float, first_kind: str) -> None:
        if sid not in conn.streams:
            if self._responses >= self.max_responses:
                return
            self._responses += 1
            conn.streams[sid] = 0
            key = "task" if first_kind == "tts_first_audio" else "rid"
            self._write({"conn": conn.n, "kind": first_kind, "t": t, key: sid})
        have = conn.streams[sid]
        if have >= self.max_audio_bytes:
            return
        pcm = pcm[: self.max_audio_bytes - have]
        conn.streams[sid] = have + len(pcm)
        with open(self.out_dir / "audio" / f"{sid}.pcm", "ab") as f:
            f.write(pcm)

    def _write(self, rec: dict[str, Any]) -> None:
        self._events.write(json.dumps(rec) + "\n")

    def close(self) -> None:
        self._events.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="directory for events.jsonl and audio/")
    ap.add_argument("--api-key", default="sk-emulator")
    ap.add_argument("--first-delta-s", type=float, default=0.2)
    ap.add_argument("--chunk-ms", type=int, default=100)
    ap.add_argument("--speed", type=float, default=4.0)
    ap.add_argument("--llm-first-token-s", type=float, default=0.15)
    ap.add_argument("--llm-token-s", type=float, default=0.02)
    ap.add_argument("--cosyvoice-first-audio-s", type=float, default=0.15)
    ap.add_argument("--faults", default=None)
    ap.add_argument("--max-audio-s", type=float, default=120.0)
    args = ap.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    probe = Probe(args.out, max_audio_s=args.max_audio_s)
    probe.install()
    options = EmulatorOptions(
        api_key=args.api_key,
        realtime_first_delta_s=args.first_delta_s,
        realtime_chunk_ms=args.chunk_ms,
        realtime_speed=args.speed,
        llm_first_token_s=args.llm_first_token_s,
        llm_token_s=args.llm_token_s,
        cosyvoice_first_audio_s=args.cosyvoice_first_audio_s,
    )
    try:
        return emulator_server.run(port=0, api_key=args.api_key, faults=args.faults, options=options)
    finally:
        probe.close()


if __name__ == "__main__":
    sys.exit(main())
