"""Qwen-Omni-Realtime / realtime-ASR protocol core, without I/O (reference §5).

Builds client events (here) and parses server events into typed objects (`server_events`,
re-exported here, so `protocol` stays the one name callers import). No sockets here, so parsing is
testable from recorded frames; the connection layer (`agent/realtime/connection.py`) only moves
text frames, and what the events mean for a conversation (which response is active, which are
dropped) is omni mode's pure core, `agent.conversation.omni`.

Strict in what we send: only documented fields; liberal in what we accept (`server_events`).
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from typing import Any

from agent.config import OmniSettings
from agent.realtime.server_events import (
    MAX_MESSAGE_BYTES,
    AudioDelta,
    AudioDone,
    Committed,
    ErrorEvent,
    FunctionCall,
    FunctionCallArgumentsDelta,
    ItemCreated,
    ProtocolError,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SessionCreated,
    SessionFinished,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    TranscriptDone,
    TranscriptionCompleted,
    TranscriptionDelta,
    TranscriptionFailed,
    Unknown,
    parse_event,
)

__all__ = [  # the client events built here and the server events re-exported
    "AudioDelta",
    "AudioDone",
    "Committed",
    "ErrorEvent",
    "FunctionCall",
    "FunctionCallArgumentsDelta",
    "ItemCreated",
    "MAX_MESSAGE_BYTES",
    "ProtocolError",
    "ResponseCreated",
    "ResponseDone",
    "ServerEvent",
    "SessionCreated",
    "SessionFinished",
    "SessionUpdated",
    "SpeechStarted",
    "SpeechStopped",
    "TranscriptDelta",
    "TranscriptDone",
    "TranscriptionCompleted",
    "TranscriptionDelta",
    "TranscriptionFailed",
    "Unknown",
    "asr_session_update",
    "audio_append",
    "audio_clear",
    "audio_commit",
    "encode",
    "function_call_output",
    "new_event_id",
    "parse_event",
    "response_cancel",
    "response_create",
    "session_finish",
    "session_update",
    "user_text",
]

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
