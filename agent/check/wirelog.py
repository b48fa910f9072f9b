"""The redacted wire log of `check --live --record FILE` (SPEC §3, §13): a file to attach to a bug report.

One JSON object per line: `t` (Unix time), `channel` (`http`, `realtime`, `synthesis`), `dir`
(`send`, `recv`, or `open` for a WebSocket handshake / HTTP request line) and `frame` (the frame,
parsed when it is JSON). Two things never reach the file:

- the API key: header values that carry credentials are replaced, and every line is scrubbed of
  the key (and of anything `agent.secrets.redact` recognises) as the last step, so a key echoed
  in a URL or an error body is caught too;
- audio: binary frames and base64 payloads (`audio`, `image`, `response.audio.delta`'s `delta`,
  data URIs, any long base64 string) become `{"bytes": n, "sha256": "…"}`, enough to compare two
  runs without shipping what the microphone heard.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import aiohttp

from agent.secrets import redact

SECRET_HEADERS = frozenset({"authorization", "x-api-key", "proxy-authorization", "cookie", "set-cookie"})
AUDIO_KEYS = frozenset({"audio", "image", "audio_data"})
_B64 = re.compile(r"^[A-Za-z0-9+/\r\n]{128,}={0,2}$")
_DATA_URI = re.compile(r"^data:[^;,]*;base64,(?P<data>.*)$", re.S)
MASK = "***"


def digest(data: bytes) -> dict[str, Any]:
    """What stands in for audio: its length and SHA-256."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _decoded(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        return None


def _value(key: str | None, value: Any, audio_delta: bool) -> Any:
    if isinstance(value, Mapping):
        return redact_json(value)
    if isinstance(value, list):
        return [_value(None, v, False) for v in value]
    if not isinstance(value, str):
        return value
    m = _DATA_URI.match(value)
    if m:
        raw = _decoded(m.group("data"))
        return digest(raw if raw is not None else m.group("data").encode())
    if (key in AUDIO_KEYS or (audio_delta and key == "delta") or _B64.match(value)) and value:
        raw = _decoded(value)
        if raw is not None:
            return digest(raw)
    return value


def redact_json(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a JSON object with audio replaced by its length and digest."""
    audio_delta = str(obj.get("type", "")).endswith("audio.delta")
    return {k: _value(k, v, audio_delta) for k, v in obj.items()}


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for k, v in items:
        if k.lower() in SECRET_HEADERS:
            scheme = v.split(" ", 1)[0] if " " in v else ""
            out[k] = f"{scheme} {MASK}".strip()
        else:
            out[k] = v
    return out


def redact_frame(frame: str | bytes | Mapping[str, Any]) -> Any:
    """A frame as it goes into the log: JSON parsed and redacted, binary digested, text as is."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return digest(bytes(frame))
    if isinstance(frame, Mapping):
        return redact_json(frame)
    try:
        parsed = json.loads(frame)
    except (ValueError, RecursionError):
        return _value(None, frame, False)
    return redact_json(parsed) if isinstance(parsed, dict) else parsed


class WireLog:
    """Appends redacted frames to `path`; with `path` None it records nothing (no `--record`)."""

    def __init__(self, path: str | Path | None, secrets: Iterable[str | None] = ()) -> None:
        self.path = Path(path) if path else None
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._file: IO[str] | None = None
        self.lines = 0
        if self.path is not None:
            self._file = self.path.open("w", encoding="utf-8")

    @property
    def enabled(self) -> bool:
        return self._file is not None

    def scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, MASK)
        return redact(text)

    def record(self, channel: str, direction: str, frame: Any) -> None:
        if self._file is None:
            return
        entry = {"t": round(time.time(), 3), "channel": channel, "dir": direction, "frame": redact_frame(frame)}
        self._file.write(self.scrub(json.dumps(entry, ensure_ascii=False)) + "\n")
        self._file.flush()
        self.lines += 1

    def opened(self, channel: str, url: str, headers: Mapping[str, str]) -> None:
        """A WebSocket handshake or HTTP request line, credentials masked."""
        self.record(channel, "open", {"url": url, "headers": redact_headers(headers)})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def trace_config(self) -> aiohttp.TraceConfig:
        """aiohttp hooks that log every request, its body and the response (SSE included)."""
        tc = aiohttp.TraceConfig()

        async def start(_s: Any, _ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams) -> None:
            self.record("http", "open", {"method": params.method, "url": str(params.url),
                                         "headers": redact_headers(params.headers.items())})

        async def sent(_s: Any, _ctx: SimpleNamespace, params: aiohttp.TraceRequestChunkSentParams) -> None:
            self.record("http", "send", params.chunk.decode("utf-8", "replace"))

        async def received(_s: Any, _ctx: SimpleNamespace,
                           params: aiohttp.TraceResponseChunkReceivedParams) -> None:
            self.record("http", "recv", params.chunk.decode("utf-8", "replace"))

        async def end(_s: Any, _ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams) -> None:
            self.record("http", "status", {"status": params.response.status,
                                           "headers": redact_headers(params.response.headers.items())})

        tc.on_request_start.append(start)
        tc.on_request_chunk_sent.append(sent)
        tc.on_response_chunk_received.append(received)
        tc.on_request_end.append(end)
        return tc
