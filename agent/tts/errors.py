"""Errors of the synthesis layer; messages pass through `redact` so no key can leak."""

from __future__ import annotations

from agent.secrets import redact


class SynthesisError(Exception):
    """A synthesis task failed: server `task-failed` (its code/message) or a transport problem."""

    def __init__(self, code: str, message: str, *, task_id: str | None = None) -> None:
        super().__init__(redact(f"{code}: {message}"))
        self.code = code
        self.message = redact(message)
        self.task_id = task_id


class SynthesisAuthError(SynthesisError):
    """The WebSocket upgrade was refused with 401/403: wrong key, region or workspace."""
