"""Pipeline mode: realtime ASR → LLM stream → CosyVoice duplex synthesis → player (SPEC §5.4).

A **turn** starts with a final transcript (or `ask`). It streams the LLM's answer with the system
prompt and the last `history_turns` turns, cuts the deltas into speakable pieces
(`speech_pieces`) and sends each piece to a CosyVoice task *as it arrives* — so the first sentence
is spoken while the LLM is still writing — and feeds the task's PCM to the player under a response
id of its own. The CosyVoice socket is opened at start-up and reused (`SynthesisManager`).

**One voice at a time.** A lane (a FIFO lock) admits one synthesis at a time, because the
synthesis socket carries one task and the player plays responses in the order they begin. An
announcement (`say`) waits for the current answer's synthesis and plays after it; a turn waits for
a running announcement the same way. Nothing waits for playout: the player queues.

**Barge-in** (user speech while a turn is thinking or speaking, or while anything plays; or the
`interrupt` command): the player is flushed first (silence within one device period), then the
turn's task is cancelled, which closes the LLM's HTTP response, stops feeding text and cancels the
synthesis task; a running announcement is cancelled too. A new turn (a transcript, `ask`) cuts off
a turn still in progress the same way, without counting a barge-in: normally the user's speech
already did. Announcements are never cut off by a turn.

**History** holds what was actually said: the text sent to synthesis, or — when the answer was
cut off — an estimate of the part that was heard (`spoken_prefix`), marked with "…". A turn in
which nothing was said is left out (an unanswered user message would be followed by the next one).

**Staying alive**: a refused LLM key fails the turn and blocks further LLM requests for an
auth backoff (minutes), saying so in the status; 429/5xx/timeouts fail only the turn; a synthesis
failure ends the turn with what was played, and the synthesis manager reconnects for the next one.
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

from agent.asr import AsrListener
from agent.audio.engine import AudioEngine
from agent.backoff import Backoff
from agent.config import Settings
from agent.endpoints import Endpoints
from agent.llm import AuthError, Conversation, LLMClient, LLMError, LLMStream, ThrottledError
from agent.modes import DEFAULT_COSYVOICE_VOICE, Announcement, Turn
from agent.secrets import redact
from agent.status import AgentState, Status
from agent.textsplit import speech_pieces
from agent.tts.connection import SynthesisManager
from agent.tts.errors import SynthesisAuthError, SynthesisError
from agent.tts.stream import SynthesisStream

log = logging.getLogger("voice-agent.pipeline")

# Synthesis manager timings (module level so tests can shrink them with the emulator's).
TEXT_GAP_S = 15.0  # finish a task early after this long without text (server limit: 23 s)
IDLE_REFRESH_S = 50.0  # replace an idle socket before the server's 60 s close
SYNTHESIS_WATCH_S = 0.5  # how often the synthesis socket's health is copied into the status
LLM_AUTH_BACKOFF_S = (60.0, 600.0)
CHARS_PER_S = 14.0  # typical synthesized speech rate, for the heard-text estimate
BYTES_PER_MS = 48  # 24 kHz, 16-bit mono


def spoken_prefix(text: str, heard_ms: float, audio_ms: float, complete: bool) -> str:
    """Estimate the part of `text` the user heard before a barge-in.

    The audio received covers all of `text` if synthesis completed, else about `CHARS_PER_S`
    characters per second of it; the heard share of that audio is taken proportionally and cut
    back to a word boundary. "…" marks the answer as cut off for the LLM.
    """
    text = text.strip()
    if not text or heard_ms <= 0 or audio_ms <= 0:
        return ""
    covered = len(text) if complete else min(len(text), int(audio_ms / 1000 * CHARS_PER_S))
    n = int(covered * min(1.0, heard_ms / audio_ms))
    if n >= len(text):
        return text
    cut = text.rfind(" ", 0, n + 1)
    prefix = text[: cut if cut > 0 else n].rstrip(" ,;:")
    return prefix + "…" if prefix else ""


@dataclass
class _Progress:
    """What the player received for one response (survives the producing task's cancellation)."""

    audio_bytes: int = 0
    complete: bool = False  # the synthesis ended normally: all text was spoken


class PipelineMode:
    """ASR (or injected text) → turns → speech; see the module docstring."""

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
        self.engine = engine
        self.status = status
        self.voice = voice or DEFAULT_COSYVOICE_VOICE
        pl = settings.pipeline
        self.tts = SynthesisManager.from_settings(
            settings, api_key, text_gap_s=TEXT_GAP_S, idle_refresh_s=IDLE_REFRESH_S
        )
        self.llm = LLMClient(endpoints.generation, api_key, pl.llm_model,
                             workspace=settings.dashscope.workspace)
        self.conv = Conversation(pl.system_prompt, pl.history_turns)
        self.asr = (AsrListener(settings, endpoints, api_key, engine, status, self)
                    if pl.input == "mic" else None)
        self.turns: deque[Turn] = deque(maxlen=50)
        self.turn_listeners: list[asyncio.Queue[Turn]] = []
        self.last_speech_started_at: float | None = None
        self._lane = asyncio.Lock()
        self._lane_holder: asyncio.Task[None] | None = None
        self._turn_producer: asyncio.Task[None] | None = None
        self._current_turn: Turn | None = None  # until its answer has been played (or cut off)
        self._tasks: set[asyncio.Task[None]] = set()
        self._speech_end_at: float | None = None
        self._seq = 0
        self._llm_auth_backoff = Backoff(*LLM_AUTH_BACKOFF_S)
        self._llm_blocked_until = 0.0
        self._turn_error: str | None = None  # the status error a failed turn set, if any
        self._synthesis_error: str | None = None  # the status error the synthesis watch set
        self._stopping = False
        self._stopped = asyncio.Event()

    @property
    def idle_state(self) -> AgentState:
        return AgentState.LISTENING if self.asr is not None else AgentState.IDLE

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
        """Copy the synthesis socket's health into the status.

        The socket reconnects in the background, so without this an outage of CosyVoice alone
        (refused, 401/500 at the upgrade) would be invisible until a turn failed on it. In text
        mode there is no ASR session, so "connected" means the synthesis socket is up. A more
        specific error (a failed turn's) is not overwritten, and only our own is cleared.
        """
        while True:
            up = self.tts.connected
            if self.asr is None:
                self.status.connected = up
            problem = None if up else self.tts.last_error
            if problem:
                if self.tts.auth_backoff.attempt:  # the key was refused: say what to check
                    message = redact(f"speech synthesis: authentication failed: {problem}; check "
                                     "dashscope.api_key and region; retrying in minutes")
                else:
                    message = redact(f"speech synthesis unavailable: {problem}")
                if self.status.last_error in (None, self._synthesis_error) \
                        and self.status.last_error != message:
                    self.status.error(message)
                    self._synthesis_error = message
            elif self._synthesis_error is not None:
                if self.status.last_error == self._synthesis_error:
                    self.status.clear_error()
                self._synthesis_error = None
            await asyncio.sleep(SYNTHESIS_WATCH_S)

    async def stop(self, timeout: float = 2.0) -> None:
        """SIGTERM: end the ASR session (`session.finish`), cancel speech, close the sockets."""
        self._stopping = True
        self._stopped.set()
        for task in list(self._tasks):
            task.cancel()
        if self.asr is not None:
            await self.asr.stop(timeout)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.tts.close(), timeout)  # a running task: finish-task (cancel)
        await self.llm.close()

    async def set_voice(self, voice: str | None) -> None:
        """Speak with another voice from the next synthesis on."""
        self.voice = voice or DEFAULT_COSYVOICE_VOICE

    # --- ASR events (AsrHandler) -------------------------------------------------------------

    def on_speech_started(self) -> None:
        self.last_speech_started_at = time.monotonic()
        if not self._barge_in():
            self.status.set_state(AgentState.LISTENING)

    def on_speech_stopped(self) -> None:
        self._speech_end_at = time.monotonic()

    def on_transcript(self, text: str) -> None:
        text = text.strip()
        speech_end, self._speech_end_at = self._speech_end_at, None
        if not text or self._stopping:
            return
        if self.settings.log.transcripts:
            log.info("heard: %s", text)
        self._start_turn(text, speech_end or time.monotonic())

    # --- control -----------------------------------------------------------------------------

    async def ask(self, text: str) -> Turn:
        """A turn with `text` as the user's words; returns at once (`turn.done` when finished)."""
        if self._stopping:
            raise RuntimeError("stopping")
        return self._start_turn(text, time.monotonic())

    async def say(self, text: str) -> Announcement:
        """Speak `text` verbatim (no LLM), after whatever is being synthesized now."""
        if self._stopping:
            raise RuntimeError("stopping")
        ann = Announcement(text)
        self._spawn(self._announce(ann), "pipeline-say")
        return ann

    async def interrupt(self) -> None:
        self._barge_in()

    # --- cutting off -------------------------------------------------------------------------

    def _producing(self) -> bool:
        """A turn is thinking or synthesizing, or an announcement is being synthesized."""
        return any(t is not None and not t.done() for t in (self._turn_producer, self._lane_holder))

    def _in_progress(self) -> bool:
        return self._producing() or self.engine.player.busy

    def _cut_off(self) -> str | None:
        """Silence the output now, then cancel the current turn and announcement."""
        flushed = self.engine.player.flush()  # the fade starts at the next device period
        for task in {self._turn_producer, self._lane_holder}:
            if task is not None and not task.done():
                task.cancel()
        return flushed

    def _barge_in(self) -> bool:
        """User speech or `interrupt`: cut off whatever is in progress. False if nothing was."""
        if not self._in_progress():
            return False
        flushed = self._cut_off()
        self.status.barge_ins += 1
        self.status.set_state(self.idle_state)
        log.info("barge-in%s", f" ({flushed} was playing)" if flushed else " while thinking")
        return True

    # --- turns -------------------------------------------------------------------------------

    def _start_turn(self, text: str, speech_end_at: float) -> Turn:
        previous = self._current_turn
        if previous is not None and not previous.done.is_set():
            self._cut_off()  # a new question supersedes the answer to the old one
        self._seq += 1
        turn = Turn(heard=text, speech_end_at=speech_end_at, response_id=f"turn-{self._seq}")
        self._current_turn = turn
        progress = _Progress()
        producer = asyncio.create_task(self._produce_turn(turn, progress), name="pipeline-turn")
        self._turn_producer = producer
        self._spawn(self._turn(turn, producer, progress), "pipeline-turn-finish")
        self.status.set_state(AgentState.THINKING)
        return turn

    async def _turn(self, turn: Turn, producer: asyncio.Task[None], progress: _Progress) -> None:
        """Wait for the producer (never cancelled by barge-in itself), then wrap the turn up."""
        await self._wait_producer(producer)
        if producer.cancelled():
            turn.interrupted = True
        elif (exc := producer.exception()) is not None:
            self._turn_failed(turn, exc)
        await self._finish_turn(turn, progress)

    async def _produce_turn(self, turn: Turn, progress: _Progress) -> None:
        """LLM → pieces → synthesis → player. Cancelled on barge-in (cleanup in `finally`)."""
        now = time.monotonic()
        if now < self._llm_blocked_until:
            raise LLMUnavailable(f"LLM authentication failed earlier; check dashscope.api_key and "
                                 f"region; retrying in {self._llm_blocked_until - now:.0f} s")
        async with self._lane:
            self._lane_holder = asyncio.current_task()  # type: ignore[assignment]
            speech: SynthesisStream | None = None
            answer: LLMStream | None = None
            feeder: asyncio.Task[None] | None = None
            try:
                speech = await self.tts.begin(self.voice, self.settings.pipeline.tts_model)
                answer = self.llm.stream(self.conv.messages(turn.heard))
                feeder = asyncio.create_task(self._feed(answer, speech, turn), name="pipeline-feed")
                await self._play(speech, turn.response_id or "", progress)
                await feeder  # its LLM error (if any) fails the turn after the audio played
            finally:
                if feeder is not None and not feeder.done():
                    feeder.cancel()
                    await asyncio.gather(feeder, return_exceptions=True)
                if answer is not None:
                    await answer.aclose()
                    turn.llm_finished_at = answer.finished_at
                    if answer.first_token_latency is not None:
                        turn.llm_first_token_ms = answer.first_token_latency * 1000.0
                if speech is not None:
                    if not speech.ended:
                        await speech.cancel()
                    if speech.first_audio_at is not None and turn.pieces:
                        turn.synthesis_first_audio_ms = (speech.first_audio_at - turn.pieces[0][0]) * 1000.0
                self.engine.player.end(turn.response_id or "")
                self._lane_holder = None

    async def _feed(self, answer: LLMStream, speech: SynthesisStream, turn: Turn) -> None:
        """Send pieces to synthesis while the LLM streams; end the synthesis either way."""
        try:
            async for piece in speech_pieces(answer):
                turn.pieces.append((time.monotonic(), piece))
                await speech.send_text(piece)
        except LLMError:
            # What was sent is still spoken (finish); with nothing sent there is nothing to say.
            await (speech.finish() if turn.pieces else speech.cancel())
            raise
        except SynthesisError:
            await answer.aclose()  # `audio()` raises the same error to the turn
            return
        await speech.finish()

    async def _play(self, speech: SynthesisStream, rid: str, progress: _Progress) -> None:
        """Feed the synthesis PCM to the player as it arrives (the jitter buffer does the rest)."""
        player = self.engine.player
        async for pcm in speech.audio():
            if progress.audio_bytes == 0:
                player.begin(rid)
                self.status.set_state(AgentState.SPEAKING)
            progress.audio_bytes += len(pcm)
            player.feed(rid, pcm)
        progress.complete = True  # audio() raises on failure and is only cut short by cancel

    def _turn_failed(self, turn: Turn, exc: BaseException) -> None:
        if isinstance(exc, AuthError):
            delay = self._llm_auth_backoff.next_delay()
            self._llm_blocked_until = time.monotonic() + delay
            why = (f"LLM authentication failed: {exc}; check dashscope.api_key and region; "
                   f"retrying in {delay:.0f} s")
        elif isinstance(exc, ThrottledError):
            why = f"LLM throttled, this turn is dropped: {exc}"
        elif isinstance(exc, LLMUnavailable):
            why = f"{exc} (this turn is dropped)"
        elif isinstance(exc, LLMError):
            why = f"LLM failed, this turn is dropped: {exc}"
        elif isinstance(exc, SynthesisAuthError):
            why = f"synthesis authentication failed: {exc}; check dashscope.api_key and region"
        elif isinstance(exc, SynthesisError):
            why = f"synthesis failed, the answer was cut short: {exc}"
        else:
            why = f"turn failed: {exc.__class__.__name__}: {exc}"
            log.error("turn failed unexpectedly", exc_info=exc)
        turn.error = redact(why)
        self._turn_error = turn.error
        self.status.error(turn.error)
        log.warning("turn %s: %s", turn.response_id, turn.error)

    async def _finish_turn(self, turn: Turn, progress: _Progress) -> None:
        """Wait for the answer to leave the speaker; then latency, history, logs, listeners."""
        rid = turn.response_id or ""
        heard_ms = await self._wait_played(rid, turn)
        turn.answered = turn.text_sent.strip()
        audio_ms = progress.audio_bytes / BYTES_PER_MS
        if turn.interrupted:
            said = spoken_prefix(turn.text_sent, heard_ms or 0.0, audio_ms, progress.complete)
        elif not progress.complete:  # synthesis failed: all audio that arrived was played
            said = spoken_prefix(turn.text_sent, audio_ms, audio_ms, False)
        else:
            said = turn.answered
        if said:
            self.conv.add(turn.heard, said)
        if turn.error is None and self._turn_error is not None:
            if self.status.last_error == self._turn_error:
                self.status.clear_error()  # the LLM and synthesis work again
            self._turn_error = None
        if turn.error is None or progress.audio_bytes:
            self.status.turns += 1
        self._log_turn(turn)
        self._publish(turn)

    async def _wait_played(self, rid: str, item: Turn | Announcement) -> float | None:
        """Wait for `rid` to be played (or flushed); returns the heard ms if it was cut off."""
        st = await self.engine.player.wait_finished(rid)
        heard = None
        if st is not None and st.interrupted:
            item.interrupted = True
            if st.output_end is not None:
                await asyncio.sleep(max(0.0, st.output_end - time.monotonic()))
            heard = st.heard_ms(time.monotonic())
            self.status.heard_ms_last_interrupted = round(heard, 1)
            log.info("barge-in: %s was cut off after %.0f ms", rid, heard)
        if isinstance(item, Turn) and st is not None and st.first_audible is not None \
                and item.speech_end_at is not None and not item.interrupted:
            item.latency_ms = (st.first_audible - item.speech_end_at) * 1000.0
            self.status.latency.add(item.latency_ms)
        return heard

    def _log_turn(self, turn: Turn) -> None:
        def ms(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.0f} ms"

        outcome = "failed" if turn.error else "interrupted" if turn.interrupted else "answered"
        log.info("turn %s %s: latency %s (LLM first token %s, synthesis first audio %s), "
                 "%d pieces", turn.response_id, outcome, ms(turn.latency_ms),
                 ms(turn.llm_first_token_ms), ms(turn.synthesis_first_audio_ms), len(turn.pieces))
        if self.settings.log.transcripts and turn.answered:
            log.info("answered%s: %s", " (interrupted)" if turn.interrupted else "", turn.answered)

    def _publish(self, turn: Turn) -> None:
        self.turns.append(turn)
        turn.done.set()
        for q in self.turn_listeners:
            q.put_nowait(turn)
        if not self._producing() and self.status.state in (AgentState.THINKING, AgentState.SPEAKING):
            self.status.set_state(self.idle_state)

    # --- announcements -----------------------------------------------------------------------

    async def _announce(self, ann: Announcement) -> None:
        self._seq += 1
        ann.response_id = rid = f"say-{self._seq}"
        progress = _Progress()
        producer = asyncio.create_task(self._produce_announcement(ann, progress), name="pipeline-say-speak")
        await self._wait_producer(producer)
        try:
            if producer.cancelled():
                ann.interrupted = True
            elif (exc := producer.exception()) is not None:
                ann.error = redact(f"say: synthesis failed: {exc}")
                self.status.error(ann.error)
                log.warning("%s", ann.error)
            await self._wait_played(rid, ann)
        finally:
            ann.done.set()
            if not self._producing() and self.status.state is AgentState.SPEAKING:
                self.status.set_state(self.idle_state)

    async def _produce_announcement(self, ann: Announcement, progress: _Progress) -> None:
        async with self._lane:
            self._lane_holder = asyncio.current_task()  # type: ignore[assignment]
            speech: SynthesisStream | None = None
            try:
                if self.settings.log.transcripts:
                    log.info("say: %s", ann.text)
                speech = await self.tts.begin(self.voice, self.settings.pipeline.tts_model)
                await speech.send_text(ann.text)
                await speech.finish()
                await self._play(speech, ann.response_id or "", progress)
            finally:
                if speech is not None and not speech.ended:
                    await speech.cancel()
                self.engine.player.end(ann.response_id or "")
                self._lane_holder = None

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


class LLMUnavailable(Exception):
    """The LLM is not asked at all (auth backoff in force); the turn fails at once."""
