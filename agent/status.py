"""The daemon's observable state: the state enum, counters and per-turn latency (SPEC §6).

One `Status` object is shared by the modes, the control socket and sd_notify; everything here is
cheap to read and bounded in memory, because it lives for months.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# A (re)connected session that lives this long has shown the last problem is over.
SESSION_PROVEN_S = 1.0


class AgentState(str, enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    RECONNECTING = "reconnecting"
    ERROR = "error"


def _discard(event: str, **fields: Any) -> None:
    """No event stream attached (a `Status` built by a tool or a test)."""


class LatencyStats:
    """Last, p50 and p95 over a bounded window of recent turns."""

    def __init__(self, window: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=window)
        self.last: float | None = None

    def add(self, ms: float) -> None:
        self.last = ms
        self._values.append(ms)

    def percentile(self, q: float) -> float | None:
        if not self._values:
            return None
        ordered = sorted(self._values)
        idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[idx]

    def as_dict(self) -> dict[str, float | None]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 1)

        return {"last": r(self.last), "p50": r(self.percentile(50)), "p95": r(self.percentile(95))}


@dataclass
class Status:
    mode: str
    state: AgentState = AgentState.STARTING
    voice: str | None = None
    voice_fallback: bool = False  # the configured voice is refused / not enrolled yet (SPEC §6)
    voice_error: str | None = None  # why (see voice_problem)
    connected: bool = False
    reconnects: int = 0
    turns: int = 0
    barge_ins: int = 0
    last_error: str | None = None
    heard_ms_last_interrupted: float | None = None
    muted: bool = False
    started_at: float = field(default_factory=time.monotonic)
    latency: LatencyStats = field(default_factory=LatencyStats)
    # Filled by the audio engine: returns the SPEC §6 `audio` mapping.
    audio_status: Callable[[], dict[str, Any]] | None = None
    # Called with a one-line summary whenever the state changes (sd_notify STATUS=).
    on_change: Callable[[str], None] | None = None
    # The integration event stream (SPEC §12): `publish(event, **fields)`. The daemon connects
    # `Integration.events.publish`; modes publish transcripts and turns through it too.
    publish: Callable[..., None] = _discard
    volume: int = 100  # the output volume 0–100 (SPEC §6), kept current by the integration
    memory_turns: int = 0  # remembered turns (SPEC §11), kept current by agent.memory
    # Filled by the daemon's tool registry: the SPEC §6 `tools` mapping.
    tools_status: Callable[[], dict[str, Any]] | None = None
    # The SPEC §6 `listen` mapping (agent.listen.runtime.Listener.status), set by the mode.
    listen_status: Callable[[], dict[str, Any]] | None = None

    def set_state(self, state: AgentState, why: str | None = None) -> None:
        changed = state is not self.state
        if not changed and why is None:
            return
        self.state = state
        if self.on_change is not None:
            self.on_change(self.summary(why))
        if changed:  # a new reason for the same state is not a state event
            self.publish("state", state=state.value)

    def error(self, message: str) -> None:
        """Record a problem without necessarily leaving the current state (the daemon serves on)."""
        self.last_error = message
        if self.on_change is not None:
            self.on_change(self.summary(message))
        self.publish("error", message=message)

    def clear_error(self) -> None:
        self.last_error = self.voice_error

    def clear_error_if(self, stale: str | None) -> None:
        """Clear the error only if it is still `stale` (a newer problem stays visible)."""
        if stale is not None and self.last_error == stale:
            self.last_error = self.voice_error

    def voice_problem(self, message: str | None) -> None:
        """Why the configured voice is not in use (None: it is). While set, it is what
        `last_error` falls back to when a session clears its own error: a device speaking with
        the fallback voice keeps saying why."""
        previous, self.voice_error = self.voice_error, message
        if message is not None:
            self.error(message)
        elif self.last_error == previous:
            self.last_error = None

    async def clear_error_when_proven(self, proven_s: float = SESSION_PROVEN_S) -> None:
        """Clear the error a new session replaced once that session has lived `proven_s`.

        Clearing at connect would hide why a server that accepts and at once drops every
        session keeps failing: the status would mostly read `last_error: null`.
        """
        stale = self.last_error
        await asyncio.sleep(proven_s)
        self.clear_error_if(stale)

    def summary(self, why: str | None = None) -> str:
        text = f"{self.state.value}"
        if self.voice:
            text += f", voice {self.voice}"
        if why:
            text += f": {why}"
        return text

    def as_dict(self) -> dict[str, Any]:
        audio = self.audio_status() if self.audio_status else {
            "input_ok": False, "output_ok": False, "underruns": 0, "underrun_ms": 0,
            "host_underflows": 0, "buffered_ms": 0,
        }
        return {
            "state": self.state.value,
            "mode": self.mode,
            "voice": self.voice,
            "voice_fallback": self.voice_fallback,
            "connected": self.connected,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "reconnects": self.reconnects,
            "turns": self.turns,
            "barge_ins": self.barge_ins,
            "last_error": self.last_error,
            "muted": self.muted,
            "audio": audio,
            "latency_ms": self.latency.as_dict(),
            "heard_ms_last_interrupted": self.heard_ms_last_interrupted,
            "volume": self.volume,
            "memory_turns": self.memory_turns,
            "tools": self.tools_status() if self.tools_status else {
                "calls": 0, "errors": 0, "mcp_servers": {}},
            "listen": self.listen_status() if self.listen_status else {
                "mode": None, "wake_word": None, "wakes": 0, "uplink_open": False, "sent_s": 0.0,
            },
        }
