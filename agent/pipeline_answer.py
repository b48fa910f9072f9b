"""One pipeline production streamed: the LLM's answer into CosyVoice, the audio out (SPEC §5.4).

`agent.pipeline.PipelineMode` decides (through its core) *when* a turn or an announcement is
produced and cancels it on barge-in; `AnswerStreamer` is *how*: the LLM (or `ToolAnswer`) is cut
into speakable pieces (`speech_pieces`), each sent to a CosyVoice task as it arrives, and the
task's PCM is handed on as it comes (`on_audio`). A cancel lands in `finally`, which closes the
LLM's HTTP response and cancels the synthesis task. Kept apart so the driver reads as a driver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from agent.config import Settings
from agent.llm import LLMClient, LLMError, LLMStream
from agent.llm_tools import ToolAnswer
from agent.modes import Announcement, Turn
from agent.status import Status
from agent.textsplit import speech_pieces
from agent.tools.registry import ToolRegistry
from agent.tts.duration import speech_seconds
from agent.tts.errors import SynthesisError
from agent.tts.manager import SynthesisManager
from agent.tts.stream import SynthesisStream

log = logging.getLogger("voice-agent.pipeline")


class AnswerStreamer:
    """Streams turns and announcements into synthesis; see the module docstring."""

    def __init__(self, settings: Settings, llm: LLMClient, tts: SynthesisManager,
                 tools: ToolRegistry | None, status: Status, player: Any, *,
                 on_audio: Callable[[str, bytes], None], on_complete: Callable[[str], None]) -> None:
        """`on_audio(rid, pcm)`: audio of `rid` arrived; `on_complete(rid)`: its synthesis ended
        normally (all text sent was spoken). `player.expect` gets each answer's length so far."""
        self.settings = settings
        self.llm = llm
        self.tts = tts
        self.tools = tools
        self.status = status
        self.player = player
        self.on_audio = on_audio
        self.on_complete = on_complete

    async def turn(self, turn: Turn, voice: str, messages: list[dict[str, Any]]) -> None:
        """LLM → pieces → synthesis → player, recording the turn's latencies on the way."""
        speech: SynthesisStream | None = None
        answer: LLMStream | ToolAnswer | None = None
        feeder: asyncio.Task[None] | None = None
        try:
            speech = await self.tts.begin(voice, self.settings.pipeline.tts_model)
            answer = (ToolAnswer(self.llm, messages, self.tools) if self.tools is not None
                      else self.llm.stream(messages))
            if isinstance(answer, ToolAnswer):
                turn.tools = answer.exchange  # filled as calls happen, late results included
            feeder = asyncio.create_task(self._feed(answer, speech, turn), name="pipeline-feed")
            await self._play(speech, turn.response_id or "")
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

    async def announcement(self, ann: Announcement, voice: str) -> None:
        """`say`: the text verbatim, one synthesis task."""
        speech: SynthesisStream | None = None
        try:
            if self.settings.log.transcripts:
                log.info("say: %s", ann.text)
            speech = await self.tts.begin(voice, self.settings.pipeline.tts_model)
            await speech.send_text(ann.text)
            await speech.finish()
            await self._play(speech, ann.response_id or "")
        finally:
            if speech is not None and not speech.ended:
                await speech.cancel()

    async def _feed(self, answer: LLMStream | ToolAnswer, speech: SynthesisStream, turn: Turn) -> None:
        """Send pieces to synthesis while the LLM streams; end the synthesis either way."""
        try:
            async for piece in speech_pieces(answer):
                turn.pieces.append((time.monotonic(), piece))
                self.status.publish("transcript", role="assistant", text=turn.text_sent, final=False)
                await speech.send_text(piece)
                # The text sent bounds the answer's length: the player's hold for a slow source.
                self.player.expect(turn.response_id or "", speech_seconds(turn.text_sent))
        except LLMError:
            # What was sent is still spoken (finish); with nothing sent there is nothing to say.
            await (speech.finish() if turn.pieces else speech.cancel())
            raise
        except SynthesisError:
            await answer.aclose()  # `audio()` raises the same error to the turn
            return
        await speech.finish()

    async def _play(self, speech: SynthesisStream, rid: str) -> None:
        """Hand the synthesis PCM on as it arrives (the jitter buffer does the rest)."""
        async for pcm in speech.audio():
            self.on_audio(rid, pcm)
        # audio() raises on failure and is only cut short by cancel
        self.on_complete(rid)
