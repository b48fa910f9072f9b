"""The microphone uplink into a realtime session (omni, or realtime ASR in pipeline mode).

One long-lived task is the microphone's only reader, whether or not a session is open:

- **Pre-roll**: while no session is attached the last `PRE_ROLL_MS` of audio are kept and sent
  first after (re)connecting, so the first words after a reconnect are not lost.
- **Echo handling** (SPEC §5.7, agent/echo): every chunk passes through the filter of the
  configured `audio.echo` mode — `half_duplex` replaces it with digital silence while the
  assistant is audible and for a short tail after, `gate` lets it through during playback only
  when it is clearly louder than the expected echo, `aec` cancels the echo first. Silence rather
  than nothing keeps the server's audio timeline (and its VAD) in step with real time. Being the
  microphone's only reader, this task is also the one place that sees every chunk in order,
  which the echo canceller's continuous reference stream depends on.
- **Order**: the pre-roll is drained by this same task before the next live chunk, so audio
  reaches the server in capture order even when a session is attached mid-chunk.

The session owner calls `attach(conn)` once its session is configured and `detach()` when it is
gone; a failed send keeps the chunk in the pre-roll, and the owner notices the loss itself.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Protocol

from agent.audio.engine import AudioEngine
from agent.echo import make_echo_filter
from agent.realtime import protocol as p

log = logging.getLogger("voice-agent.echo")

PRE_ROLL_MS = 600  # microphone audio kept while disconnected and sent first after reconnecting


class EventSender(Protocol):
    async def send(self, event: dict[str, Any]) -> None: ...


class MicUplink:
    """Streams microphone chunks to the attached session; see the module docstring."""

    def __init__(self, engine: AudioEngine, chunk_ms: int, echo: str) -> None:
        self.engine = engine
        self.echo = echo
        self.echo_filter = make_echo_filter(echo, engine.player, chunk_ms)
        self.stopping = False
        self._conn: EventSender | None = None
        self._pre_roll: deque[bytes] = deque(maxlen=max(1, PRE_ROLL_MS // chunk_ms))

    @property
    def attached(self) -> bool:
        return self._conn is not None

    def attach(self, conn: EventSender) -> None:
        """Send to `conn` from now on, starting with the pre-roll."""
        self._conn = conn

    def detach(self) -> None:
        self._conn = None

    async def run(self) -> None:
        """Read the microphone until stopped or the engine closes it."""
        try:
            await self._run()
        finally:
            self.echo_filter.close()
            if self.echo != "none":
                log.info("echo handling: %s", self.echo_filter.summary())

    async def _run(self) -> None:
        async for chunk, t_end in self.engine.mic.frames():
            if self.stopping:
                return
            chunk = await self.echo_filter.process(chunk, t_end)
            conn = self._conn
            if conn is None:
                self._pre_roll.append(chunk)
                continue
            try:
                while self._pre_roll:
                    await conn.send(p.audio_append(self._pre_roll[0]))
                    self._pre_roll.popleft()
                await conn.send(p.audio_append(chunk))
            except Exception:  # the session owner notices the loss and reconnects
                self._pre_roll.append(chunk)
