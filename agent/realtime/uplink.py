"""The microphone uplink into a realtime session (omni, or realtime ASR in pipeline mode).

One long-lived task is the microphone's only reader, whether or not a session is open:

- **Listening front end** (SPEC §10, agent/listen): every chunk goes through the `Listener`,
  which decides what goes upstream (everything in `always` mode, as before; speech only with
  the local VAD; nothing before the wake word; push-to-talk). The wake word is detected on the
  raw microphone, before the echo handling, so it stops an answer in every echo mode. The
  session stays connected while the uplink is closed (warm), so a turn opens without a handshake.
- **Pre-roll**: audio meant for a session while none is attached (a reconnect, a rotation) is
  kept, up to `PRE_ROLL_MS` plus the listening pre-roll, and sent first after (re)connecting, so
  the first words after a reconnect are not lost. While a listening turn is open (the wake word
  was heard, `listen`, push-to-talk) up to `TURN_KEEP_S` is kept instead: the user asked, and a
  late answer is better than a question cut in half.
- **Echo handling** (SPEC §5.7, agent/echo): every chunk passes through the filter of the
  configured `audio.echo` mode — `half_duplex` replaces it with digital silence while the
  assistant is audible and for a short tail after, `gate` lets it through during playback only
  when it is clearly louder than the expected echo, `aec` cancels the echo first. Silence rather
  than nothing keeps the server's audio timeline (and its VAD) in step with real time. Being the
  microphone's only reader, this task is also the one place that sees every chunk in order,
  which the echo canceller's continuous reference stream depends on. Right after a wake word
  (or a `listen`) the user is talking to us while the wake earcon plays: for that short guard
  the raw microphone goes upstream, so the echo handling does not drop the question.
- **Order**: the pre-roll is drained by this same task before the next live chunk, so audio
  reaches the server in capture order even when a session is attached mid-chunk.

The session owner calls `attach(conn)` once its session is configured and `detach()` when it is
gone; a failed send keeps the chunk in the pre-roll, and the owner notices the loss itself.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from agent.audio.activity import TAIL_S
from agent.audio.engine import AudioEngine
from agent.echo import make_echo_filter
from agent.listen.frontend import (
    Action,
    CloseUplink,
    Commit,
    Interrupt,
    OpenUplink,
    PlayEarcon,
    SendAudio,
    Wake,
)
from agent.listen.runtime import Command, Listener, answer_audible
from agent.realtime import protocol as p

log = logging.getLogger("voice-agent.echo")
listen_log = logging.getLogger("voice-agent.listen")

PRE_ROLL_MS = 600  # microphone audio kept while disconnected and sent first after reconnecting
TURN_KEEP_S = 10.0  # audio of an open listening turn kept while disconnected (320 KB)
MIN_COMMIT_BYTES = 3200  # 100 ms: the service refuses to commit less (and would answer nothing)
GUARD_S = 0.1  # extra raw-microphone time after the wake earcon and the echo tail


class EventSender(Protocol):
    async def send(self, event: dict[str, Any]) -> None: ...


class MicUplink:
    """Streams microphone chunks to the attached session; see the module docstring."""

    def __init__(
        self,
        engine: AudioEngine,
        chunk_ms: int,
        echo: str,
        listener: Listener | None = None,
        *,
        on_commit: Callable[[float | None], Awaitable[None]] | None = None,
        on_interrupt: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self.echo = echo
        self.echo_filter = make_echo_filter(echo, engine.player, chunk_ms)
        self.listener = listener
        self.on_commit = on_commit
        self.on_interrupt = on_interrupt
        self.stopping = False
        self._conn: EventSender | None = None
        preroll_ms = listener.settings.listen.preroll_ms if listener is not None else 0
        self._pending_cap = (PRE_ROLL_MS + preroll_ms) * 32  # bytes of 16 kHz int16
        self._turn_cap = max(self._pending_cap, int(TURN_KEEP_S * 32000))
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._guard_until = float("-inf")
        self._turn_bytes = 0  # audio sent since the uplink opened (a commit needs 100 ms)

    @property
    def attached(self) -> bool:
        return self._conn is not None

    def attach(self, conn: EventSender) -> None:
        """Send to `conn` from now on, starting with the pre-roll. A new session's buffer is
        empty: the local end-of-turn decider starts over too."""
        self._conn = conn
        if self.listener is not None and self.listener.end_turn is not None:
            self.listener.end_turn.reset()

    def detach(self) -> None:
        self._conn = None

    def post(self, command: Command) -> None:
        """A front-end input (service event, control command), applied before the next chunk."""
        if self.listener is not None:
            self.listener.post(command)

    async def run(self) -> None:
        """Read the microphone until stopped or the engine closes it."""
        try:
            await self._run()
        finally:
            self.echo_filter.close()
            if self.listener is not None:
                self.listener.close()
            if self.echo != "none":
                log.info("echo handling: %s", self.echo_filter.summary())

    async def _run(self) -> None:
        listener = self.listener
        if listener is not None:
            for action in listener.start():
                await self._do(action, time.monotonic())
        activity = self.engine.player.activity
        async for chunk, t_end in self.engine.mic.frames():
            if self.stopping:
                return
            upstream = await self.echo_filter.process(chunk, t_end)
            if listener is None:
                await self._send(upstream)
                continue
            now = time.monotonic()
            if self.echo != "none" and now < self._guard_until:
                upstream = chunk  # the user speaks right after the wake sound: keep every word
                self.echo_filter.user_present()  # ... and past the guard, while they go on
            actions = listener.chunk(chunk, upstream, t_end, activity.busy(now))
            if listener.end_turn is not None:  # listen.end_of_turn: local
                sent = b"".join(a.pcm for a in actions if isinstance(a, SendAudio))
                audible = answer_audible(self.engine.player, listener, now, False)
                actions += listener.end_turn.chunk(listener.frontend, upstream, t_end, now, audible, sent)
            for action in actions:
                await self._do(action, now)

    async def _do(self, action: Action, now: float) -> None:
        if isinstance(action, SendAudio):
            await self._send(action.pcm)
        elif isinstance(action, OpenUplink):
            listen_log.debug("uplink open")
            self._turn_bytes = 0
            assert self.listener is not None
            self.listener.uplink_changed(True)
        elif isinstance(action, CloseUplink):
            listen_log.debug("uplink closed (%s)", action.reason)
            self._drop_pending()
            assert self.listener is not None
            if self.listener.end_turn is not None:
                self.listener.end_turn.reset()
            self.listener.uplink_changed(False)  # a turn that ended while disconnected must not start later
        elif isinstance(action, Commit):
            if self._turn_bytes < MIN_COMMIT_BYTES:
                listen_log.info("push-to-talk: released after %d ms: nothing to answer",
                                self._turn_bytes // 32)
            elif self.on_commit is not None:
                self._turn_bytes = 0  # the uplink may stay open (always mode): the next turn counts anew
                await self.on_commit(action.speech_end_at)
        elif isinstance(action, Interrupt):
            listen_log.info("interrupting the answer")
            if self.listener is not None and self.listener.end_turn is not None:
                self.listener.end_turn.reset()
            if self.on_interrupt is not None:
                await self.on_interrupt()
        else:
            assert self.listener is not None
            self.listener.side_effects(action, now)
            latency = self.engine.player.latency
            if isinstance(action, Wake):
                self._guard_until = max(self._guard_until, now + latency + TAIL_S + GUARD_S)
            elif isinstance(action, PlayEarcon) and action.kind == "wake":
                until = self.listener.earcon_until + latency + TAIL_S + GUARD_S
                self._guard_until = max(self._guard_until, until)

    async def _send(self, pcm: bytes) -> None:
        self._turn_bytes += len(pcm)
        conn = self._conn
        if conn is None:
            self._keep(pcm)
            return
        try:
            while self._pending:
                await conn.send(p.audio_append(self._pending[0]))
                self._pending_bytes -= len(self._pending.popleft())
            await conn.send(p.audio_append(pcm))
        except Exception:  # the session owner notices the loss and reconnects
            self._keep(pcm)

    def _keep(self, pcm: bytes) -> None:
        """Keep `pcm` for the next session; the oldest audio goes first beyond the cap."""
        self._pending.append(pcm)
        self._pending_bytes += len(pcm)
        in_turn = self.listener is not None and self.listener.in_turn
        cap = self._turn_cap if in_turn else self._pending_cap
        while self._pending_bytes > cap and self._pending:
            first = self._pending.popleft()
            excess = self._pending_bytes - cap
            excess += excess & 1
            if len(first) > excess:
                self._pending.appendleft(first[excess:])
                self._pending_bytes -= excess
            else:
                self._pending_bytes -= len(first)

    def _drop_pending(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0
