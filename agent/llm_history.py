"""Conversation history sent with each LLM request: the system prompt and the last few turns.

Pure data (no I/O): the pipeline's conversation core records what was actually said here, and
`ToolAnswer` records the turn's tool exchange (`ToolExchange`) as it happens.

A turn that used tools is sent back the way the function-calling guide shows a finished call
(function-calling.md §2.1): the user's message, then per tool round the assistant message with
its `tool_calls` and one `tool` message answering each call id, then the assistant's spoken text.
So a follow-up can refer to a result ("cancel that timer" needs what `timer` answered). Every
call id gets exactly one `tool` message before the next user message, or the service answers 400.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

# Characters of one tool result kept in the history. Within its own turn the model saw the whole
# result (up to the registry's 4000); later turns need its facts (a timer's name, a temperature),
# not a page, and every request re-sends `history_turns` turns of them. With `MAX_HISTORY_CALLS`
# a turn adds at most ~4 kB of results, 8 turns ~32 kB (a few thousand tokens).
MAX_HISTORY_RESULT = 1000
MAX_HISTORY_CALLS = 4  # calls kept per turn (in order); later ones are left out, call and result
NO_RESULT = "(no result: the answer was cut off before the tool came back)"


def clip_result(text: str, limit: int = MAX_HISTORY_RESULT) -> str:
    """`text`, or its first `limit` characters with a marker saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [truncated: {limit} of {len(text)} characters kept]"


@dataclass
class ToolCallRecord:
    """One call of a turn: what the model asked for and (once known) the clipped result."""

    id: str
    name: str
    arguments: str
    result: str | None = None

    def settle(self, text: str) -> None:
        """The result arrived (first one wins: a late callback never overwrites it)."""
        if self.result is None:
            self.result = clip_result(text)


@dataclass
class ToolExchange:
    """The tool rounds of one turn, in order. Mutable on purpose: a call cut off by a barge-in
    runs on (SPEC §11), and its result, when it comes, is what the next request should show."""

    rounds: list[list[ToolCallRecord]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any(self.rounds)

    def called(self, calls: list[dict[str, str]]) -> list[ToolCallRecord]:
        """A round of calls ({id, name, arguments}); returns the records kept (bounded)."""
        room = MAX_HISTORY_CALLS - sum(len(r) for r in self.rounds)
        kept = [ToolCallRecord(c["id"], c["name"], c["arguments"]) for c in calls[:max(0, room)]]
        if kept:
            self.rounds.append(kept)
        return kept

    def messages(self) -> list[dict[str, Any]]:
        """The assistant `tool_calls` message and its `tool` messages, per round. The text said
        around the calls is the turn's final assistant message (what was heard), not repeated."""
        out: list[dict[str, Any]] = []
        for records in self.rounds:
            out.append({"role": "assistant", "content": "", "tool_calls": [
                {"id": r.id, "type": "function", "index": i,
                 "function": {"name": r.name, "arguments": r.arguments}}
                for i, r in enumerate(records)]})
            out += [{"role": "tool", "tool_call_id": r.id, "name": r.name,
                     "content": NO_RESULT if r.result is None else r.result} for r in records]
        return out


@dataclass(frozen=True)
class Turn:
    user: str
    assistant: str
    tools: ToolExchange | None = None


class Conversation:
    """System prompt plus the last `history_turns` turns; older ones drop out.

    Bounded so an always-on device's context (and cost) stays flat. An answer cut short by a
    barge-in should be recorded as what was actually spoken, so the model knows what the user
    heard; an empty answer is left out of the messages (its tool exchange, if any, is kept: the
    calls happened).
    """

    def __init__(self, system_prompt: str, history_turns: int = 8) -> None:
        self.system_prompt = system_prompt
        self._turns: deque[Turn] = deque(maxlen=max(0, history_turns))

    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(self._turns)

    def add(self, user: str, assistant: str, tools: ToolExchange | None = None) -> None:
        if self._turns.maxlen:
            self._turns.append(Turn(user, assistant, tools if tools else None))

    def clear(self) -> None:
        self._turns.clear()

    def messages(self, user_text: str) -> list[dict[str, Any]]:
        msgs: list[dict[str, Any]] = (
            [{"role": "system", "content": self.system_prompt}] if self.system_prompt else [])
        for t in self._turns:
            msgs.append({"role": "user", "content": t.user})
            if t.tools:
                msgs += t.tools.messages()
            if t.assistant:
                msgs.append({"role": "assistant", "content": t.assistant})
        msgs.append({"role": "user", "content": user_text})
        return msgs
