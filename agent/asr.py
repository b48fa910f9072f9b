"""Realtime ASR for pipeline mode: microphone → `qwen3-asr-flash-realtime` → speech events.

The same session discipline as omni mode (SPEC §5.3), because the same things go wrong: the
shared `agent.realtime.session.SessionRunner` loops connect → `session.update` (16 kHz PCM,
server VAD) → serve → on error wait with backoff → reconnect, with this listener as its strategy.
A refused key backs off for minutes and says so; a session that stayed up
`SessionTimings.stable_after_s` resets the backoff; the shared `MicUplink` keeps a pre-roll while
disconnected and applies the echo handling. Before the server's 120-minute cap the session is
rotated at a quiet moment (nobody speaking), so no utterance is cut in two.

The listener does not know about turns: it reports `speech_started` (barge-in), `speech_stopped`
(end of user speech, the latency origin) and final transcripts to an `AsrHandler`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from agent.account import DashScopeAccount
from agent.audio.engine import AudioEngine
from agent.config import Settings
from agent.listen.runtime import Listener, manual_turns
from agent.realtime import protocol as p
from agent.realtime.connection import (
    DEFAULT_REALTIME_TIMINGS,
    ConnectFailed,
    RealtimeConnection,
    RealtimeTimings,
)
from agent.realtime.session import (
    DEFAULT_SESSION_TIMINGS,
    SessionConnection,
    SessionRunner,
    SessionTimings,
)
from agent.realtime.uplink import MicUplink
from agent.realtime.verify import SessionCheck
from agent.status import AgentState, Status

log = logging.getLogger("voice-agent.asr")

SESSION_MAX_S = 100 * 60.0  # rotate before the server closes the socket at 120 minutes
QUIET_FOR_ROTATION_S = 2.0


class AsrHandler(Protocol):
    """What the pipeline does with the listener's events (called on the event loop, no await)."""

    def on_speech_started(self) -> None: ...

    def on_speech_stopped(self, at: float | None = None) -> None: ...

    def on_transcript(self, text: str) -> None: ...

    async def interrupt(self) -> None: ...


class AsrListener:
    """Owns the realtime ASR session and the microphone uplink; its session strategy too."""

    # --- the session strategy (agent.realtime.session.SessionStrategy) ---
    what = "speech recognition session"
    name = "ASR"
    auth_prefix = "speech recognition: "
    close_code_in_error = False

    def __init__(
        self,
        settings: Settings,
        account: DashScopeAccount,
        engine: AudioEngine,
        status: Status,
        handler: AsrHandler,
        *,
        session_max_s: float = SESSION_MAX_S,
        realtime: RealtimeTimings = DEFAULT_REALTIME_TIMINGS,
        session: SessionTimings = DEFAULT_SESSION_TIMINGS,
        listener: Listener | None = None,
    ) -> None:
        self.settings = settings
        self.url = account.urls.realtime_ws(settings.pipeline.asr_model)
        self.account = account
        self.status = status
        self.handler = handler
        self.session_max_s = session_max_s
        self.realtime_timings = realtime
        self.manual = manual_turns(settings)
        self.uplink = MicUplink(engine, settings.audio.chunk_ms, settings.audio.echo, listener,
                                on_commit=self._commit, on_interrupt=handler.interrupt)
        self.user_speaking = False
        self.sessions = 0
        self.runner = SessionRunner(self, status, log, timings=session)
        self.session_check = SessionCheck("ASR session")
        self._session_started = time.monotonic()
        self._last_voice_at = time.monotonic()

    @property
    def rotation_poll_s(self) -> float:
        return min(1.0, max(0.05, self.session_max_s / 10))

    @property
    def conn(self) -> SessionConnection | None:
        return self.runner.conn

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff — until stopped or cancelled."""
        try:
            await self.runner.run(self.uplink.run)
        finally:
            self.uplink.stopping = True

    # --- session strategy hooks ---------------------------------------------------------------

    async def open(self) -> SessionConnection:
        return await RealtimeConnection.open(self.url, self.account, self.realtime_timings)

    def configure_event(self) -> dict[str, Any]:
        return self.session_check.start(p.asr_session_update(manual=self.manual))

    def opened(self, conn: SessionConnection) -> None:
        self.sessions += 1
        self.user_speaking = False
        if self.status.state in (AgentState.STARTING, AgentState.RECONNECTING, AgentState.ERROR):
            self.status.set_state(AgentState.LISTENING, "connected")
        log.info("ASR session open (%s)", self.settings.pipeline.asr_model)
        self.uplink.attach(conn)
        self._session_started = time.monotonic()

    def rotation_due(self, now: float) -> bool:
        """The session is old enough and nobody has spoken for a moment."""
        listener = self.uplink.listener
        if listener is not None and listener.in_turn:
            return False  # rotating would drop the turn's audio (pre-roll included)
        quiet = not self.user_speaking and now - self._last_voice_at > QUIET_FOR_ROTATION_S
        return now - self._session_started >= self.session_max_s and quiet

    def closed(self) -> None:
        self.uplink.detach()

    def disconnected(self) -> None:
        self.user_speaking = False

    async def on_event(self, event: p.ServerEvent) -> None:
        consumed, reports = self.session_check.receive(event)
        for r in reports:
            log.log(r.level, "%s", r.message)
            if r.surface:
                self.status.error(r.message)
        if not consumed:
            self._on_event(event)

    def _on_event(self, event: p.ServerEvent) -> None:
        if self.runner.stopping:
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
            self.uplink.post(lambda fe, t: fe.speech_started(t))
            self.handler.on_speech_started()
        elif isinstance(event, p.SpeechStopped):
            self.user_speaking = False
            self._last_voice_at = time.monotonic()
            self.uplink.post(lambda fe, t: fe.turn_ended(t))
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

    async def _commit(self, speech_end_at: float | None = None) -> None:
        """Push-to-talk released or the local end of turn: the server transcribes what came;
        the latency counts from `speech_end_at` when the end of speech is known."""
        conn = self.runner.conn
        if conn is None:
            log.warning("push-to-talk: not connected; the turn is lost")
            return
        self._last_voice_at = time.monotonic()
        self.handler.on_speech_stopped(speech_end_at)
        await conn.send(p.audio_commit())

    async def stop(self, timeout: float = 2.0) -> None:
        """SIGTERM: stop sending audio, end the session politely (`session.finish`), bounded."""
        self.runner.request_stop()
        self.uplink.stopping = True
        self.uplink.detach()
        await self.runner.stop(timeout)
