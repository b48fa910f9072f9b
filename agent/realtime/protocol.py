"""Qwen-Omni-Realtime / realtime-ASR protocol core, without I/O (reference §5).

Builds client events and parses server events into typed objects. No sockets here, so parsing is
testable from recorded frames; the connection layer (`agent/realtime/connection.py`) only moves
text frames, and what the events mean for a conversation (which response is active, which are
dropped) is omni mode's pure core, `agent.conversation.omni`.

Liberal in what we accept: unknown events and fields pass through as `Unknown`, audio format
variants (`pcm`, `pcm16`, `pcm24`) and both documented example shapes are tolerated. Strict in what
we send: only documented fields.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from agent.config import OmniSettings

# A server message larger than this is refused by the connection (an answer chunk is ~10 KB).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


class ProtocolError(Exception):
    """The server sent something that is not a realtime event (garbage, binary, wrong shape)."""


# Event ids only have to be unique within a session (the server echoes them in errors). A random
# per-process prefix plus a counter is unique across reconnects and restarts and costs a fraction
# of a uuid4 — which matters on the uplink, where 25 `append` events a second are encoded
# (bench/RESULTS.md: the uplink is most of the daemon's own CPU time).
_ID_PREFIX = "event_" + uuid.uuid4().hex[:20]
_ID_COUNTER = itertools.count(1)
_APPEND = "input_audio_buffer.append"


def _event_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


def new_event_id() -> str:
    """An id to put on a client event whose answer (or `error`) must be matched to it."""
    return _event_id()


def encode(event: dict[str, Any]) -> str:
    """Serialize a client event, giving it an `event_id` like the SDK does."""
    if event.get("type") == _APPEND and len(event) == 2:
        audio = event.get("audio")
        # Fast path for the microphone stream: base64 needs no JSON escaping, so the frame is a
        # template (a third of json.dumps' cost); anything unexpected takes the general path.
        if isinstance(audio, str) and '"' not in audio and "\\" not in audio:
            return f'{{"event_id":"{_event_id()}","type":"{_APPEND}","audio":"{audio}"}}'
    if "event_id" not in event:
        event = {"event_id": _event_id(), **event}
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


# --- client events --------------------------------------------------------------------------


def session_update(
    settings: OmniSettings,
    voice: str | None,
    *,
    audio_output: bool = True,
    transcription_model: str | None = "qwen3-asr-flash-realtime",
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The session configuration: 16 kHz PCM in, 24 kHz PCM out, transcription, turn detection.

    `tools`: function declarations in the nested `{"type": "function", "function": {...}}` shape
    the live service echoed (function-calling.md §1.3, `ToolSpec.as_chat`); no `tool_choice`,
    which the Qwen-Omni-Realtime series does not document and third parties saw rejected."""
    td = settings.turn_detection
    turn_detection: dict[str, Any] | None
    if td.type == "none":
        turn_detection = None
    else:
        turn_detection = {
            "type": td.type,
            "threshold": td.threshold,
            "prefix_padding_ms": td.prefix_padding_ms,
            "silence_duration_ms": td.silence_duration_ms,
        }
        if settings.idle_timeout_ms is not None:  # unset: the model never speaks unprompted
            turn_detection["idle_timeout_ms"] = settings.idle_timeout_ms
    session: dict[str, Any] = {
        "modalities": ["text", "audio"] if audio_output else ["text"],
        "instructions": settings.instructions,
        "input_audio_format": "pcm",
        "output_audio_format": "pcm",
        "input_audio_transcription": (
            {"model": transcription_model} if transcription_model else None
        ),
        "turn_detection": turn_detection,
    }
    if voice:
        session["voice"] = voice
    if tools:
        session["tools"] = tools
    return {"type": "session.update", "session": session}


def asr_session_update(
    *, language: str | None = None, turn_detection: dict[str, Any] | None = None,
    manual: bool = False,
) -> dict[str, Any]:
    """Realtime ASR session: 16 kHz PCM in, server VAD (or `manual`: none, the client commits),
    transcripts only."""
    session: dict[str, Any] = {
        "input_audio_format": "pcm",
        "sample_rate": 16000,
        "turn_detection": None if manual else turn_detection
        or {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 800},
    }
    if language:
        session["input_audio_transcription"] = {"language": language}
    return {"type": "session.update", "session": session}


def audio_append(pcm16k: bytes) -> dict[str, Any]:
    return {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm16k).decode("ascii")}


def audio_commit() -> dict[str, Any]:
    return {"type": "input_audio_buffer.commit"}


def audio_clear() -> dict[str, Any]:
    return {"type": "input_audio_buffer.clear"}


def user_text(text: str, event_id: str | None = None) -> dict[str, Any]:
    """A user turn given as text (`ask`); follow it with `response_create()` once the server
    confirmed the item (`conversation.item.created`). `event_id` lets an `error` be matched."""
    event: dict[str, Any] = {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }
    return {"event_id": event_id, **event} if event_id else event


def function_call_output(call_id: str, output: str) -> dict[str, Any]:
    """A tool's result for `call_id`; after all of a response's results, one `response_create()`."""
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    }


def response_create(instructions: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "response.create"}
    if instructions:
        event["response"] = {"instructions": instructions}
    return event


def response_cancel() -> dict[str, Any]:
    return {"type": "response.cancel"}


def session_finish() -> dict[str, Any]:
    return {"type": "session.finish"}


# --- server events --------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerEvent:
    type: str
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class SessionCreated(ServerEvent):
    session_id: str
    voice: str | None

    @property
    def session(self) -> dict[str, Any]:
        """The session configuration the server reports (empty if it sent none)."""
        sess = self.raw.get("session")
        return sess if isinstance(sess, dict) else {}


@dataclass(frozen=True)
class SessionUpdated(ServerEvent):
    voice: str | None

    @property
    def session(self) -> dict[str, Any]:
        sess = self.raw.get("session")
        return sess if isinstance(sess, dict) else {}


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
    arguments are final; `.added` only announces the call and its name)."""

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
            return FunctionCall(t, raw, rid, _str(item, "call_id"), _str(item, "name"),
                                _str(item, "arguments"), complete=t.endswith(".done"))
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
