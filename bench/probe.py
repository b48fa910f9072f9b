"""The emulator as a benchmark process, with a probe on what it sends and when.

    python bench/probe.py --out DIR [--first-delta-s 0.2 --chunk-ms 100 --speed 4 --faults SPEC]

Prints the base URL on the first stdout line (like `voice-agent emulator`) and serves until
SIGTERM. Why a probe: the end-to-end metric starts at "the first audio delta leaving the
server", and only the server knows that instant. The emulator reports it through its public
observation hooks (`EmulatorOptions.on_connection` / `on_sent`, see `agent/emulator/observe.py`):
every WebSocket frame and SSE chunk, stamped with `time.monotonic()` right after it was handed
to the transport — CLOCK_MONOTONIC is system-wide on Linux, so the contenders' own stamps
compare directly. The probe looks at three endpoints: the realtime and CosyVoice WebSockets and
the native text-generation stream; other peers are ignored.

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
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from agent.emulator import server as emulator_server
from agent.emulator.context import EmulatorOptions
from agent.emulator.observe import Peer, SentFrame

# The peers the analysis needs, by path: what the probe records connections of.
_ENDPOINTS = {
    "/api-ws/v1/realtime": "realtime",
    "/api-ws/v1/inference": "inference",
    "/api-ws/v1/inference/": "inference",
    "/api/v1/services/aigc/text-generation/generation": "llm",
}


@dataclass
class _Conn:
    n: int
    endpoint: str  # realtime | inference | llm
    streams: dict[str, int] = field(default_factory=dict)  # response/task id -> bytes recorded
    task: str = ""  # CosyVoice: the task the next binary frame belongs to
    first_token: bool = False  # LLM: the first content chunk was stamped


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
        self._conns: dict[int, _Conn] = {}  # open peers the probe records, by Peer.n
        self._responses = 0

    def options(self, **kwargs: Any) -> EmulatorOptions:
        """Emulator options with this probe's hooks set (nothing else is changed)."""
        return EmulatorOptions(on_connection=self.on_connection, on_sent=self.on_sent, **kwargs)

    def on_connection(self, peer: Peer, event: Literal["open", "close"], t: float) -> None:
        endpoint = _ENDPOINTS.get(peer.path)
        if endpoint is None:
            return
        if event == "close":
            if self._conns.pop(peer.n, None) is not None:
                self._write({"conn": peer.n, "kind": "close", "t": t})
            return
        self._conns[peer.n] = _Conn(peer.n, endpoint)
        self._write({"conn": peer.n, "kind": "open", "t": t, "endpoint": endpoint,
                     "model": peer.model, "ua": peer.user_agent})

    def on_sent(self, frame: SentFrame, t: float) -> None:
        conn = self._conns.get(frame.peer.n)
        if conn is None:
            return
        data = frame.data
        if isinstance(data, str):  # a WebSocket text frame
            self._text(conn, data, t)
        elif frame.kind == "binary":
            if conn.task:
                self._audio(conn, conn.task, data, t, "tts_first_audio")
        elif conn.endpoint == "llm" and not conn.first_token:
            self._sse(conn, data, t)

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
    options = probe.options(
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
