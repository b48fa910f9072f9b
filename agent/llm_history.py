"""Conversation history sent with each LLM request: the system prompt and the last few turns.

Pure data (no I/O): the pipeline's conversation core records what was actually said here.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Turn:
    user: str
    assistant: str


class Conversation:
    """System prompt plus the last `history_turns` (user, assistant) turns; older ones drop out.

    Bounded so an always-on device's context (and cost) stays flat. An answer cut short by a
    barge-in should be recorded as what was actually spoken, so the model knows what the user
    heard; an empty answer is left out of the messages.
    """

    def __init__(self, system_prompt: str, history_turns: int = 8) -> None:
        self.system_prompt = system_prompt
        self._turns: deque[Turn] = deque(maxlen=max(0, history_turns))

    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(self._turns)

    def add(self, user: str, assistant: str) -> None:
        if self._turns.maxlen:
            self._turns.append(Turn(user, assistant))

    def clear(self) -> None:
        self._turns.clear()

    def messages(self, user_text: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for t in self._turns:
            msgs.append({"role": "user", "content": t.user})
            if t.assistant:
                msgs.append({"role": "assistant", "content": t.assistant})
        msgs.append({"role": "user", "content": user_text})
        return msgs
