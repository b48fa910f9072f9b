"""Omni mode: microphone → Qwen-Omni-Realtime session → jitter-buffered speaker (SPEC §5.3).

A thin driver. The conversation rules (turns, barge-in, late audio of a cancelled response,
heard-ms, latency, when rotating is safe) are the pure core `agent.conversation.omni`; the
session's life (connect → configure → serve → rotate → reconnect with backoff) is
`agent.realtime.session.SessionRunner`. This class feeds the core the server events, the clock
and the output's state, executes the actions it returns (player, socket, status, published
turns) and runs the two timers that wait for the output. The microphone is read by one
long-lived `MicUplink` task that keeps a short pre-roll while disconnected, so the first words
after a reconnect are not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from typing import Any

from agent.account import DashScopeAccount
from agent.announce import OmniAnnouncer
from agent.audio.engine import AudioEngine
from agent.config import Settings
from agent.conversation import actions as a
from agent.conversation import omni as c
from agent.conversation.seed import SessionSeed
from agent.listen.runtime import Listener, answer_audible, manual_turns
from agent.memory import Memory
from agent.modes import Announcement, Turn, publish_turn
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
from agent.realtime.verify import Report, SessionCheck
from agent.status import Status
from agent.tools.factory import model_takes_tools
from agent.tools.registry import ToolRegistry
from agent.tools.spec import ToolResult

log = logging.getLogger("voice-agent.omni")

ASK_CONFIRM_S = 3.0  # how long `ask` waits for the server to confirm the text item (R1)


class AskRefused(Exception):
    """The service did not take an `ask`'s text turn; the message says why (the control reply)."""

__all__ = ["OmniMode", "Turn"]  # Turn lives in agent.modes; re-exported for existing imports


class OmniMode:
    # --- the session strategy (agent.realtime.session.SessionStrategy) ---
    what = "realtime session"
    name = "realtime"
    auth_prefix = ""
    rotation_poll_s = 1.0
    close_code_in_error = True

    def __init__(
        self,
        settings: Settings,
        account: DashScopeAccount,
        engine: AudioEngine,
        status: Status,
        voice: str | None,
        *,
        realtime: RealtimeTimings = DEFAULT_REALTIME_TIMINGS,
        session: SessionTimings = DEFAULT_SESSION_TIMINGS,
        memory: Memory | None = None,
        tools: ToolRegistry | None = None,
        listen_engines: tuple[Any, ...] | None = None,
    ) -> None:
        """`realtime` and `session`: shorter timings in tests, else the defaults."""
        self.settings = settings
        self.realtime_timings = realtime
        self.account = account
        self.engine = engine
        self.status = status
        self.voice = voice
        self.conversation = c.OmniConversation(log_transcripts=settings.log.transcripts)
        self.turns: deque[Turn] = deque(maxlen=50)
        self.turn_listeners: list[asyncio.Queue[Turn]] = []
        self.listener = Listener(settings, engine.player, status, listen_engines)
        self.uplink = MicUplink(engine, settings.audio.chunk_ms, settings.audio.echo,
                                self.listener, on_commit=self._commit, on_interrupt=self.interrupt)
        self.announcer = OmniAnnouncer(settings, account, engine.player, status,
                                       self._quiet_for_announcement)
        self.runner = SessionRunner(self, status, log, timings=session)
        self.session_check = SessionCheck("realtime session")
        self.memory = memory  # remembered turns, carried into every new session
        self.seed = SessionSeed(settings.omni.instructions)
        self._forgotten = False  # `forget`: start a session without the old context when quiet
        if memory is not None:
            memory.on_forget.append(self._on_forget)
        self._timers: set[asyncio.Task[None]] = set()
        self._asks: dict[str, asyncio.Future[str | None]] = {}
        takes, why = model_takes_tools(settings)
        if tools is not None and not takes:
            log.warning("%s", why)
        self.tools = tools if takes else None
        self._declared: list[dict[str, Any]] | None = None  # the tools the open session was offered
        if self.tools is not None:
            self.tools.on_change.append(self._tools_changed)

    @property
    def conn(self) -> SessionConnection | None:
        return self.runner.conn

    @property
    def last_speech_started_at(self) -> float | None:
        return self.conversation.last_speech_started_at

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff — until cancelled or stopped."""
        try:
            await self.runner.run(self.uplink.run)
        finally:
            self.uplink.stopping = True

    # --- session strategy hooks ---------------------------------------------------------------

    async def open(self) -> SessionConnection:
        url = self.account.urls.realtime_ws(self.settings.omni.model)
        return await RealtimeConnection.open(url, self.account, self.realtime_timings)

    def configure_event(self) -> dict[str, Any]:
        return self.session_check.start(self._session_update(self.voice))

    def _session_update(self, voice: str | None) -> dict[str, Any]:
        self._declared = self._tool_decls()
        event = p.session_update(self._omni_settings(), voice, tools=self._declared)
        if self.memory is not None:  # the remembered turns, once the service refused them as items
            event["session"]["instructions"] = self.seed.instructions(self.memory.turns)
        return event

    def seed_events(self) -> list[dict[str, Any]]:
        """Sent right after `configure_event`: the remembered turns (agent.conversation.seed)."""
        return self.seed.opening(self.memory.turns, time.monotonic()) if self.memory is not None else []

    def _tool_decls(self) -> list[dict[str, Any]] | None:
        """What the model is offered now (MCP servers come and go: read at every session)."""
        if self.tools is None:
            return None
        return [spec.as_chat() for spec in self.tools.specs()] or None

    def _omni_settings(self) -> Any:
        """`omni`, with turn detection off when the daemon commits the turns (push-to-talk)."""
        omni = self.settings.omni
        if manual_turns(self.settings) and omni.turn_detection.type != "none":
            td = dataclasses.replace(omni.turn_detection, type="none")
            omni = dataclasses.replace(omni, turn_detection=td)
        return omni

    def _tools_changed(self) -> None:
        """An MCP server came up or went down: offer the open session the tools there are now
        (a server slower to start than the session would otherwise wait for the next one)."""
        if self.runner.conn is not None:
            self._start_timer(self._redeclare_tools())

    async def _redeclare_tools(self) -> None:
        conn = self.runner.conn
        if conn is None or self._tool_decls() == self._declared:
            return
        event = self._session_update(self.voice)
        names = [d["function"]["name"] for d in self._declared or []]
        log.info("tools changed; the session is now offered: %s", ", ".join(names) or "none")
        with contextlib.suppress(Exception):  # a session that just went away: the next one has them
            await conn.send(self.session_check.sent(event))

    def opened(self, conn: SessionConnection) -> None:
        self._apply_all(self.conversation.session_opened(time.monotonic(), self.status.last_error))
        log.info("realtime session open (%s, voice %s)", self.settings.omni.model, self.voice or "default")
        self.uplink.attach(conn)

    async def on_event(self, event: p.ServerEvent) -> None:
        if self.memory is not None:
            handled, sends = self.seed.on_event(event, self.memory.turns)
            if sends:
                log.info("the service refused remembered turns as items; "
                         "carrying them in the instructions instead")
                await self._execute([c.Send(self.session_check.sent(e), best_effort=True)
                                     for e in sends])
            if handled:
                return  # an answer to the seed's items: handled there
        consumed, reports = self.session_check.receive(event)
        self._report(reports)
        if consumed:
            return  # an error that answered our session.update: reported, nothing else to do
        now = time.monotonic()
        busy = False
        if isinstance(event, p.SpeechStarted):
            answering = self.conversation.registry.active_response is not None
            busy = answer_audible(self.engine.player, self.listener, now, answering)
        if isinstance(event, p.SpeechStarted):
            self.uplink.post(lambda fe, t: fe.speech_started(t))
        elif isinstance(event, p.SpeechStopped):
            self.uplink.post(lambda fe, t: fe.turn_ended(t))
        await self._execute(self.conversation.receive(event, time.monotonic(), output_busy=busy))

    def _report(self, reports: list[Report]) -> None:
        for r in reports:
            log.log(r.level, "%s", r.message)
            if r.surface:
                self.status.error(r.message)

    def _on_forget(self) -> None:
        self._forgotten = True

    def rotation_due(self, now: float) -> bool:
        activity = self.engine.player.activity  # the one "audible / quiet" signal
        quiet_since = activity.quiet_since(now)
        if quiet_since is None:  # speaking now, or never spoke
            quiet_since = now if activity.speaking(now) else float("-inf")
        if self.listener.in_turn:
            return False  # rotating would drop the turn's audio (pre-roll included)
        # After `forget` at once (when quiet): the service keeps a session's context, a new one forgets.
        max_age_s = 0.0 if self._forgotten else self.settings.omni.session_max_minutes * 60.0
        due = self.conversation.rotation_due(
            now, max_age_s=max_age_s,  # read live: tests shorten it
            output_busy=activity.busy(now), output_quiet_since=quiet_since)
        if due:
            self._forgotten = False
        return due

    def closed(self) -> None:
        self.uplink.detach()

    def disconnected(self) -> None:
        self.uplink.detach()
        self.seed.session_ended(time.monotonic())
        self._apply_all(self.conversation.session_lost())

    # --- executing the core's actions ---------------------------------------------------------

    async def _execute(self, actions: list[c.Action]) -> None:
        for action in actions:
            if isinstance(action, c.Send):
                conn = self.runner.conn
                if action.best_effort:
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            await conn.send(action.event)
                elif conn is None:
                    raise RuntimeError("not connected to the realtime service")
                else:
                    await conn.send(action.event)
            elif isinstance(action, c.RunTool):
                self._start_timer(self._run_tool(action))
            elif isinstance(action, a.Flush):
                # Silence first (the callback fades within one device period), then the server.
                await self._execute(self.conversation.flushed(self.engine.player.flush()))
            else:
                self._apply(action)

    def _apply_all(self, actions: list[c.Action]) -> None:
        for action in actions:
            self._apply(action)

    def _apply(self, action: c.Action) -> None:
        """Every action that needs no await (`Send` and `Flush` are `_execute`'s)."""
        player = self.engine.player
        if isinstance(action, a.Feed):
            player.feed(action.rid, action.pcm)
        elif isinstance(action, a.SetState):
            a.show_state(action, self.status)
        elif isinstance(action, a.Begin):
            player.begin(action.rid)
        elif isinstance(action, a.End):
            player.end(action.rid)
        elif isinstance(action, a.BargeIn):
            self.status.barge_ins += 1
        elif isinstance(action, c.CountTurn):
            self.status.turns += 1
        elif isinstance(action, c.RecordLatency):
            self.status.latency.add(action.ms)
        elif isinstance(action, c.SetHeardMs):
            self.status.heard_ms_last_interrupted = action.ms
        elif isinstance(action, c.ClearErrorIf):
            self.status.clear_error_if(action.stale)
        elif isinstance(action, c.RecordHeard):
            self._start_timer(self._record_heard(action.rid))
        elif isinstance(action, c.FinishTurn):
            self._start_timer(self._finish_turn(action.turn, action.rid))
        elif isinstance(action, c.Caption):
            self.status.publish("transcript", role=action.role, text=action.text, final=action.final)
        elif isinstance(action, c.PublishTurn):
            publish_turn(self.status.publish, action.turn)
            self.turns.append(action.turn)
            action.turn.done.set()
            for q in self.turn_listeners:
                q.put_nowait(action.turn)
            self.uplink.post(lambda fe, t: fe.answer_finished(t))
        elif isinstance(action, c.Log):
            log.info("%s", action.message)
        elif isinstance(action, c.Warn):
            log.warning("%s", action.message)
            self.status.error(action.message)
        elif isinstance(action, c.AskSettled):
            waiter = self._asks.get(action.event_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(action.error)
        elif isinstance(action, a.ErrorEarcon):
            if not self.runner.stopping:  # shutting down is no failure the user must hear of
                self.listener.earcon("error")
        elif isinstance(action, c.Fail):
            raise ConnectFailed(action.message)
        else:
            raise TypeError(f"{action!r} cannot be applied synchronously")

    def _start_timer(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def _run_tool(self, call: c.RunTool) -> None:
        """Run one call (the registry turns every failure into an error result), then hand the
        result to the core, which answers once all calls of the response are in."""
        if self.tools is None:
            result = ToolResult("error: no tools are available", True)
        else:
            result = await self.tools.call(call.name, call.arguments)
        try:
            await self._execute(self.conversation.tool_result(call.call_id, result.text))
        except (RuntimeError, OSError, ConnectFailed) as e:  # the session went away meanwhile
            log.info("tool result for %s not sent: %s", call.name, e)

    async def _record_heard(self, rid: str) -> None:
        """Once the flush has reached the output, record how much of the answer was heard."""
        st = await self.engine.player.wait_finished(rid)
        if st is None:
            return
        if st.output_end is not None:
            await asyncio.sleep(max(0.0, st.output_end - time.monotonic()))
        self._apply_all(self.conversation.heard(rid, st.heard_ms(time.monotonic())))

    async def _finish_turn(self, turn: Turn, rid: str) -> None:
        """Wait for the answer to leave the speaker, then let the core record and publish it."""
        st = await self.engine.player.wait_finished(rid)
        heard = None
        if st is not None and st.output_end is not None:
            heard = st.heard_ms(st.output_end)  # all of it is heard once the device drained
        self._apply_all(self.conversation.output_finished(
            turn, found=st is not None, interrupted=st is not None and st.interrupted,
            first_audible=None if st is None else st.first_audible, heard_ms=heard))

    # --- control ----------------------------------------------------------------------------

    async def ask(self, text: str) -> None:
        """A user turn given as text. Returns once the server confirmed the text item (the
        answer follows) or stayed silent for `ASK_CONFIRM_S` (the answer is asked for anyway);
        raises `AskRefused` with the server's reason when it refused the item, and then no
        response is requested."""
        if self.runner.conn is None:
            raise RuntimeError("not connected to the realtime service")
        event_id = p.new_event_id()
        waiter: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._asks[event_id] = waiter
        try:
            await self._execute(self.conversation.ask(text, time.monotonic(), event_id))
            try:
                error = await asyncio.wait_for(asyncio.shield(waiter), ASK_CONFIRM_S)
            except asyncio.TimeoutError:
                self._apply_all(self.conversation.ask_expired(event_id, ASK_CONFIRM_S))
                error = waiter.result() if waiter.done() else None
        finally:
            del self._asks[event_id]
        if error is not None:
            raise AskRefused(error)

    async def _commit(self, speech_end_at: float | None = None) -> None:
        """The front end ended a turn (push-to-talk, local end of turn): commit it and ask for
        the answer; the latency counts from `speech_end_at` when the end of speech is known."""
        if self.runner.conn is None:
            log.warning("push-to-talk: not connected; the turn is lost")
            return
        await self._execute(self.conversation.commit(speech_end_at or time.monotonic()))

    async def set_voice(self, voice: str | None) -> None:
        """Use another voice from now on (the next session, and this one if it is open). If the
        open session does not take it, `session_check` says so: it applies from the next one."""
        self.voice = voice
        conn = self.runner.conn
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.send(self.session_check.sent(self._session_update(voice)))

    async def interrupt(self) -> None:
        await self._execute(self.conversation.interrupt(output_busy=self.engine.player.activity.busy(time.monotonic())))

    async def say(self, text: str) -> Announcement:
        """Speak `text` verbatim with a CosyVoice system voice, after the current answer.

        The Omni model cannot repeat text verbatim (it answers), so announcements go through
        CosyVoice; see `agent.announce` for the voice and the queuing rules.
        """
        return await self.announcer.say(text)

    def _quiet_for_announcement(self) -> bool:
        return self.conversation.quiet_for_announcement(self.engine.player.current_response)

    async def stop(self, timeout: float = 2.0) -> None:
        """SIGTERM: stop sending audio and end the session politely (`session.finish`)."""
        self.runner.request_stop()
        self.uplink.stopping = True
        await self.announcer.close()
        await self.runner.stop(timeout)
