"""Omni mode: microphone → Qwen-Omni-Realtime session → jitter-buffered speaker (SPEC §5.3).

One task owns the session and loops connect → run → on error wait → reconnect. While connected,
an uplink task streams microphone chunks and the downlink loop turns server events into playout,
barge-in, transcripts and latency figures. The microphone is read by one long-lived task that
keeps a short pre-roll while disconnected, so the first words after a reconnect are not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from agent.announce import OmniAnnouncer
from agent.audio.engine import AudioEngine
from agent.config import Settings
from agent.endpoints import Endpoints
from agent.modes import Announcement, Turn
from agent.realtime import protocol as p
from agent.realtime.connection import ConnectFailed, RealtimeConnection
from agent.realtime.sessionloop import SessionLoop
from agent.status import AgentState, Status
from agent.uplink import MicUplink

log = logging.getLogger("voice-agent.omni")

__all__ = ["OmniMode", "Turn"]  # Turn lives in agent.modes; re-exported for existing imports


class OmniMode:
    def __init__(
        self,
        settings: Settings,
        endpoints: Endpoints,
        api_key: str,
        engine: AudioEngine,
        status: Status,
        voice: str | None,
    ) -> None:
        self.settings = settings
        self.endpoints = endpoints
        self.api_key = api_key
        self.engine = engine
        self.status = status
        self.voice = voice
        self.state = p.RealtimeState()
        self.conn: RealtimeConnection | None = None
        self.turns: deque[Turn] = deque(maxlen=50)
        self.turn_listeners: list[asyncio.Queue[Turn]] = []
        self.uplink = MicUplink(engine, settings.audio.chunk_ms, settings.audio.echo)
        self.announcer = OmniAnnouncer(settings, endpoints, api_key, engine.player, status,
                                       self._quiet_for_announcement)
        self._current: Turn | None = None
        self._by_response: dict[str, Turn] = {}
        self._stopping = False
        self._loop = SessionLoop("realtime session", self.status, log)
        self._session_started = 0.0
        self._stale_error: str | None = None  # the error shown when the session (re)connected
        self.last_speech_started_at: float | None = None
        self._session_closed = asyncio.Event()
        self._session_closed.set()

    # --- the session task -------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff — until cancelled or stopped."""
        await self._loop.run(self.uplink, self._serve_one_session, self._on_disconnected,
                             lambda: self._stopping)

    async def _serve_one_session(self) -> None:
        url = self.endpoints.realtime_ws(self.settings.omni.model)
        conn = await RealtimeConnection.open(url, self.api_key, self.settings.dashscope.workspace)
        self.state.reset()
        await conn.send(p.session_update(self.settings.omni, self.voice))
        self.conn = conn
        self._session_started = time.monotonic()
        self._loop.connected()
        self.status.connected = True
        self._stale_error = self.status.last_error
        self.status.set_state(AgentState.LISTENING, "connected")
        log.info("realtime session open (%s, voice %s)", self.settings.omni.model, self.voice or "default")
        self.uplink.attach(conn)  # the pre-roll goes first: words spoken during the outage count
        # The reader and the rotation timer race: rotation must not wait for the next server
        # event (a quiet session sends none), and a session the *server* ended — even cleanly —
        # is a loss that goes through the backoff, never an instant reconnect (a server that
        # closes every session at once would otherwise be hammered in a tight loop).
        rotate = asyncio.create_task(self._rotate_when_due(), name="omni-rotate")
        reader = asyncio.create_task(self._read(conn), name="omni-reader")
        proven = asyncio.create_task(self.status.clear_error_when_proven(), name="omni-proven")
        self._session_closed.clear()
        rotated = False
        try:
            await asyncio.wait({reader, rotate}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # a lost session raises here
            else:
                rotated = not self._stopping
        finally:
            for task in (rotate, reader, proven):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            self.uplink.detach()
            self.conn = None
            if rotated:
                await conn.finish()  # nobody else reads this socket any more
            else:
                await conn.close()
            self._session_closed.set()
        if not self._stopping and not rotated:
            code, reason = conn.ws.close_code, conn.ws.close_reason
            raise ConnectFailed(f"the server closed the session ({code} {reason or ''})".replace(" )", ")"))

    async def _read(self, conn: RealtimeConnection) -> None:
        """The socket's only reader while the session is served."""
        async for event in conn.events():
            if isinstance(event, p.SessionFinished):
                log.info("realtime session finished")
                return  # our own session.finish (stop) was acknowledged
            await self._on_event(self.state.receive(event))

    async def _rotate_when_due(self) -> None:
        """Resolve once the session is old enough and nobody is speaking (the loop then rotates)."""
        limit = self.settings.omni.session_max_minutes * 60.0
        while True:
            await asyncio.sleep(1.0)
            age = time.monotonic() - self._session_started
            quiet = (not self.state.user_speaking and not self.state.response_in_progress
                     and not self.engine.player.busy and time.monotonic() - self.uplink.quiet_since > 2.0)
            if age >= limit and quiet:
                log.info("rotating the realtime session after %.0f minutes", age / 60)
                return

    def _on_disconnected(self) -> None:
        self.uplink.detach()
        self.conn = None
        self.status.connected = False
        if self.state.active_response:
            self.engine.player.end(self.state.active_response)

    # --- downlink ---------------------------------------------------------------------------

    async def _on_event(self, event: p.ServerEvent) -> None:
        player = self.engine.player
        if isinstance(event, p.AudioDelta):
            if not self.state.is_dropped(event.response_id):
                player.feed(event.response_id, event.pcm)
                if self.status.state is not AgentState.SPEAKING:
                    self.status.set_state(AgentState.SPEAKING)
        elif isinstance(event, p.SpeechStarted):
            self.last_speech_started_at = time.monotonic()
            await self._on_speech_started()
        elif isinstance(event, p.SpeechStopped):
            turn = self._new_turn()
            turn.speech_end_at = time.monotonic()
            self.status.set_state(AgentState.THINKING)
        elif isinstance(event, p.TranscriptionCompleted):
            turn = self._current or self._new_turn()
            turn.heard = event.transcript
            if self.settings.log.transcripts:
                log.info("heard: %s", event.transcript)
        elif isinstance(event, p.ResponseCreated):
            turn = self._current or self._new_turn()
            turn.response_id = event.response_id
            self._by_response[event.response_id] = turn
            player.begin(event.response_id)
        elif isinstance(event, p.TranscriptDelta):
            turn = self._by_response.get(event.response_id)
            if turn is not None and not self.state.is_dropped(event.response_id):
                turn.answered += event.delta
        elif isinstance(event, p.TranscriptDone):
            turn = self._by_response.get(event.response_id)
            if turn is not None and event.transcript:
                turn.answered = event.transcript
        elif isinstance(event, p.ResponseDone):
            await self._on_response_done(event)
        elif isinstance(event, p.ErrorEvent):
            self._on_error(event)

    async def _on_speech_started(self) -> None:
        player = self.engine.player
        self.status.set_state(AgentState.LISTENING)
        rid = self.state.active_response
        if rid is None and not player.busy:
            return
        # Barge-in: silence first (the callback fades within one device period), then tell the
        # server; deltas still in flight for this response are dropped by id.
        flushed = player.flush()
        interrupted = rid or flushed
        cancel = self.state.cancel()
        self.state.drop(interrupted)
        self.status.barge_ins += 1
        turn = self._by_response.get(interrupted or "")
        if turn is not None:
            turn.interrupted = True
        if self.conn is not None:
            for ev in cancel:
                with contextlib.suppress(Exception):
                    await self.conn.send(ev)
        if interrupted:
            asyncio.get_running_loop().create_task(self._record_heard(interrupted))

    async def _record_heard(self, rid: str) -> None:
        """Once the flush has reached the output, record how much of the answer was heard."""
        st = await self.engine.player.wait_finished(rid)
        if st is None:
            return
        if st.output_end is not None:
            await asyncio.sleep(max(0.0, st.output_end - time.monotonic()))
        heard = st.heard_ms(time.monotonic())
        self.status.heard_ms_last_interrupted = round(heard, 1)
        log.info("barge-in: the user interrupted after %.0f ms of the answer", heard)

    async def _on_response_done(self, event: p.ResponseDone) -> None:
        rid = event.response_id
        self.engine.player.end(rid)
        turn = self._by_response.pop(rid, None)
        if turn is None:
            return
        if event.status != "completed":
            turn.interrupted = True
        else:
            self.status.clear_error_if(self._stale_error)  # an answer proves the session works
        self.status.turns += 1
        if self.settings.log.transcripts and turn.answered:
            log.info("answered%s: %s", " (interrupted)" if turn.interrupted else "", turn.answered)
        asyncio.get_running_loop().create_task(self._finish_turn(turn, rid))
        if self._current is turn:
            self._current = None

    async def _finish_turn(self, turn: Turn, rid: str) -> None:
        """Wait for the answer to leave the speaker, then record latency and publish the turn."""
        st = await self.engine.player.wait_finished(rid)
        if st is not None and st.interrupted:
            turn.interrupted = True  # flushed at the output, even if the server had finished
        if st is not None and st.first_audible is not None and turn.speech_end_at is not None:
            turn.latency_ms = (st.first_audible - turn.speech_end_at) * 1000.0
            self.status.latency.add(turn.latency_ms)
        if not self.state.response_in_progress and not self.state.user_speaking:
            self.status.set_state(AgentState.LISTENING)
        self.turns.append(turn)
        turn.done.set()
        for q in self.turn_listeners:
            q.put_nowait(turn)

    def _new_turn(self) -> Turn:
        turn = Turn()
        self._current = turn
        return turn

    def _on_error(self, event: p.ErrorEvent) -> None:
        text = f"server error {event.code or event.error_type}: {event.message}"
        if event.fatal:
            raise ConnectFailed(text)
        # e.g. response.cancel raced with the response's natural end: harmless.
        log.info("%s (tolerated)", text)

    # --- control ----------------------------------------------------------------------------

    async def ask(self, text: str) -> None:
        """A user turn given as text: a text item plus `response.create`."""
        conn = self.conn
        if conn is None:
            raise RuntimeError("not connected to the realtime service")
        turn = self._new_turn()
        turn.heard = text
        turn.speech_end_at = time.monotonic()
        await conn.send(p.user_text(text))
        await conn.send(p.response_create())

    async def set_voice(self, voice: str | None) -> None:
        """Use another voice from now on (the next session, and this one if it is open)."""
        self.voice = voice
        conn = self.conn
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.send(p.session_update(self.settings.omni, voice))

    async def interrupt(self) -> None:
        await self._on_speech_started()

    async def say(self, text: str) -> Announcement:
        """Speak `text` verbatim with a CosyVoice system voice, after the current answer.

        The Omni model cannot repeat text verbatim (it answers), so announcements go through
        CosyVoice; see `agent.announce` for the voice and the queuing rules.
        """
        return await self.announcer.say(text)

    def _quiet_for_announcement(self) -> bool:
        """No Omni answer is streaming into the player and the user is not speaking."""
        return (not self.state.response_in_progress and not self.state.user_speaking
                and self.engine.player.current_response is None)

    async def stop(self, timeout: float = 2.0) -> None:
        """SIGTERM: stop sending audio and end the session politely (`session.finish`).

        The session task stays the socket's only reader: it sees `session.finished` (or the
        close) and exits; we only wait for that, bounded, so shutdown stays under 5 s.
        """
        self._stopping = True
        self.uplink.stopping = True
        await self.announcer.close()
        conn = self.conn
        if conn is None:
            return
        with contextlib.suppress(Exception):
            await conn.send(p.session_finish())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._session_closed.wait(), timeout)
