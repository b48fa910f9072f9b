"""Conversation items of the emulated realtime endpoint: user turns, created items, transcripts.

A user turn is either committed audio (transcribed by the phrasebook recognizer in a worker
thread) or a text item from `conversation.item.create` (how `ask` works in omni mode). Either
way the assistant's answer is `answers.answer_for` of what was said; speech the recognizer could
not place gets the "please say it again" answer instead of an answer to a placeholder.
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass, field
from typing import Any

from agent.emulator.answers import answer_for
from agent.emulator.realtime_session import SessionError, new_id

UNRECOGNIZED = "[unrecognized"


@dataclass
class Turn:
    """One user input: committed audio or a text item."""

    item_id: str
    audio_ms: int = 0
    text: str | None = None  # set for text items
    transcript: asyncio.Future[str] = field(default_factory=asyncio.Future)
    reply: str | None = None  # the answer is fixed (tool results read back)

    async def answer(self) -> str:
        if self.reply is not None:
            return self.reply
        said = await asyncio.shield(self.transcript)
        return answer_for("" if said.startswith(UNRECOGNIZED) else said)


def text_turn(event_item: Any) -> tuple[Turn | None, dict[str, Any]]:
    """Validate a `conversation.item.create` item; (turn to answer or None, item to echo)."""
    if not isinstance(event_item, dict):
        raise SessionError("'item' must be an object.", "item")
    kind = event_item.get("type", "message")
    if kind == "message":
        if event_item.get("role", "user") != "user":
            raise SessionError("Only user messages can be created.", "item.role")
        content = event_item.get("content") or []
        texts = [c.get("text") for c in content if isinstance(c, dict)]
        text = " ".join(t for t in texts if isinstance(t, str))
        if not text:
            raise SessionError("A user message needs input_text content.", "item.content")
    elif kind == "function_call_output":
        if not event_item.get("call_id") or not isinstance(event_item.get("output"), str):
            raise SessionError("function_call_output needs call_id and output.", "item")
        text = event_item["output"]
    elif kind == "mcp_approval_response":
        text = None
    else:
        raise SessionError(f"Invalid value: '{kind}'. Unsupported item type.", "item.type")
    item_id = str(event_item.get("id") or new_id("item"))
    echo = {**event_item, "id": item_id, "object": "realtime.item", "status": "completed"}
    if text is None:
        return None, echo
    turn = Turn(item_id=item_id, text=text)
    turn.transcript.set_result(text)
    return turn, echo


def user_audio_item(item_id: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def transcription_events(item_id: str, text: str, asr: bool) -> list[tuple[str, dict[str, Any]]]:
    """Partial results (confirmed `text` + tentative `stash`), then `completed`.

    Qwen-ASR-Realtime names its partials `...transcription.text`; omni sessions `...delta`.
    """
    common = {"item_id": item_id, "content_index": 0, "language": "en", "emotion": "neutral"}
    partial = "conversation.item.input_audio_transcription." + ("text" if asr else "delta")
    words = [] if text.startswith(UNRECOGNIZED) else text.split()
    events = [
        (partial, {**common, "text": " ".join(words[:i]), "stash": words[i]})
        for i in sorted({len(words) // 3, (2 * len(words)) // 3})
        if i < len(words)
    ]
    events.append(
        ("conversation.item.input_audio_transcription.completed", {**common, "transcript": text})
    )
    return events


def refuse_input_text(event_item: Any) -> None:
    """The `refuse_input_text` fault: the reading of the client-events page that lists only
    `function_call_output` / `mcp_approval_response` items (audit R1)."""
    content = event_item.get("content") if isinstance(event_item, dict) else None
    for i, part in enumerate(content if isinstance(content, list) else []):
        if isinstance(part, dict) and part.get("type") == "input_text":
            raise SessionError(
                "Invalid value: 'input_text'. Supported values are: 'function_call_output', "
                "'mcp_approval_response'.",
                f"item.content[{i}].type",
            )


def misreported(session: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """The `misreport=FIELD` fault: what `session.updated` shows, other than what is in force."""
    if not fields:
        return session
    shown = copy.deepcopy(session)
    for name in fields:
        if name == "voice":
            shown["voice"] = "Ethan" if session.get("voice") != "Ethan" else "Tina"
        elif name in ("input_audio_format", "output_audio_format"):
            shown[name] = "g711_ulaw"
        elif name == "turn_detection":
            td = shown.get("turn_detection") or {}
            td["type"] = "semantic_vad" if td.get("type") != "semantic_vad" else "server_vad"
            shown["turn_detection"] = td
    return shown
