"""Pipeline mode: realtime ASR → LLM stream → CosyVoice duplex synthesis → player (SPEC §5.4).

A **turn** starts with a final transcript (or `ask`). It streams the LLM's answer with the system
prompt and the last `history_turns` turns, cuts the deltas into speakable pieces
(`speech_pieces`) and sends each piece to a CosyVoice task *as it arrives* — so the first sentence
is spoken while the LLM is still writing — and feeds the task's PCM to the player under a response
id of its own. The CosyVoice socket is opened at start-up and reused (`SynthesisManager`).

**The rules live in `agent.conversation.pipeline.PipelineConversation`** (a Sans-I/O core): when
a turn starts, barge-in, one voice at a time (turns and announcements are produced in order, one
synthesis at a time), history (what was actually said), heard-ms, latency and the state shown.
This class is its driver: it feeds the core events (ASR, control, synthesis progress, the player)
and executes the actions it returns: a task per production (`agent.pipeline_answer.AnswerStreamer`
streams the LLM into synthesis; the manager's lease is the one "one synthesis at a time" lock),
the player and the status.
Cancelling a production closes the LLM's HTTP response, stops feeding text and cancels the
synthesis task. Nothing waits for playout: the player queues.

**Staying alive**: a refused LLM key fails the turn and blocks further LLM requests for an
auth backoff (minutes), saying so in the status; 429/5xx/timeouts fail only the turn; a synthesis
failure ends the turn with what was played, and the synthesis manager reconnects for the next one.
A failure after part of the answer was played cuts it short rather than dropping it: the status
says so and after how many sentences (`turn_failure`), the turn counts, and the history marks the
answer cut off as a barge-in does.
With `pipeline.input: text` no ASR session is opened and the microphone is not read upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from agent.account import DashScopeAccount
from agent.asr import AsrListener
from agent.audio.engine import AudioEngine
from agent.backoff import Backoff
from agent.capabilities import cancel_supported
from agent.config import Settings
from agent.conversation.actions import (
    BargeIn,
    Begin,
    End,
    ErrorEarcon,
    Feed,
    Flush,
    SetState,
    show_state,
)
from agent.conversation.pipeline import (
    Action,
    AnnouncementDone,
    AwaitPlayout,
    Cancel,
    HeardMs,
    Latency,
    NewAnnouncement,
    NewTurn,
    Outcome,
    PipelineConversation,
    Produce,
    TurnDone,
)
from agent.listen.runtime import Listener, answer_audible
from agent.llm import AuthError, LLMClient
from agent.memory import Memory
from agent.modes import Announcement, Turn, cosyvoice_system_voice, no_voice_message, publish_turn
from agent.pipeline_answer import AnswerStreamer
from agent.pipeline_status import LLMUnavailable, SynthesisHealth, turn_failure
from agent.realtime.connection import DEFAULT_REALTIME_TIMINGS, RealtimeTimings
from agent.realtime.session import DEFAULT_SESSION_TIMINGS, SessionTimings
from agent.realtime.uplink import MicUplink
from agent.secrets import redact
from agent.status import AgentState, Status
from agent.tools.registry import ToolRegistry
from agent.tts.connection import DEFAULT_TTS_TIMINGS, TtsTimings
from agent.tts.errors import SynthesisError
from agent.tts.manager import SynthesisManager

log = logging.getLogger("voice-agent.pipeline")


@dataclass(frozen=True)
class PipelineTimings:
    """The pipeline driver's own timings (seconds); the synthesis socket's are `TtsTimings`."""

    synthesis_watch_s: float = 0.5  # how often the synthesis socket's health is copied into the status
    llm_auth_backoff_s: tuple[float, float] = (60.0, 600.0)  # a refused key: minutes, not seconds


DEFAULT_PIPELINE_TIMINGS = PipelineTimings()


class PipelineMode:
    """ASR (or injected text) → turns → speech; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        account: DashScopeAccount,
        engine: AudioEngine,
        status: Status,
        voice: str | None,
        *,
        timings: PipelineTimings = DEFAULT_PIPELINE_TIMINGS,
        tts: TtsTimings = DEFAULT_TTS_TIMINGS,
        realtime: RealtimeTimings = DEFAULT_REALTIME_TIMINGS,
        session: SessionTimings = DEFAULT_SESSION_TIMINGS,
        memory: Memory | None = None,
        tools: ToolRegistry | None = None,
        listen_engines: tuple[Any, ...] | None = None,
    ) -> None:
        """`timings`, `tts`, `realtime` and `session`: shorter ones in tests, else the defaults."""
        self.settings = settings
        self.timings = timings
        self.tools = tools
        self.engine = engine
        self.status = status
        self.voice = voice or cosyvoice_system_voice(settings.pipeline.tts_model)
        pl = settings.pipeline
        self.tts = SynthesisManager(account, timings=tts, cancel_directive=cancel_supported(
            settings.dashscope.region, settings.pipeline.tts_model))
        self.llm = LLMClient(account, pl.llm_model)
        self.listener = (Listener(settings, engine.player, status, listen_engines)
                         if pl.input == "mic" else None)
        self.asr = (AsrListener(settings, account, engine, status, self, listener=self.listener,
                                realtime=realtime, session=session)
                    if self.listener is not None else None)
        self.core = PipelineConversation(pl.system_prompt, pl.history_turns,
                                         idle_state=self.idle_state)
        self.streamer = AnswerStreamer(
            settings, self.llm, self.tts, tools, status, engine.player,
            on_audio=lambda rid, pcm: self._execute(self.core.audio(rid, pcm)),
            on_complete=lambda rid: self._execute(self.core.synthesis_complete(rid)))
        self.conv = self.core.history
        if memory is not None:  # what was said before a restart, and `forget` clears it too
            for t in memory.turns:
                self.conv.add(t.user, t.answer_with_notes())  # tool results in short too
            memory.on_forget.append(self.conv.clear)
        self.turns: deque[Turn] = deque(maxlen=50)
        self.turn_listeners: list[asyncio.Queue[Turn]] = []
        self._turns: dict[str, Turn] = {}  # by response id, until done
        self._announcements: dict[str, Announcement] = {}
        self._producers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._llm_auth_backoff = Backoff(*timings.llm_auth_backoff_s)
        self._llm_blocked_until = 0.0
        self._turn_error: str | None = None  # the status error a failed turn set, if any
        self._flushed: str | None = None  # what the last flush cut off (for the barge-in log)
        self._stopped = asyncio.Event()

    @property
    def uplink(self) -> MicUplink | None:
        """The microphone uplink (None with `pipeline.input: text`): listen / talk commands."""
        return self.asr.uplink if self.asr is not None else None

    @property
    def idle_state(self) -> AgentState:
        return AgentState.LISTENING if self.asr is not None else AgentState.IDLE

    @property
    def last_speech_started_at(self) -> float | None:
        return self.core.last_speech_started_at

    # --- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Open the synthesis socket ahead of time, then listen (or wait for injected text)."""
        await self.tts.start()
        log.info("pipeline mode: input %s, LLM %s, synthesis %s with voice %s",
                 self.settings.pipeline.input, self.settings.pipeline.llm_model,
                 self.settings.pipeline.tts_model, self.voice)
        watch = asyncio.create_task(self._watch_synthesis(), name="pipeline-synthesis-watch")
        try:
            if self.asr is not None:
                await self.asr.run()
                return
            self.status.set_state(AgentState.IDLE, "text input only")
            await self._stopped.wait()
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    async def _watch_synthesis(self) -> None:
        """Copy the synthesis socket's health into the status (`SynthesisHealth`)."""
        health = SynthesisHealth(self.tts, self.status, text_mode=self.asr is None)
        while True:
            health.check()
            await asyncio.sleep(self.timings.synthesis_watch_s)

    async def stop(self, timeout: float = 2.0) -> None:
        """SIGTERM: end the ASR session (`session.finish`), cancel speech, close the sockets."""
        self.core.stopping = True
        self._stopped.set()
        for task in [*self._tasks, *self._producers.values()]:
            task.cancel()
        if self.asr is not None:
            await self.asr.stop(timeout)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ann in self._announcements.values():
            ann.done.set()  # an announcement never waits past shutdown
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.tts.close(), timeout)  # a running task: finish-task (cancel)
        await self.llm.close()

    async def set_voice(self, voice: str | None) -> None:
        """Speak with another voice from the next synthesis on."""
        self.voice = voice or cosyvoice_system_voice(self.settings.pipeline.tts_model)

    def _speaking_voice(self) -> str:
        """The voice for the next synthesis; a SynthesisError naming voice.preset if there is none."""
        if self.voice is None:
            raise SynthesisError("NoVoice", no_voice_message(self.settings.pipeline.tts_model))
        return self.voice

    # --- ASR events (AsrHandler) -------------------------------------------------------------

    def on_speech_started(self) -> None:
        now = time.monotonic()
        self._execute(self.core.speech_started(now, answer_audible(
            self.engine.player, self.listener, now, self.core.producing())))

    def on_speech_stopped(self, at: float | None = None) -> None:
        self._execute(self.core.speech_stopped(at or time.monotonic()))

    def on_transcript(self, text: str) -> None:
        if text.strip() and not self.core.stopping:
            if self.settings.log.transcripts:
                log.info("heard: %s", text.strip())
            self.status.publish("transcript", role="user", text=text.strip(), final=True)
        actions = self.core.transcript(text, time.monotonic())
        if self.asr is not None and not any(isinstance(a, NewTurn) for a in actions):
            self.asr.uplink.post(lambda fe, t: fe.answer_finished(t))  # nothing to answer
        self._execute(actions)

    # --- control -----------------------------------------------------------------------------

    async def ask(self, text: str) -> Turn:
        """A turn with `text` as the user's words; returns at once (`turn.done` when finished)."""
        if self.core.stopping:
            raise RuntimeError("stopping")
        actions = self.core.ask(text, time.monotonic())
        rid = next(a.rid for a in actions if isinstance(a, NewTurn))
        self.status.publish("transcript", role="user", text=text, final=True)
        self._execute(actions)
        return self._turns[rid]

    async def say(self, text: str) -> Announcement:
        """Speak `text` verbatim (no LLM), after whatever is being synthesized now."""
        if self.core.stopping:
            raise RuntimeError("stopping")
        ann = Announcement(text)
        actions = self.core.say(text)
        ann.response_id = next(a.rid for a in actions if isinstance(a, NewAnnouncement))
        self._announcements[ann.response_id] = ann
        self._execute(actions)
        return ann

    async def interrupt(self) -> None:
        now = time.monotonic()
        self._execute(self.core.interrupt(now, self.engine.player.activity.busy(now)))

    # --- executing the core's actions ----------------------------------------------------------

    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            self._do(action)

    def _do(self, a: Action) -> None:  # noqa: C901 (one branch per action type)
        player = self.engine.player
        if isinstance(a, SetState):
            show_state(a, self.status)
        elif isinstance(a, Feed):
            player.feed(a.rid, a.pcm)
        elif isinstance(a, Begin):
            player.begin(a.rid)
        elif isinstance(a, End):
            player.end(a.rid)
        elif isinstance(a, Flush):
            self._flushed = player.flush()  # the fade starts at the next device period
        elif isinstance(a, Cancel):
            if (task := self._producers.get(a.rid)) is not None:
                task.cancel()
        elif isinstance(a, BargeIn):
            self.status.barge_ins += 1
            log.info("barge-in%s",
                     f" ({self._flushed} was playing)" if self._flushed else " while thinking")
        elif isinstance(a, NewTurn):
            self._turns[a.rid] = Turn(heard=a.heard, speech_end_at=a.speech_end_at,
                                      response_id=a.rid)
        elif isinstance(a, NewAnnouncement):
            pass  # `say` registered the caller's Announcement under this id
        elif isinstance(a, Produce):
            self._produce(a.rid)
        elif isinstance(a, AwaitPlayout):
            self._spawn(self._await_playout(a.rid), "pipeline-playout")
        elif isinstance(a, HeardMs):
            self.status.heard_ms_last_interrupted = round(a.ms, 1)
            if a.rid in self._turns:
                self._turns[a.rid].heard_ms = round(a.ms, 1)
            log.info("barge-in: %s was cut off after %.0f ms", a.rid, a.ms)
        elif isinstance(a, Latency):
            self._turns[a.rid].latency_ms = a.ms
            self.status.latency.add(a.ms)
        elif isinstance(a, TurnDone):
            self._turn_done(a)
        elif isinstance(a, ErrorEarcon):
            if self.listener is not None and not self.core.stopping:
                self.listener.earcon("error")  # the user asked and will get no (more) answer
        elif isinstance(a, AnnouncementDone):
            ann = self._announcements.pop(a.rid)
            ann.interrupted = a.interrupted
            ann.done.set()

    # --- productions ---------------------------------------------------------------------------

    def _produce(self, rid: str) -> None:
        """Start the task that produces `rid`; report its outcome to the core when it ends."""
        turn = self._turns.get(rid)
        if turn is not None:
            producer = asyncio.create_task(self._produce_turn(turn), name="pipeline-turn")
        else:
            producer = asyncio.create_task(self._produce_announcement(self._announcements[rid]),
                                           name="pipeline-say-speak")
        self._producers[rid] = producer
        self._spawn(self._after_production(rid, producer), "pipeline-turn-finish")

    async def _after_production(self, rid: str, producer: asyncio.Task[None]) -> None:
        """Wait for the producer (never cancelled by barge-in itself), then tell the core."""
        await self._wait_producer(producer)
        del self._producers[rid]
        turn = self._turns.get(rid)
        outcome: Outcome = "done"
        if producer.cancelled():
            outcome = "cancelled"
        elif (exc := producer.exception()) is not None:
            outcome = "failed"
            if turn is not None:
                self._turn_failed(turn, exc, voiced=self.core.voiced(rid))
            else:
                ann = self._announcements[rid]
                ann.error = redact(f"say: synthesis failed: {exc}")
                self.status.error(ann.error)
                log.warning("%s", ann.error)
        self._execute(self.core.produced(rid, outcome, turn.text_sent if turn else "",
                                         turn.tools if turn else None))

    async def _produce_turn(self, turn: Turn) -> None:
        """LLM → pieces → synthesis → player (`AnswerStreamer`); cancelled on barge-in."""
        now = time.monotonic()
        if now < self._llm_blocked_until:
            raise LLMUnavailable(f"LLM authentication failed earlier; check dashscope.api_key and "
                                 f"region; retrying in {self._llm_blocked_until - now:.0f} s")
        await self.streamer.turn(turn, self._speaking_voice(), self.conv.messages(turn.heard))

    async def _produce_announcement(self, ann: Announcement) -> None:
        await self.streamer.announcement(ann, self._speaking_voice())

    async def _await_playout(self, rid: str) -> None:
        """Wait for `rid` to be played (or flushed), then report how much of it was heard."""
        st = await self.engine.player.wait_finished(rid)
        flushed = st is not None and st.interrupted
        heard = None
        if st is not None and st.interrupted:
            if st.output_end is not None:
                await asyncio.sleep(max(0.0, st.output_end - time.monotonic()))
            heard = st.heard_ms(time.monotonic())
        self._execute(self.core.output_finished(
            rid, time.monotonic(), flushed=flushed, heard_ms=heard,
            first_audible=st.first_audible if st is not None else None))

    # --- wrapping a turn up --------------------------------------------------------------------

    def _turn_failed(self, turn: Turn, exc: BaseException, *, voiced: bool) -> None:
        """`voiced`: part of the answer was played before `exc`: cut short, not dropped."""
        delay = None
        if isinstance(exc, AuthError):
            delay = self._llm_auth_backoff.next_delay()
            self._llm_blocked_until = time.monotonic() + delay
        turn.error = turn_failure(exc, delay, spoken=turn.text_sent if voiced else "")
        self._turn_error = turn.error
        self.status.error(turn.error)
        log.warning("turn %s: %s", turn.response_id, turn.error)

    def _turn_done(self, done: TurnDone) -> None:
        """Errors cleared, counted, logged, published (history and latency came from the core)."""
        turn = self._turns.pop(done.rid)
        turn.answered = done.answered
        turn.interrupted = done.interrupted
        if turn.error is None and self._turn_error is not None:
            if self.status.last_error == self._turn_error:
                self.status.clear_error()  # the LLM and synthesis work again
            self._turn_error = None
        if done.count:
            self.status.turns += 1
        self._log_turn(turn)
        if turn.answered:
            self.status.publish("transcript", role="assistant", text=turn.answered, final=True)
        publish_turn(self.status.publish, turn)
        self.turns.append(turn)
        turn.done.set()
        for q in self.turn_listeners:
            q.put_nowait(turn)
        if self.asr is not None:
            self.asr.uplink.post(lambda fe, t: fe.answer_finished(t))

    def _log_turn(self, turn: Turn) -> None:
        def ms(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.0f} ms"

        outcome = "failed" if turn.error else "interrupted" if turn.interrupted else "answered"
        log.info("turn %s %s: latency %s (LLM first token %s, synthesis first audio %s), "
                 "%d pieces", turn.response_id, outcome, ms(turn.latency_ms),
                 ms(turn.llm_first_token_ms), ms(turn.synthesis_first_audio_ms), len(turn.pieces))
        if self.settings.log.transcripts and turn.answered:
            log.info("answered%s: %s", " (interrupted)" if turn.interrupted else "", turn.answered)

    @staticmethod
    async def _wait_producer(producer: asyncio.Task[None]) -> None:
        """Wait without inheriting its cancellation; on shutdown cancel it and let it clean up."""
        try:
            await asyncio.wait({producer})
        except asyncio.CancelledError:
            producer.cancel()
            await asyncio.wait({producer}, timeout=1.0)  # it closes the LLM stream and synthesis
            raise

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

