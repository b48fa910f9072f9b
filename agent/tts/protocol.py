"""CosyVoice duplex synthesis protocol (`/api-ws/v1/inference`) without any I/O.

Why Sans-I/O (as in python-websockets): every rule of the protocol — message shapes, the task
state machine, "no text before task-started", the 20 000-character limit, pairing each
`sentence-synthesis` event with the binary frame after it, cumulative usage — lives here in plain
classes that are tested with recorded event sequences, no sockets, no event loop. The connection
layer (`agent.tts.connection`) only moves strings and bytes between a socket and these objects.

Usage: create a `SynthesisTask`, call `start()` / `send_text()` / `finish()` / `cancel()`, send
what `data_to_send()` returns (JSON text frames, in order), and feed what the server sends to
`receive_text()` (JSON events) or `receive_bytes()` (audio). Text handed in before the server
acknowledged the task is queued and released by `task-started`.

Liberal in what we accept: unknown events and fields are passed through or ignored, events for
another task id (late events of a previous task on a reused socket) are dropped and counted, and a
binary frame without a preceding `sentence-synthesis` is still audio (counted as unpaired).
"""

from __future__ import annotations

import enum
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_CONTINUE_CHARS = 20_000  # per continue-task, CJK ideographs count 2
MAX_TASK_CHARS = 200_000  # per task


class ProtocolError(Exception):
    """A server frame that is not a protocol message (not JSON, not an object)."""


class InvalidState(Exception):
    """The caller asked for something the task's state does not allow (text after finish)."""


class TextLimitError(ValueError):
    """More text than one task may carry."""


def new_task_id() -> str:
    """A fresh task id: 32 hex digits, as the SDK sends (`uuid4().hex`)."""
    return uuid.uuid4().hex


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x2E80 <= o <= 0x9FFF  # CJK radicals, kana, ideographs and symbols
        or 0xAC00 <= o <= 0xD7AF
        or 0xF900 <= o <= 0xFAFF
        or 0xFF00 <= o <= 0xFFEF  # full-width forms
        or 0x20000 <= o <= 0x3FFFF
    )


def text_weight(text: str) -> int:
    """Characters as the service counts them: CJK characters 2, everything else 1."""
    return sum(2 if _is_cjk(ch) else 1 for ch in text)


def split_text(text: str, limit: int = MAX_CONTINUE_CHARS) -> list[str]:
    """Split `text` into parts of weight ≤ `limit`, preferring whitespace or punctuation cuts."""
    parts: list[str] = []
    start = 0
    while start < len(text):
        weight, end, soft = 0, start, -1
        while end < len(text):
            w = 2 if _is_cjk(text[end]) else 1
            if weight + w > limit:
                break
            weight += w
            if text[end].isspace() or text[end] in ".!?,;:。！？，；：":
                soft = end + 1
            end += 1
        if end < len(text) and soft > start + (end - start) // 2:
            end = soft  # cut at a boundary in the second half rather than mid-word
        parts.append(text[start:end])
        start = end
    return parts


@dataclass(frozen=True)
class SynthesisParams:
    """What run-task asks for. Output is fixed to what the player consumes: 24 kHz 16-bit PCM."""

    model: str
    voice: str
    format: str = "pcm"
    sample_rate: int = 24000
    volume: int = 50
    rate: float = 1.0
    pitch: float = 1.0
    extra: Mapping[str, Any] = field(default_factory=dict)  # language_hints, instruction, seed…

    def parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "text_type": "PlainText",
            "voice": self.voice,
            "format": self.format,
            "sample_rate": self.sample_rate,
            "volume": self.volume,
            "rate": self.rate,
            "pitch": self.pitch,
        }
        params.update(self.extra)
        return params


def _message(action: str, task_id: str, payload: dict[str, Any]) -> str:
    header = {"action": action, "task_id": task_id, "streaming": "duplex"}
    return json.dumps({"header": header, "payload": payload}, ensure_ascii=False)


def run_task_message(task_id: str, params: SynthesisParams) -> str:
    return _message(
        "run-task",
        task_id,
        {
            "task_group": "audio",
            "task": "tts",
            "function": "SpeechSynthesizer",
            "model": params.model,
            "parameters": params.parameters(),
            "input": {},  # required even though empty ("task can not be null" otherwise)
        },
    )


def continue_task_message(task_id: str, text: str) -> str:
    return _message("continue-task", task_id, {"input": {"text": text}})


def finish_task_message(task_id: str, cancel: bool = False) -> str:
    return _message("finish-task", task_id, {"input": {"directive": "cancel"} if cancel else {}})


# --- server events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerEvent:
    task_id: str | None


@dataclass(frozen=True)
class TaskStarted(ServerEvent):
    pass


@dataclass(frozen=True)
class SentenceBegin(ServerEvent):
    index: int | None = None
    text: str | None = None
    characters: int | None = None


@dataclass(frozen=True)
class SentenceSynthesis(ServerEvent):
    index: int | None = None
    characters: int | None = None


@dataclass(frozen=True)
class SentenceEnd(ServerEvent):
    index: int | None = None
    text: str | None = None
    characters: int | None = None


@dataclass(frozen=True)
class TaskFinished(ServerEvent):
    characters: int | None = None
    request_uuid: str | None = None


@dataclass(frozen=True)
class TaskFailed(ServerEvent):
    code: str = "Unknown"
    message: str = ""


@dataclass(frozen=True)
class UnknownEvent(ServerEvent):
    name: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioChunk:
    """One binary frame. `paired`: it followed a sentence-synthesis event as documented."""

    data: bytes
    paired: bool
    discard: bool = False  # the task was cancelled: the caller must not play it


def _as_int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _as_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def parse_event(text: str | bytes) -> ServerEvent:
    """Parse one JSON text frame into a typed event (unknown ones become `UnknownEvent`)."""
    try:
        msg = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # deep nesting: RecursionError
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"expected a JSON object, got {type(msg).__name__}")
    header = msg.get("header") if isinstance(msg.get("header"), dict) else {}
    payload = msg.get("payload") if isinstance(msg.get("payload"), dict) else {}
    name = _as_str(header.get("event"))
    task_id = _as_str(header.get("task_id"))
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    characters = _as_int(usage.get("characters"))
    if name == "task-started":
        return TaskStarted(task_id)
    if name == "result-generated":
        output = payload.get("output") if isinstance(payload.get("output"), dict) else {}
        sentence = output.get("sentence") if isinstance(output.get("sentence"), dict) else {}
        index = _as_int(sentence.get("index"))
        kind = output.get("type")
        if kind == "sentence-begin":
            return SentenceBegin(task_id, index, _as_str(output.get("original_text")), characters)
        if kind == "sentence-synthesis":
            return SentenceSynthesis(task_id, index, characters)
        if kind == "sentence-end":
            return SentenceEnd(task_id, index, _as_str(output.get("original_text")), characters)
    if name == "task-finished":
        attrs = header.get("attributes") if isinstance(header.get("attributes"), dict) else {}
        return TaskFinished(task_id, characters, _as_str(attrs.get("request_uuid")))
    if name == "task-failed":
        return TaskFailed(
            task_id,
            _as_str(header.get("error_code")) or "Unknown",
            _as_str(header.get("error_message")) or "",
        )
    return UnknownEvent(task_id, name, msg)


# --- the task state machine --------------------------------------------------------------------


class TaskState(enum.Enum):
    CREATED = "created"  # run-task not yet acknowledged
    STARTED = "started"  # task-started received; text flows
    FINISHING = "finishing"  # finish-task (or cancel) sent; audio may still arrive
    FINISHED = "finished"
    FAILED = "failed"


class SynthesisTask:
    """Client side of one synthesis task: outgoing messages and the state they imply."""

    def __init__(
        self,
        params: SynthesisParams,
        task_id: str | None = None,
        *,
        max_chars: int = MAX_CONTINUE_CHARS,
        max_task_chars: int = MAX_TASK_CHARS,
    ) -> None:
        self.params = params
        self.task_id = task_id or new_task_id()
        self.max_chars = max_chars
        self.max_task_chars = max_task_chars
        self.state = TaskState.CREATED
        self.cancelled = False
        self.error: TaskFailed | None = None
        self.request_uuid: str | None = None
        self.characters: int | None = None  # the server's cumulative usage; the last value wins
        self.text_chars = 0  # weighted characters handed to send_text
        self.sentences = 0
        self.audio_frames = 0
        self.audio_bytes = 0
        self.unpaired_frames = 0
        self.ignored_events = 0  # other task ids, or after the task ended
        self._outgoing: list[str] = []
        self._queued: list[str] = []  # continue-task texts waiting for task-started
        self._finish: str | None = None  # None, "finish" or "cancel" (requested, maybe not sent)
        self._finish_sent: str | None = None
        self._run_sent = False
        self._awaiting_audio = 0

    # -- state --------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.state in (TaskState.FINISHED, TaskState.FAILED)

    @property
    def finish_requested(self) -> bool:
        return self._finish is not None

    @property
    def has_text(self) -> bool:
        return self.text_chars > 0

    @property
    def queued_text(self) -> tuple[str, ...]:
        """Text accepted before task-started and not yet sent (to replay on a new socket)."""
        return tuple(self._queued)

    # -- client actions -----------------------------------------------------------------------

    def start(self) -> None:
        if not self._run_sent:
            self._run_sent = True
            self._outgoing.append(run_task_message(self.task_id, self.params))

    def send_text(self, text: str) -> None:
        if self._finish is not None or self.done:
            raise InvalidState(f"task {self.task_id} is {self.state.value}; no more text")
        if not text:
            return
        weight = text_weight(text)
        if self.text_chars + weight > self.max_task_chars:
            raise TextLimitError(f"a task carries at most {self.max_task_chars} characters")
        self.text_chars += weight
        for part in split_text(text, self.max_chars):
            if self.state is TaskState.STARTED:
                self._outgoing.append(continue_task_message(self.task_id, part))
            else:
                self._queued.append(part)

    def finish(self) -> None:
        """End of input: the server synthesizes what it buffered, then sends task-finished."""
        if self._finish is None and not self.done:
            self._finish = "finish"
            self._release()

    def cancel(self) -> None:
        """Stop at once: queued text is dropped; audio still arriving is marked `discard`."""
        if self.done or self.cancelled:
            return
        self.cancelled = True
        self._queued.clear()
        self._finish = "cancel"
        self._release()

    def abandon(self) -> None:
        """Barge-in where the cancel directive is unsupported (CosyVoice in Singapore, REF §4.1):
        stop listening, end the input with a plain finish-task, and leave the socket to the next
        task, whose run-task pre-empts this one on the server (REF §4.4). Audio still arriving
        is marked `discard`; later events of this task are ignored (it counts as done)."""
        if self.done:
            return
        self.cancelled = True
        self._queued.clear()
        if self._finish is None:
            self._finish = "finish"
        self._release()
        self.state = TaskState.FINISHED

    def data_to_send(self) -> list[str]:
        out, self._outgoing = self._outgoing, []
        return out

    def _release(self) -> None:
        """Emit queued text and the finish request once the server has started the task."""
        if self.state is TaskState.CREATED:
            return
        for text in self._queued:
            self._outgoing.append(continue_task_message(self.task_id, text))
        self._queued.clear()
        if self._finish is not None and self._finish_sent != self._finish and not self.done:
            # a plain finish may be followed by a cancel (barge-in while the tail is synthesized)
            self._outgoing.append(finish_task_message(self.task_id, self._finish == "cancel"))
            self._finish_sent = self._finish
            self.state = TaskState.FINISHING

    # -- server input -------------------------------------------------------------------------

    def receive_text(self, data: str | bytes) -> list[ServerEvent]:
        """Apply one JSON event; returns the events that concern this task (maybe none)."""
        event = parse_event(data)
        if (event.task_id is not None and event.task_id != self.task_id) or self.done:
            self.ignored_events += 1
            return []
        chars = getattr(event, "characters", None)
        if chars is not None:
            self.characters = chars
        if isinstance(event, TaskStarted):
            if self.state is TaskState.CREATED:
                self.state = TaskState.STARTED
                self._release()
        elif isinstance(event, SentenceSynthesis):
            self._awaiting_audio += 1
        elif isinstance(event, SentenceEnd):
            self.sentences += 1
        elif isinstance(event, TaskFinished):
            self.state = TaskState.FINISHED
            self.request_uuid = event.request_uuid
            self._queued.clear()
        elif isinstance(event, TaskFailed):
            self.state = TaskState.FAILED
            self.error = event
            self._queued.clear()
        return [event]

    def receive_bytes(self, data: bytes) -> AudioChunk:
        """Account for one binary audio frame (always accepted, see module docstring)."""
        paired = self._awaiting_audio > 0
        if paired:
            self._awaiting_audio -= 1
        else:
            self.unpaired_frames += 1
        self.audio_frames += 1
        self.audio_bytes += len(data)
        # Before task-started no audio can be ours: on a socket whose previous task was
        # abandoned (`abandon`), its last frames may still arrive until our run-task pre-empts it.
        return AudioChunk(bytes(data), paired, discard=self.cancelled or self.state is TaskState.CREATED)
