"""Server-sent events from DashScope text generation, parsed without I/O (Sans-I/O).

`SSEParser` turns received bytes into `SSEEvent`s; `delta_of` reads one result event's text delta;
`ToolCallAssembler` puts streamed `tool_calls` fragments together by their `index`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class SSEEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None
    status: int | None = None  # from the ":HTTP_STATUS/429" comment or a "status:" field


class SSEParser:
    """Line-oriented server-sent-events parser, DashScope flavour (status in a comment line)."""

    def __init__(self) -> None:
        self._cur = SSEEvent()
        self._data: list[str] = []
        self._seen = False

    def feed_line(self, line: str) -> SSEEvent | None:
        """Feed one line (without its newline); returns an event when a blank line ends one."""
        if line == "":
            return self._dispatch()
        self._seen = True
        if line.startswith(":"):
            comment = line[1:].strip()
            if comment.startswith("HTTP_STATUS/"):
                self._cur.status = _int(comment[len("HTTP_STATUS/") :])
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._cur.event = value
        elif name == "id":
            self._cur.id = value
        elif name == "status":
            self._cur.status = _int(value)
        return None

    def finish(self) -> SSEEvent | None:
        """End of stream: an event not terminated by a blank line still counts."""
        return self._dispatch()

    def _dispatch(self) -> SSEEvent | None:
        if not self._seen:
            return None
        ev, self._cur = self._cur, SSEEvent()
        ev.data = "\n".join(self._data)
        self._data, self._seen = [], False
        return ev if ev.data or ev.event == "error" else None


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def delta_of(msg: Mapping[str, Any]) -> tuple[str, str | None]:
    """(content delta, finish_reason or None) of one native result event."""
    output = msg.get("output") if isinstance(msg.get("output"), dict) else {}
    finish = None
    text = ""
    choices = output.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        finish = choice.get("finish_reason")
    elif isinstance(output.get("text"), str):
        text, finish = output["text"], output.get("finish_reason")
    if not isinstance(finish, str) or finish in ("null", ""):
        finish = None
    return text, finish


class ToolCallAssembler:
    """Streamed `message.tool_calls` fragments → whole calls, accumulated by `index`.

    The first fragment of a call carries its `id` and `function.name`, later ones (with an empty
    `id`) pieces of `function.arguments` (function-calling.md §5 (2)); a stream that repeats the
    id or the name in every fragment is tolerated."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def feed(self, msg: Mapping[str, Any]) -> None:
        output = msg.get("output") if isinstance(msg.get("output"), dict) else {}
        choices = output.get("choices")
        if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
            return
        message = choices[0].get("message") if isinstance(choices[0].get("message"), dict) else {}
        fragments = message.get("tool_calls")
        for pos, frag in enumerate(fragments if isinstance(fragments, list) else []):
            if not isinstance(frag, dict):
                continue
            index = frag.get("index", pos)
            index = index if isinstance(index, int) else pos
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            fn = frag.get("function") if isinstance(frag.get("function"), dict) else {}
            if isinstance(frag.get("id"), str) and frag["id"]:
                call["id"] = frag["id"]
            if isinstance(fn.get("name"), str) and fn["name"] and not call["name"]:
                call["name"] = fn["name"]
            if isinstance(fn.get("arguments"), str):
                call["arguments"] += fn["arguments"]

    def calls(self) -> list[dict[str, str]]:
        """[{id, name, arguments}] in index order (ids made up for a stream that sent none)."""
        out = []
        for index in sorted(self._calls):
            call = dict(self._calls[index])
            call["id"] = call["id"] or f"call_{index}"
            out.append(call)
        return out
