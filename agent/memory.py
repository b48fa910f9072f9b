"""Conversation memory (SPEC §11): the last `memory.turns` exchanges, kept across sessions.

Why: the service forgets everything when a realtime session ends (rotation before its cap, a
reconnect) and the daemon forgets when it restarts, so the assistant would lose what was just
said. Memory keeps a short transcript (what the user said, what the assistant answered, which
tools ran) that the modes carry into every new session (`agent.conversation.seed` for omni, the
LLM history for pipeline).

It is fed by the daemon's event stream (`EventBus.listen`): the `transcript` and `turn` events
that both modes already publish, so neither mode records anything itself; and by the tool
registry's `on_call` hook, because the SPEC §12 `tool` event (fixed fields) has no result, and
the next session should know what a tool said ("the light is on"), not only that it ran. A tool
note keeps the arguments and at most `MAX_RESULT` characters of the result, and goes to the turn
the call was made in, even when the result comes after that turn ended (`Memory.tool_call`). With
`memory.persist` the turns are kept in `<state_dir>/memory.json` (0600, written atomically in a
worker thread, bounded in size); a file that cannot be read is renamed aside with a WARNING and
memory starts empty. `forget` clears both.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.statefile import atomic_write

log = logging.getLogger("voice-agent.memory")

FILENAME = "memory.json"
VERSION = 1
MAX_TEXT = 600  # characters kept of one user or assistant text
MAX_TOOLS = 4  # tool notes kept per turn
MAX_ARGS = 100  # characters of a tool call's arguments kept in its note
MAX_RESULT = 200  # characters of a tool's result kept in its note ("tool results in short")
MAX_NOTE = MAX_ARGS + MAX_RESULT + 80  # characters of one tool note (name, arguments, result)
MAX_FILE_BYTES = 4 << 20  # a larger file is not ours (200 turns of 4-byte characters: < 1.5 MB)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class MemoryTurn:
    """One remembered exchange; `tools` are short notes like
    `light_set {"on": true} -> the light is on` (a failed call: `-> failed: <its error>`)."""

    user: str
    assistant: str
    tools: tuple[str, ...] = ()
    interrupted: bool = False

    def answer_with_notes(self) -> str:
        """The answer as a new session is told it: with the tool notes, and whether it was cut."""
        text = self.assistant
        if self.tools:
            text = f"{text} [tools: {'; '.join(self.tools)}]".strip()
        if self.interrupted and text:
            text += " [interrupted]"
        return text

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"user": self.user, "assistant": self.assistant}
        if self.tools:
            doc["tools"] = list(self.tools)
        if self.interrupted:
            doc["interrupted"] = True
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> MemoryTurn:
        if not isinstance(doc, dict):
            raise ValueError("a turn is not an object")
        user, assistant, tools = doc.get("user", ""), doc.get("assistant", ""), doc.get("tools", [])
        if not isinstance(user, str) or not isinstance(assistant, str) or not isinstance(tools, list):
            raise ValueError("a turn has fields of the wrong type")
        return cls(_clip(user, MAX_TEXT), _clip(assistant, MAX_TEXT),
                   tuple(_clip(str(t), MAX_NOTE) for t in tools[:MAX_TOOLS]),
                   bool(doc.get("interrupted", False)))


def tool_note(name: str, arguments: Any, result: str, ok: bool) -> str:
    """`light_set {"on": true} -> the light is on`: a call and its result, in short."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    said = _clip(result, MAX_RESULT) or "(nothing)"
    outcome = said if ok else f"failed: {said}"
    return _clip(f"{name} {_clip(args, MAX_ARGS)} -> {outcome}", MAX_NOTE)


class TurnRecorder:
    """Pure: folds SPEC §12 events into finished `MemoryTurn`s.

    A turn opens with the user's final transcript (or the assistant's, for a turn whose user
    text never arrived), collects tool notes (`tool`, from the registry's hook), and closes on
    the `turn` event.
    """

    def __init__(self) -> None:
        self._user: list[str] = []
        self._assistant = ""
        self._tools: list[str] = []

    def observe(self, event: str, fields: dict[str, Any]) -> MemoryTurn | None:
        if event == "transcript" and fields.get("final"):
            text = str(fields.get("text") or "").strip()
            if not text:
                return None
            if fields.get("role") == "user":
                if self._assistant:  # a new user turn while the last one never closed
                    self._reset()
                self._user.append(text)
            elif fields.get("role") == "assistant":
                self._assistant = text
        elif event == "turn":
            turn = None
            if self._user or self._assistant:
                turn = MemoryTurn(_clip(" ".join(self._user), MAX_TEXT),
                                  _clip(self._assistant, MAX_TEXT), tuple(self._tools),
                                  bool(fields.get("interrupted")))
            self._reset()
            return turn
        return None

    def tool(self, name: str, arguments: Any, result: str, ok: bool) -> None:
        """A tool call of the open turn and its result, noted in short (the first `MAX_TOOLS`)."""
        if len(self._tools) < MAX_TOOLS:
            self._tools.append(tool_note(name, arguments, result, ok))

    def _reset(self) -> None:
        self._user, self._assistant, self._tools = [], "", []


class Memory:
    """The remembered turns (bounded), their file, and the recorder that feeds them."""

    def __init__(self, turns: int, path: Path | None = None) -> None:
        """`path` is the memory file (None: not persisted)."""
        self.limit = max(0, turns)
        self.path = path
        self._turns: deque[MemoryTurn] = deque(maxlen=self.limit or None)
        # The number of each remembered turn (None: loaded from the file), and of the open one:
        # a tool's late result finds its turn by it. Never reset, so `forget` orphans old calls.
        self._numbers: deque[int | None] = deque(maxlen=self.limit or None)
        self._open = 0
        self._recorder = TurnRecorder()
        self._dirty = False
        self._writer: asyncio.Task[None] | None = None
        # Called with the number of turns after every change (the status' `memory_turns`).
        self.on_change: Callable[[int], None] | None = None
        # Called after `forget` (the pipeline clears its LLM history).
        self.on_forget: list[Callable[[], None]] = []

    @classmethod
    def from_settings(cls, settings: Any, state_dir: Path | None) -> Memory:
        m = settings.memory
        path = state_dir / FILENAME if (m.persist and state_dir is not None and m.turns) else None
        return cls(m.turns, path)

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    @property
    def turns(self) -> tuple[MemoryTurn, ...]:
        return tuple(self._turns)

    def __len__(self) -> int:
        return len(self._turns)

    # --- recording ------------------------------------------------------------------------------

    def observe(self, event: str, fields: dict[str, Any]) -> None:
        """`EventBus.listen` callback: quick, never raises into the publisher."""
        if not self.enabled:
            return
        turn = self._recorder.observe(event, fields)
        number = self._open
        if event == "turn":
            self._open += 1
        if turn is not None:
            self.add(turn, number)

    def tool_call(self, name: str, arguments: Any) -> Callable[[Any], None]:
        """`ToolRegistry.on_call` hook: a call starts in the turn open now; the returned taker
        notes its result (a `ToolResult`) in short in that turn.

        A result can come after its turn ended: a barge-in ends the turn while the tool runs
        on (SPEC §11), and the user speaks again. It is still filed under the turn it belongs
        to, not the next one: the tool ran, so its effect happened (a light switched, a timer
        set), and a later session must know it or the assistant denies or repeats it; that
        turn is remembered as interrupted, so the model also knows the user never heard the
        result. It is dropped only when that turn is not remembered any more (`forget`, pushed
        out by newer turns, or a turn with nothing said)."""
        number = self._open
        return lambda result: self._tool_result(number, name, arguments, result)

    def observe_tool(self, name: str, arguments: Any, result: Any) -> None:
        """A call and its result at once, in the turn open now."""
        self.tool_call(name, arguments)(result)

    def _tool_result(self, number: int, name: str, arguments: Any, result: Any) -> None:
        if not self.enabled:
            return
        text, ok = str(result.text), not result.is_error
        if number == self._open:
            self._recorder.tool(name, arguments, text, ok)
            return
        if number not in self._numbers:
            log.info("memory: the late result of %s is not kept: its turn is not remembered", name)
            return
        i = self._numbers.index(number)
        turn = self._turns[i]
        if len(turn.tools) < MAX_TOOLS:
            self._turns[i] = replace(turn, tools=(*turn.tools, tool_note(name, arguments, text, ok)))
            self._changed()

    def add(self, turn: MemoryTurn, number: int | None = None) -> None:
        """Remember `turn` (`number`: the turn it was while open, for late tool results)."""
        if not self.enabled:
            return
        self._turns.append(turn)
        self._numbers.append(number)
        self._changed()

    async def forget(self) -> None:
        """Clear the turns, in memory and on disk (SPEC §6 `forget`); returns once the file is gone."""
        self._turns.clear()
        self._numbers.clear()
        self._open += 1  # a call made before `forget` files its result nowhere
        self._recorder = TurnRecorder()
        for hook in self.on_forget:
            hook()
        self._changed()
        await self.flush()
        log.info("memory cleared")

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(len(self._turns))
        if self.path is None:
            return
        self._dirty = True
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): write now
            self._write_now()
            return
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_while_dirty(), name="memory writer")

    # --- the file -------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the file if there is one; a bad file is renamed aside (WARNING), never fatal."""
        if self.path is None:
            return
        try:
            if self.path.stat().st_size > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or not isinstance(doc.get("turns"), list):
                raise ValueError("not a memory file (no 'turns' list)")
            turns = [MemoryTurn.from_json(t) for t in doc["turns"]]
        except FileNotFoundError:
            return
        except (OSError, ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            self._set_aside(str(e))
            return
        kept = turns[-self.limit:]
        self._turns.extend(kept)
        self._numbers.extend([None] * len(kept))
        if self.on_change is not None:
            self.on_change(len(self._turns))
        log.info("memory: %d turn(s) from %s", len(self._turns), self.path)

    def _set_aside(self, why: str) -> None:
        assert self.path is not None
        stem = f"{FILENAME}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        target, n = self.path.with_name(stem), 1
        while target.exists():
            target, n = self.path.with_name(f"{stem}-{n}"), n + 1
        try:
            os.replace(self.path, target)
        except OSError as e:
            log.warning("memory file %s is unreadable (%s) and cannot be moved aside (%s); "
                        "starting with no memory, it will be overwritten", self.path, why, e)
            return
        log.warning("memory file %s is unreadable (%s); moved aside to %s, starting with no "
                    "memory", self.path, why, target.name)

    async def flush(self) -> None:
        """Wait until the file holds the current turns."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def _write_while_dirty(self) -> None:
        while self._dirty:
            self._dirty = False
            data = self._encode()
            try:
                await asyncio.to_thread(self._write, data)
            except OSError as e:
                log.warning("memory: cannot write %s: %s", self.path, e)
                return

    def _write_now(self) -> None:
        self._dirty = False
        try:
            self._write(self._encode())
        except OSError as e:
            log.warning("memory: cannot write %s: %s", self.path, e)

    def _encode(self) -> bytes | None:
        """The file's bytes, or None when there is nothing to remember (no file at all)."""
        if not self._turns:
            return None
        doc = {"version": VERSION, "turns": [t.as_json() for t in self._turns]}
        return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")

    def _write(self, data: bytes | None) -> None:
        assert self.path is not None
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        atomic_write(self.path, data, 0o600)
