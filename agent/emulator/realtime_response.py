"""One assistant response on the emulated realtime endpoint, streamed like the cloud does it.

Event chain (reference §5.5): response.created → output_item.added → content_part.added →
interleaved audio_transcript.delta / audio.delta (base64 PCM, `realtime_chunk_ms` chunks, paced at
`realtime_speed`× real time after `realtime_first_delta_s`) → audio_transcript.done → audio.done →
content_part.done → output_item.done → response.done. Text-only sessions get response.text.*.

A response can be stopped at any moment (barge-in or `response.cancel`): `cancel()` enqueues the
remaining `*.done` events and a `response.done` with status `cancelled` synchronously, so nothing
of the stopped response can follow them. The status string for interrupted responses is not
documented by DashScope (reference §8.2: docs list completed/failed/in_progress/incomplete); the
emulator uses OpenAI's `cancelled` with `status_details.reason` = `turn_detected` (barge-in) or
`client_cancelled` (response.cancel). The `response_failed` fault (`failed`) ends a response
after its first chunk with status `failed` and `status_details` = `RESPONSE_FAILED_DETAILS`.
"""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from agent.emulator.answers import tokens_of
from agent.emulator.context import EmulatorOptions
from agent.emulator.faults import RESPONSE_FAILED_DETAILS
from agent.emulator.realtime_session import new_id, settled
from agent.emulator.speech import synthesize
from agent.emulator.ws_outbox import Outbox

INPUT_AUDIO_TOKENS_PER_S = 25.0
OUTPUT_AUDIO_TOKENS_PER_S = 12.5


@dataclass
class ResponsePlan:
    """What to say and how (decided by the session from the user's turn)."""

    answer: str
    modalities: list[str]
    voice: str
    out_rate: int = 24000
    output_audio_format: str = "pcm"
    input_audio_ms: int = 0
    input_text: str = ""
    instructions: str = ""


class ResponseStream:
    """Streams one response through the outbox; `cancel()` ends it early."""

    def __init__(
        self,
        outbox: Outbox,
        options: EmulatorOptions,
        conversation_id: str,
        plan: ResponsePlan,
        on_finished: Callable[[ResponseStream], None],
        answer: Awaitable[str] | None = None,
        failed: bool = False,
    ) -> None:
        """`failed`: the service fails this response after its first chunk (a fault)."""
        self.id = new_id("resp")
        self.item_id = new_id("item")
        self.plan = plan
        self.status = "in_progress"
        self._outbox = outbox
        self._options = options
        self._conversation_id = conversation_id
        self._on_finished = on_finished
        self._audio = "audio" in plan.modalities
        self._text_sent = ""
        self._words_sent = 0
        self._audio_samples_sent = 0
        self._finished = False
        self._fail = failed
        self._task: asyncio.Task[None] | None = None
        # the answer may still be being worked out (the user's audio is being recognized)
        self._answer = asyncio.ensure_future(answer) if answer is not None else None

    @property
    def active(self) -> bool:
        return not self._finished

    @property
    def transcript_sent(self) -> str:
        return self._text_sent

    def start(self) -> None:
        self._send_start()
        self._task = asyncio.create_task(self._stream(), name=f"emulator-{self.id}")

    def cancel(self, reason: str) -> bool:
        """Stop now; True if the response was still running."""
        if self._finished:
            return False
        if self._task is not None:
            self._task.cancel()
        if self._answer is not None:
            self._answer.cancel()
        self._finish("cancelled", {"type": "cancelled", "reason": reason})
        return True

    async def wait(self) -> None:
        await settled(self._task)

    # --- streaming ---

    async def _stream(self) -> None:
        opts = self._options
        if self._answer is not None:
            self.plan.answer = await self._answer
        pcm = np.zeros(0, dtype=np.int16)
        if self._audio:
            pcm = await asyncio.to_thread(synthesize, self.plan.answer, self.plan.out_rate)
        loop = asyncio.get_running_loop()
        start = loop.time() + max(0.0, opts.realtime_first_delta_s)
        chunk = max(1, self.plan.out_rate * max(1, opts.realtime_chunk_ms) // 1000)
        interval = (chunk / self.plan.out_rate) / max(opts.realtime_speed, 1e-6)
        words = tokens_of(self.plan.answer)
        steps = math.ceil(pcm.size / chunk) if self._audio else len(words)
        first = True
        for k in range(steps):
            await _sleep_until(loop, start + k * interval)
            if self._finished:
                return
            if self._fail and k == 1:
                self._finish("failed", RESPONSE_FAILED_DETAILS)
                return
            if first:
                self._outbox.mark_natural_point()
                first = False
            # transcript text runs slightly ahead of the audio it describes
            due_words = len(words) if k == steps - 1 else math.ceil((k + 1) * len(words) / steps)
            self._send_words(words, due_words)
            if self._audio:
                part = pcm[k * chunk : (k + 1) * chunk]
                self._audio_samples_sent += part.size
                self._event(
                    "response.audio.delta",
                    delta=base64.b64encode(part.astype("<i2").tobytes()).decode("ascii"),
                )
        self._send_words(words, len(words))
        if self._fail:
            self._finish("failed", RESPONSE_FAILED_DETAILS)
        else:
            self._finish("completed", None)

    def _send_words(self, words: list[str], upto: int) -> None:
        for word in words[self._words_sent : upto]:
            self._words_sent += 1
            self._text_sent += word
            kind = "response.audio_transcript.delta" if self._audio else "response.text.delta"
            self._event(kind, delta=word)

    # --- events ---

    def _event(self, kind: str, **fields: object) -> None:
        self._outbox.send_json(
            {
                "event_id": new_id("event"),
                "type": kind,
                "response_id": self.id,
                "item_id": self.item_id,
                "output_index": 0,
                "content_index": 0,
                **fields,
            }
        )

    def _response(self, status: str, details: dict | None, output: list) -> dict:
        body: dict = {
            "id": self.id,
            "object": "realtime.response",
            "conversation_id": self._conversation_id,
            "status": status,
            "status_details": details,
            "modalities": self.plan.modalities,
            "voice": self.plan.voice,
            "output_audio_format": self.plan.output_audio_format,
            "output": output,
        }
        if status != "in_progress":
            body["usage"] = self._usage()
        return body

    def _send_start(self) -> None:
        self._outbox.send_json(
            {
                "event_id": new_id("event"),
                "type": "response.created",
                "response": self._response("in_progress", None, []),
            }
        )
        self._outbox.send_json(
            {
                "event_id": new_id("event"),
                "type": "response.output_item.added",
                "response_id": self.id,
                "output_index": 0,
                "item": self._item("in_progress", []),
            }
        )
        part = {"type": "audio", "transcript": ""} if self._audio else {"type": "text", "text": ""}
        self._event_part("response.content_part.added", part)

    def _finish(self, status: str, details: dict | None) -> None:
        self._finished = True
        self.status = status
        text = self._text_sent
        if self._audio:
            self._event("response.audio_transcript.done", transcript=text)
            self._event("response.audio.done")
            part = {"type": "audio", "transcript": text}
        else:
            self._event("response.text.done", text=text)
            part = {"type": "text", "text": text}
        self._event_part("response.content_part.done", part)
        item = self._item("completed" if status == "completed" else "incomplete", [part])
        self._outbox.send_json(
            {
                "event_id": new_id("event"),
                "type": "response.output_item.done",
                "response_id": self.id,
                "output_index": 0,
                "item": item,
            }
        )
        self._outbox.send_json(
            {
                "event_id": new_id("event"),
                "type": "response.done",
                "response": self._response(status, details, [item]),
            }
        )
        self._on_finished(self)

    def _event_part(self, kind: str, part: dict) -> None:
        self._outbox.send_json(
            {
                "event_id": new_id("event"),
                "type": kind,
                "response_id": self.id,
                "item_id": self.item_id,
                "output_index": 0,
                "content_index": 0,
                "part": part,
            }
        )

    def _item(self, status: str, content: list) -> dict:
        return {
            "id": self.item_id,
            "object": "realtime.item",
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def _usage(self) -> dict:
        in_audio = round(self.plan.input_audio_ms / 1000 * INPUT_AUDIO_TOKENS_PER_S)
        in_text = max(1, (len(self.plan.instructions) + len(self.plan.input_text)) // 4)
        out_text = len(self._text_sent.split())
        out_audio = round(
            self._audio_samples_sent / max(1, self.plan.out_rate) * OUTPUT_AUDIO_TOKENS_PER_S
        )
        return {
            "total_tokens": in_audio + in_text + out_text + out_audio,
            "input_tokens": in_audio + in_text,
            "output_tokens": out_text + out_audio,
            "input_tokens_details": {"text_tokens": in_text, "audio_tokens": in_audio},
            "output_tokens_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    delay = when - loop.time()
    await asyncio.sleep(max(0.0, delay))
