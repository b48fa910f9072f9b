"""Realtime ASR for pipeline mode: microphone → `qwen3-asr-flash-realtime` → speech events.

The same session discipline as omni mode (SPEC §5.3), because the same things go wrong: one task
owns the session and loops connect → `session.update` (16 kHz PCM, server VAD) → serve → on
error wait with backoff → reconnect. A refused key backs off for minutes and says so; a session
that stayed up `STABLE_AFTER_S` (agent.realtime.sessionloop) resets the backoff; the shared `MicUplink` keeps a pre-roll while
disconnected and applies the half-duplex echo gate. Before the server's 120-minute cap the
session is rotated at a quiet moment (nobody speaking), so no utterance is cut in two.

The listener does not know about turns: it reports `speech_started` (barge-in), `speech_stopped`
(end of user speech, the latency origin) and final transcripts to an `AsrHandler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from agent.audio.engine import AudioEngine
from agent.config import Settings
from agent.endpoints import Endpoints
from agent.realtime import protocol as p
from agent.realtime.connection import ConnectFailed, RealtimeConnection
from agent.realtime.sessionloop import SessionLoop
from agent.status import AgentState, Status
from agent.uplink import MicUplink

log = logging.getLogger("voice-agent.asr")

SESSION_MAX_S = 100 * 60.0  # rotate before the server closes the socket at 120 minutes
QUIET_FOR_ROTATION_S = 2.0


class AsrHandler(Protocol):
    """What the pipeline does with the listener's events (called on the event loop, no await)."""

    def on_speech_started(self) -> None: ...

    def on_speech_stopped(self) -> None: ...

    def on_transcript(self, text: str) -> None: ...


class AsrListener:
    """Owns the realtime ASR session and the microphone uplink."""

    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        api_key: str,
        engine: AudioEngine,
        status: Status,
        handler: AsrHandler,
        *,
        session_max_s: float = SESSION_MAX_S,
    ) -> None:
        self.settings = settings
        self.url = endpoints.realtime_ws(settings.pipeline.asr_model)
        self.api_key = api_key
        self.status = status
        self.handler = handler
        self.session_max_s = session_max_s
        self.uplink = MicUplink(engine, settings.audio.chunk_ms, settings.audio.echo)
        self.conn: RealtimeConnection | None = None
        self.user_speaking = False
        self.sessions = 0
        self._stopping = False
        self._loop = SessionLoop("speech recognition session", status, log,
                                 auth_prefix="speech recognition: ")
        self._last_voice_at = time.monotonic()
        self._closed = asyncio.Event()
        self._closed.set()

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff — until stopped or cancelled."""
        await self._loop.run(self.uplink, self._serve_one_session, self._on_disconnected,
                             lambda: self._stopping)

    async def _serve_one_session(self) -> None:
        conn = await RealtimeConnection.open(self.url, self.api_key, self.settings.dashscope.workspace)
        self._closed.clear()
        rotate: asyncio.Task[None] | None = None
        reader: asyncio.Task[None] | None = None
        proven: asyncio.Task[None] | None = None
        try:
            await conn.send(p.asr_session_update())
            self.conn = conn
            self.sessions += 1
            self.user_speaking = False
            self._loop.connected()
            self.status.connected = True
            proven = asyncio.create_task(self.status.clear_error_when_proven(), name="asr-proven")
            if self.status.state in (AgentState.STARTING, AgentState.RECONNECTING, AgentState.ERROR):
                self.status.set_state(AgentState.LISTENING, "connected")
            log.info("ASR session open (%s)", self.settings.pipeline.asr_model)
            self.uplink.attach(conn)
            started = time.monotonic()
            rotate = asyncio.create_task(self._rotate_when_due(started), name="asr-rotate")
            reader = asyncio.create_task(self._read(conn), name="asr-reader")
            await asyncio.wait({reader, rotate}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # a lost session raises here
                if not self._stopping:
                    raise ConnectFailed("the server closed the session")
                return
            log.info("rotating the ASR session after %.0f minutes", (time.monotonic() - started) / 60)
        finally:
            self.uplink.detach()
            self.conn = None
            for task in (rotate, reader, proven):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if rotate is not None and rotate.done() and not rotate.cancelled() and not self._stopping:
                await conn.finish()  # polite end of a rotated session; nobody reads it any more
            else:
                await conn.close()
            self._closed.set()

    async def _read(self, conn: RealtimeConnection) -> None:
        async for event in conn.events():
            if isinstance(event, p.SessionFinished):
                log.info("ASR session finished")
                return  # our own session.finish (stop) was acknowledged
            self._on_event(event)

    async def _rotate_when_due(self, started: float) -> None:
        """Resolve once the session is old enough and nobody has spoken for a moment."""
        while True:
            await asyncio.sleep(min(1.0, max(0.05, self.session_max_s / 10)))
            now = time.monotonic()
            quiet = not self.user_speaking and now - self._last_voice_at > QUIET_FOR_ROTATION_S
            if now - started >= self.session_max_s and quiet:
                return

    def _on_disconnected(self) -> None:
        self.conn = None
        self.user_speaking = False
        self.status.connected = False

    def _on_event(self, event: p.ServerEvent) -> None:
        if self._stopping:
            return  # what the server flushes in reply to session.finish starts no turn
        try:
            self._dispatch(event)
        except ConnectFailed:
            raise
        except Exception:  # a bug in a handler must not take the session (or the daemon) down
            log.exception("ASR event %s: handler failed", event.type)

    def _dispatch(self, event: p.ServerEvent) -> None:
        if isinstance(event, p.SpeechStarted):
            self.user_speaking = True
            self._last_voice_at = time.monotonic()
            self.handler.on_speech_started()
        elif isinstance(event, p.SpeechStopped):
            self.user_speaking = False
            self._last_voice_at = time.monotonic()
            self.handler.on_speech_stopped()
        elif isinstance(event, p.TranscriptionCompleted):
            self._last_voice_at = time.monotonic()
            self.handler.on_transcript(event.transcript)
        elif isinstance(event, p.TranscriptionFailed):
            log.warning("ASR could not transcribe an utterance: %s", event.message or "no reason given")
        elif isinstance(event, p.ErrorEvent):
            text = f"ASR server error {event.code or event.error_type}: {event.message}"
            if event.fatal:
                raise ConnectFailed(text)
            log.info("%s (tolerated)", text)

    async def stop(self, timeout: float = 2.0) -> None:
        """SIGTERM: stop sending audio, end the session politely (`session.finish`), bounded."""
        self._stopping = True
        self.uplink.stopping = True
        self.uplink.detach()
        conn = self.conn
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.send(p.session_finish())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closed.wait(), timeout)
