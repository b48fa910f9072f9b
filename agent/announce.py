"""`say` in omni mode: announcements spoken by CosyVoice through the same player.

Omni mode has no CosyVoice voice of its own (its enrolled voice belongs to the Omni model, and the
Omni model would answer, not repeat). So an announcement is synthesized by CosyVoice with a system
voice: `voice.preset` when it names a CosyVoice voice (`long…`, or a `cosyvoice-…` id), else
the model's default system voice (`capabilities.default_system_voice`), with `pipeline.tts_model`
(v3.5 has none: then `say` fails with a message naming voice.preset).

Choices, and why:

- **It interrupts nothing.** The text is synthesized completely first, then queued in the player
  as one finished response once no Omni answer is streaming (and the user is not speaking). The
  player plays responses one after another, so it follows the current answer. Queuing it whole
  (begin, feed, end with no await in between) is what makes this safe: an Omni response that
  starts later is queued behind it instead of cutting it short, and it cannot cut an Omni answer
  short either.
- **A socket per announcement.** Announcements are rare in omni mode; a warm CosyVoice socket would
  be refreshed every 50 s forever for nothing. Connecting costs a fraction of a second.
- **Barge-in applies**: user speech (or `interrupt`) flushes the player, announcement included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from agent.account import DashScopeAccount
from agent.audio.playout import Player
from agent.capabilities import cancel_supported
from agent.config import Settings
from agent.modes import Announcement, cosyvoice_system_voice, is_cosyvoice_voice, no_voice_message
from agent.status import Status
from agent.tts.errors import SynthesisError
from agent.tts.manager import SynthesisManager

log = logging.getLogger("voice-agent.say")

QUIET_POLL_S = 0.05
MAX_QUEUE_WAIT_S = 120.0  # give up waiting for a quiet moment after this (then play anyway)


def announcement_voice(settings: Settings) -> str | None:
    preset = settings.voice.preset
    return preset if is_cosyvoice_voice(preset) else cosyvoice_system_voice(settings.pipeline.tts_model)


class OmniAnnouncer:
    """Synthesizes `say` texts with CosyVoice and queues them after the current Omni answer."""

    def __init__(
        self,
        settings: Settings,
        account: DashScopeAccount,
        player: Player,
        status: Status,
        is_quiet: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.account = account
        self.player = player
        self.status = status
        self.is_quiet = is_quiet
        self.voice = announcement_voice(settings)
        self.model = settings.pipeline.tts_model
        self._order = asyncio.Lock()  # announcements keep their order
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def say(self, text: str) -> Announcement:
        """Queue `text`; returns at once. `done` is set when it has played (or failed)."""
        ann = Announcement(text)
        task = asyncio.create_task(self._run(ann), name="omni-say")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return ann

    async def _run(self, ann: Announcement) -> None:
        try:
            async with self._order:
                try:
                    pcm = await self._synthesize(ann.text)
                except SynthesisError as e:
                    ann.error = str(e)
                    self.status.error(f"say: synthesis failed: {e}")
                    log.warning("say failed: %s", e)
                    return
                await self._wait_quiet()
                self._seq += 1
                rid = ann.response_id = f"say-{self._seq}"
                if self.settings.log.transcripts:
                    log.info("say: %s", ann.text)
                # One synchronous block: the response is complete the moment it is queued.
                self.player.begin(rid)
                self.player.feed(rid, pcm)
                self.player.end(rid)
            st = await self.player.wait_finished(rid)
            ann.interrupted = st is not None and st.interrupted
        finally:
            ann.done.set()

    async def _synthesize(self, text: str) -> bytes:
        if self.voice is None:
            raise SynthesisError("NoVoice", no_voice_message(self.model))
        mgr = SynthesisManager(self.account, cancel_directive=cancel_supported(
            self.settings.dashscope.region, self.model))
        try:
            stream = await mgr.begin(self.voice, self.model)
            await stream.send_text(text)
            await stream.finish()
            return b"".join([chunk async for chunk in stream.audio()])
        finally:
            await mgr.close()

    async def _wait_quiet(self) -> None:
        deadline = time.monotonic() + MAX_QUEUE_WAIT_S
        while not self.is_quiet():
            if time.monotonic() > deadline:
                log.warning("say: no quiet moment for %.0f s; playing the announcement now",
                            MAX_QUEUE_WAIT_S)
                return
            await asyncio.sleep(QUIET_POLL_S)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
