"""An emulated realtime response that calls a function instead of speaking.

The event chain is the one recorded from the live qwen3.5-omni-flash-realtime service
(reference `realtime-recording-text-tools.md`): response.created → output_item.added (a
`function_call` item, empty arguments) → conversation.item.created → function_call_arguments
.delta (the arguments in two pieces) → function_call_arguments.done → output_item.done →
response.done with the call in `output`. No audio: the documents say a calling response has
none. The client answers with `function_call_output` items and `response.create`. With the
`call_failed` fault the response fails after the first half of the arguments: the item ends
`incomplete` with those, and `response.done` says "failed".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agent.emulator.faults import RESPONSE_FAILED_DETAILS
from agent.emulator.realtime_session import new_id, settled
from agent.emulator.ws_outbox import Outbox


class CallResponse:
    """One calling response; the same surface as `ResponseStream` for the session."""

    def __init__(
        self,
        outbox: Outbox,
        conversation_id: str,
        name: str,
        arguments: str,
        on_finished: Callable[[Any], None],
        *,
        delay_s: float,
        modalities: list[str],
        voice: str,
        previous_item_id: str | None = None,
        failed: bool = False,
    ) -> None:
        """`failed`: the service fails this response while the arguments stream (a fault)."""
        self.id = new_id("resp")
        self.item_id = new_id("item")
        self.call_id = "call_" + new_id("x")[-24:]
        self.name = name
        self.arguments = arguments
        self.status = "in_progress"
        self._out = outbox
        self._conversation_id = conversation_id
        self._on_finished = on_finished
        self._delay_s = delay_s
        self._modalities = modalities
        self._voice = voice
        self._previous = previous_item_id
        self._fail = failed
        self._finished = False
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return not self._finished

    @property
    def transcript_sent(self) -> str:
        return ""

    def start(self) -> None:
        self._send("response.created", response=self._response("in_progress", []))
        self._task = asyncio.create_task(self._stream(), name=f"emulator-{self.id}")

    def cancel(self, reason: str) -> bool:
        if self._finished:
            return False
        if self._task is not None:
            self._task.cancel()
        self._done("cancelled", [], {"type": "cancelled", "reason": reason})
        return True

    async def wait(self) -> None:
        await settled(self._task)

    async def _stream(self) -> None:
        await asyncio.sleep(self._delay_s)
        item = self._item("in_progress", "")
        common = {"response_id": self.id, "output_index": 0}
        self._send("response.output_item.added", **common, item=item)
        self._send("conversation.item.created", previous_item_id=self._previous, item=item)
        half = len(self.arguments) // 2
        for piece in (self.arguments[:half], self.arguments[half:]):
            self._send("response.function_call_arguments.delta", **common, item_id=self.item_id,
                       call_id=self.call_id, delta=piece)
            await asyncio.sleep(0.01)
            if self._fail:
                cut = self._item("incomplete", self.arguments[:half])
                self._send("response.output_item.done", **common, item=cut)
                self._done("failed", [cut], RESPONSE_FAILED_DETAILS)
                return
        self._send("response.function_call_arguments.done", **common, item_id=self.item_id,
                   name=self.name, call_id=self.call_id, arguments=self.arguments)
        final = self._item("completed", self.arguments)
        self._send("response.output_item.done", **common, item=final)
        self._done("completed", [final], None)

    def _done(self, status: str, output: list[dict[str, Any]], details: dict[str, Any] | None) -> None:
        self._finished = True
        self.status = status
        body = self._response(status, output)
        body["status_details"] = details
        body["usage"] = {"total_tokens": 40, "input_tokens": 30, "output_tokens": 10}
        self._send("response.done", response=body)
        self._on_finished(self)

    def _item(self, status: str, arguments: str) -> dict[str, Any]:
        return {"id": self.item_id, "object": "realtime.item", "type": "function_call",
                "status": status, "call_id": self.call_id, "name": self.name, "arguments": arguments}

    def _response(self, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": "realtime.response", "conversation_id": self._conversation_id,
                "status": status, "modalities": self._modalities, "voice": self._voice,
                "output_audio_format": "pcm", "output": output}

    def _send(self, kind: str, **fields: Any) -> None:
        self._out.send_json({"event_id": new_id("event"), "type": kind, **fields})
