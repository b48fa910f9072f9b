"""Realtime server events parsed into typed objects, without I/O (reference §5).

The receiving half of `agent.realtime.protocol` (which builds the client events and re-exports
everything here): one frame in, one `ServerEvent` out, or `ProtocolError` for what is not a
realtime event at all. Liberal in what we accept: unknown events and fields pass through as
`Unknown`, and both documented example shapes are tolerated.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

# A server message larger than this is refused by the connection (an answer chunk is ~10 KB).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class ProtocolError(Exception):
    """The server sent something that is not a realtime event (garbage, binary, wrong shape)."""


@dataclass(frozen=True)
class ServerEvent:
    type: str
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class _SessionEvent(ServerEvent):
    @property
    def session(self) -> dict[str, Any]:
        """The session configuration the server reports (empty if it sent none)."""
        sess = self.raw.get("session")
        return sess if isinstance(sess, dict) else {}


@dataclass(frozen=True)
class SessionCreated(_SessionEvent):
    session_id: str
    voice: str | None


@dataclass(frozen=True)
class SessionUpdated(_SessionEvent):
    voice: str | None


@dataclass(frozen=True)
class ItemCreated(ServerEvent):
    """`conversation.item.created`: `role` and the content types (`input_text`, `input_audio`)."""

    item_id: str | None
    item_type: str
    role: str | None
    content_types: tuple[str, ...]


@dataclass(frozen=True)
class SpeechStarted(ServerEvent):
    item_id: str | None
    audio_start_ms: int | None


@dataclass(frozen=True)
class SpeechStopped(ServerEvent):
    item_id: str | None
    audio_end_ms: int | None


@dataclass(frozen=True)
class Committed(ServerEvent):
    item_id: str | None


@dataclass(frozen=True)
class TranscriptionDelta(ServerEvent):
    item_id: str | None
    text: str


@dataclass(frozen=True)
class TranscriptionCompleted(ServerEvent):
    item_id: str | None
    transcript: str


@dataclass(frozen=True)
class TranscriptionFailed(ServerEvent):
    item_id: str | None
    message: str


@dataclass(frozen=True)
class ResponseCreated(ServerEvent):
    response_id: str


@dataclass(frozen=True)
class AudioDelta(ServerEvent):
    response_id: str
    pcm: bytes


@dataclass(frozen=True)
class TranscriptDelta(ServerEvent):
    """Assistant text: `response.audio_transcript.delta` or `response.text.delta`."""

    response_id: str
    delta: str


@dataclass(frozen=True)
class TranscriptDone(ServerEvent):
    response_id: str
    transcript: str


@dataclass(frozen=True)
class AudioDone(ServerEvent):
    response_id: str


@dataclass(frozen=True)
class ResponseDone(ServerEvent):
    response_id: str
    status: str
    text: str = ""  # the assistant's text in `response.output` (text-only answers stream none)
    calls: tuple[tuple[str, str, str], ...] = ()  # (call_id, name, arguments) of function_call items
    reason: str = ""  # why it was not completed, from `status_details` ("" when not said)


@dataclass(frozen=True)
class FunctionCallArgumentsDelta(ServerEvent):
    """A piece of a call's argument text (optional: the live service skipped it for a call)."""

    response_id: str
    call_id: str
    delta: str


@dataclass(frozen=True)
class FunctionCall(ServerEvent):
    """A call's complete arguments: `response.function_call_arguments.done`, or a
    `response.output_item.done` / `.added` whose item is a `function_call` (`complete`: its
    arguments are final; `.added`, or `.done` of an item left `incomplete`, only announces the
    call and its name)."""

    response_id: str
    call_id: str
    name: str
    arguments: str
    complete: bool = True


@dataclass(frozen=True)
class ErrorEvent(ServerEvent):
    error_type: str
    code: str
    message: str
    param: str | None
    event_id: str | None = None  # `error.event_id`: the client event this error answers

    @property
    def fatal(self) -> bool:
        """The v2 SDK treats `invalid_request_error` as recoverable and everything else as fatal."""
        return self.error_type not in ("invalid_request_error", "")


@dataclass(frozen=True)
class SessionFinished(ServerEvent):
    pass


@dataclass(frozen=True)
class Unknown(ServerEvent):
    pass


def _str(d: dict[str, Any], key: str, default: str = "") -> str:
    v = d.get(key)
    return v if isinstance(v, str) else default


def _int(d: dict[str, Any], key: str) -> int | None:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _opt_str(d: dict[str, Any], key: str) -> str | None:
    v = d.get(key)
    return v if isinstance(v, str) else None


def _status_reason(resp: dict[str, Any]) -> str:
    """`status_details` in a few words: `server_error internal_error: <message>`, or its
    `reason` (`turn_detected`). Undocumented by DashScope (OpenAI Realtime's shape), so every
    field is optional and anything else reads as ""."""
    details = resp.get("status_details")
    if not isinstance(details, dict):
        return ""
    err = details.get("error")
    if isinstance(err, dict):
        kind = " ".join(x for x in (_str(err, "type"), _str(err, "code")) if x)
        message = _str(err, "message")[:200]
        return f"{kind}: {message}" if kind and message else kind or message
    return _str(details, "reason")


def _output_text(resp: dict[str, Any]) -> str:
    """The text of the assistant message items of a finished response, in order."""
    output = resp.get("output")
    parts: list[str] = []
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        content = item.get("content")
        for c in content if isinstance(content, list) else []:
            if isinstance(c, dict):
                parts.append(_str(c, "text") or _str(c, "transcript"))
    return "".join(parts)


def _output_calls(resp: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    output = resp.get("output")
    return tuple(
        (_str(item, "call_id"), _str(item, "name"), _str(item, "arguments"))
        for item in (output if isinstance(output, list) else [])
        if isinstance(item, dict) and item.get("type") == "function_call" and _str(item, "call_id")
    )


def parse_event(message: str | bytes) -> ServerEvent:
    """Parse one server frame. Binary frames and non-JSON text are protocol errors."""
    if isinstance(message, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"unexpected binary frame ({len(message)} bytes) on the realtime socket")
    if len(message) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"oversized message ({len(message)} bytes)")
    try:
        raw = json.loads(message)
    except (ValueError, RecursionError):  # deep nesting raises RecursionError, not ValueError
        raise ProtocolError(f"malformed JSON from server: {message[:80]!r}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ProtocolError(f"server event without a type: {message[:80]!r}")
    return _typed(raw)


def _typed(raw: dict[str, Any]) -> ServerEvent:
    t: str = raw["type"]
    rid = _str(raw, "response_id")
    if t == "response.audio.delta":
        try:
            pcm = base64.b64decode(_str(raw, "delta"), validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("response.audio.delta carries invalid base64") from None
        return AudioDelta(t, raw, rid, pcm)
    if t in ("response.audio_transcript.delta", "response.text.delta"):
        return TranscriptDelta(t, raw, rid, _str(raw, "delta"))
    if t in ("response.audio_transcript.done", "response.text.done"):
        return TranscriptDone(t, raw, rid, _str(raw, "transcript") or _str(raw, "text"))
    if t == "response.audio.done":
        return AudioDone(t, raw, rid)
    if t in ("response.created", "response.done"):
        resp = raw.get("response") if isinstance(raw.get("response"), dict) else {}
        resp_id = _str(resp, "id") or rid
        if t == "response.created":
            return ResponseCreated(t, raw, resp_id)
        return ResponseDone(t, raw, resp_id, _str(resp, "status", "completed"), _output_text(resp),
                            _output_calls(resp), _status_reason(resp))
    if t == "response.function_call_arguments.delta":
        return FunctionCallArgumentsDelta(t, raw, rid, _str(raw, "call_id"), _str(raw, "delta"))
    if t == "response.function_call_arguments.done":
        return FunctionCall(t, raw, rid, _str(raw, "call_id"), _str(raw, "name"), _str(raw, "arguments"))
    if t in ("response.output_item.added", "response.output_item.done"):
        item = raw.get("item") if isinstance(raw.get("item"), dict) else {}
        if item.get("type") == "function_call" and _str(item, "call_id"):
            # An item the response ended `incomplete` (it failed or was cut off) carries
            # arguments the model never finished: it announces the call but does not complete it.
            finished = t.endswith(".done") and _str(item, "status", "completed") == "completed"
            return FunctionCall(t, raw, rid, _str(item, "call_id"), _str(item, "name"),
                                _str(item, "arguments"), complete=finished)
    if t == "input_audio_buffer.speech_started":
        return SpeechStarted(t, raw, _opt_str(raw, "item_id"), _int(raw, "audio_start_ms"))
    if t == "input_audio_buffer.speech_stopped":
        return SpeechStopped(t, raw, _opt_str(raw, "item_id"), _int(raw, "audio_end_ms"))
    if t == "input_audio_buffer.committed":
        return Committed(t, raw, _opt_str(raw, "item_id"))
    if t in (
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.text",  # realtime ASR's name for it
    ):
        # Live preview = text + stash (reference §5.4).
        return TranscriptionDelta(t, raw, _opt_str(raw, "item_id"), _str(raw, "text") + _str(raw, "stash"))
    if t == "conversation.item.input_audio_transcription.completed":
        return TranscriptionCompleted(t, raw, _opt_str(raw, "item_id"), _str(raw, "transcript"))
    if t == "conversation.item.input_audio_transcription.failed":
        err = raw.get("error") if isinstance(raw.get("error"), dict) else {}
        return TranscriptionFailed(t, raw, _opt_str(raw, "item_id"), _str(err, "message"))
    if t in ("session.created", "session.updated"):
        sess = raw.get("session") if isinstance(raw.get("session"), dict) else {}
        voice = _opt_str(sess, "voice")
        if t == "session.created":
            return SessionCreated(t, raw, _str(sess, "id"), voice)
        return SessionUpdated(t, raw, voice)
    if t == "error":
        err = raw.get("error") if isinstance(raw.get("error"), dict) else {}
        return ErrorEvent(t, raw, _str(err, "type"), _str(err, "code"), _str(err, "message"),
                          _opt_str(err, "param"), _opt_str(err, "event_id"))
    if t == "conversation.item.created":
        item = raw.get("item") if isinstance(raw.get("item"), dict) else {}
        content = item.get("content")
        kinds = tuple(_str(c, "type") for c in (content if isinstance(content, list) else [])
                      if isinstance(c, dict))
        return ItemCreated(t, raw, _opt_str(item, "id"), _str(item, "type"), _opt_str(item, "role"), kinds)
    if t == "session.finished":
        return SessionFinished(t, raw)
    return Unknown(t, raw)
