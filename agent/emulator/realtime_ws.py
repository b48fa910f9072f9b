"""Emulated Qwen-Omni-Realtime and Qwen-ASR-Realtime: `GET /api-ws/v1/realtime?model=...`.

One socket is one session (reference §5). Omni models answer each user turn with a streamed
response (`realtime_response`); ASR models (any model name containing "asr") only transcribe.
Turns come from a real energy VAD over the appended audio (server_vad) or from explicit commits
(`turn_detection: null`); what the user said comes from the phrasebook recognizer, the answer
from `answers.answer_for`. Client mistakes get an `error` event and the connection stays; the
socket closes on `session.finish` (after `session.finished`), at the session time limit, or by
an injected fault.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from agent.emulator.answers import answer_for
from agent.emulator.context import EmulatorContext
from agent.emulator.errors import ApiError, error_response
from agent.emulator.faults import ConnectionFaults
from agent.emulator.realtime_audio import InputAudio
from agent.emulator.realtime_items import (
    Turn,
    misreported,
    refuse_input_text,
    text_turn,
    transcription_events,
    user_audio_item,
)
from agent.emulator.realtime_response import ResponsePlan, ResponseStream
from agent.emulator.realtime_session import (
    SessionError,
    apply_update,
    default_session,
    input_rate,
    is_asr_model,
    new_id,
    output_rate,
)
from agent.emulator.realtime_tools import CallResponse
from agent.emulator.recognizer import default_recognizer
from agent.emulator.tool_script import choose_call, speak_results
from agent.emulator.vad import VadEvent
from agent.emulator.ws_outbox import Outbox

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
MAX_APPEND_B64 = 15 * 1024 * 1024  # per input_audio_buffer.append (documented for Qwen-ASR)
MAX_IMAGE_B64 = 256 * 1024


async def handle_realtime(request: web.Request, ctx: EmulatorContext) -> web.StreamResponse:
    """Upgrade and serve one realtime session (auth was checked by the caller)."""
    model = request.query.get("model", "").strip()
    if not model:
        return error_response(
            request, ApiError(400, "InvalidParameter", "Missing required query parameter 'model'.")
        )
    faults = ctx.faults.for_connection("realtime", request)  # the same view the gate drew
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, autoping=False)
    await ws.prepare(request)
    try:
        await RealtimeSession(ws, request, ctx, model, faults).run()
    except Exception:  # an emulator bug must not look like a clean close
        ctx.log.exception("realtime session failed")
        await ws.close(code=1011, message=b"internal error")
    return ws


class RealtimeSession:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        ctx: EmulatorContext,
        model: str,
        faults: ConnectionFaults,
    ) -> None:
        self.ctx = ctx
        self.model = model
        self.asr = is_asr_model(model)
        self.session = default_session(model)
        self.conversation_id = new_id("conv")
        self.ws = ws
        self.faults = faults
        self.out = Outbox(
            ws, request, faults, self._fatal_frames, on_sent=ctx.observer.reporter()
        )
        self.audio = InputAudio()
        self.audio.configure(self.session["turn_detection"], 16000)
        self.response: ResponseStream | CallResponse | None = None
        self.answers = 0  # responses that answer in words, started on this connection
        self.calls = 0  # responses that call a tool, started on this connection
        self.tool_outputs: list[str] = []  # function_call_output items not answered yet
        self.latest: Turn | None = None
        self.last_item_id: str | None = None
        self.speech_item: str | None = None
        self.speech_start_ms = 0  # padded start of the utterance in progress
        self.turn_gen = 0  # bumped on speech_started: pending auto-responses are superseded
        self.pending_items: list[str] = []  # manual mode: committed, item.created not yet sent
        self.tasks: set[asyncio.Task[Any]] = set()
        self.finishing = False

    # --- lifecycle ---

    async def run(self) -> None:
        self._spawn(asyncio.to_thread(default_recognizer().warm_up))
        self._send("session.created", session=self.session)
        if self.faults.task_failed:  # realtime form of the fault: a fatal error at once
            for frame in self._fatal_frames():
                self.out.send_text(frame)
            self.out.close(1011, "injected fatal error")
        limit = self._spawn(self._session_limit())
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.TEXT:
                    self.ctx.observer.received(msg.data)
                    await self._on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._error("Binary frames are not supported; send JSON text events.", None)
                elif msg.type == WSMsgType.PING:
                    await self.out.answer_ping(msg.data)
                elif msg.type != WSMsgType.PONG:
                    break
        finally:
            limit.cancel()
            if self.response is not None and not self.ws.closed:
                self.response.cancel("client_cancelled")
            for task in list(self.tasks):
                task.cancel()
            await self.out.drain(timeout=5.0)
            await self.out.stop()

    async def _session_limit(self) -> None:
        await asyncio.sleep(self.ctx.options.realtime_session_max_s)
        self.ctx.log.info("realtime session %s reached its time limit", self.session["id"])
        self.out.close(1000, "session max duration reached")

    def _fatal_frames(self) -> list[str]:
        err = {
            "type": "server_error",
            "code": "internal_error",
            "message": "Internal server error (injected by the emulator).",
            "param": None,
        }
        return [json.dumps({"event_id": new_id("event"), "type": "error", "error": err})]

    # --- dispatch ---

    async def _on_text(self, data: str) -> None:
        try:
            event = json.loads(data)
        except json.JSONDecodeError as e:
            self._error(f"The server failed to parse the event: {e}", None, code="invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self._error("Each event must be a JSON object with a string 'type'.", "type")
            return
        if self.finishing:
            return  # session.finish was received: nothing else is processed
        kind = event["type"]
        handler = _HANDLERS.get(kind)
        try:
            if handler is None:
                raise SessionError(
                    f"Invalid value: '{kind}'. Unknown client event type.", "type", "invalid_value"
                )
            await handler(self, event)
        except SessionError as e:
            self._error(e.message, e.param, code=e.code, event_id=event.get("event_id"))

    async def _session_update(self, event: dict[str, Any]) -> None:
        old = self.session
        self.session = apply_update(
            old,
            event.get("session"),
            audio_started=self.audio.appended_any,
            cloned_voices=self.ctx.stores.qwen_voices,
        )
        td, rate = self.session.get("turn_detection"), input_rate(self.session)
        if td != old.get("turn_detection") or rate != input_rate(old):
            self.audio.configure(td, rate)  # a new VAD only when its settings changed
        self._send("session.updated", session=misreported(self.session, self.faults.misreport))

    async def _append(self, event: dict[str, Any]) -> None:
        data = event.get("audio")
        if not isinstance(data, str) or not data:
            raise SessionError("'audio' must be a non-empty base64 string.", "audio")
        if len(data) > MAX_APPEND_B64:
            raise SessionError("'audio' exceeds 15 MiB in one append.", "audio")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise SessionError("Invalid base64 audio data.", "audio") from None
        if len(raw) % 2:
            raise SessionError("Audio must be 16-bit PCM (an even number of bytes).", "audio")
        for vad_event in self.audio.append(np.frombuffer(raw, dtype="<i2").astype(np.int16)):
            self._on_vad(vad_event)
        self.audio.trim()

    def _on_vad(self, ev: VadEvent) -> None:
        if ev.kind == "speech_started":
            self.speech_item = new_id("item")
            self.speech_start_ms = ev.audio_ms
            self.turn_gen += 1
            self._send(
                "input_audio_buffer.speech_started",
                audio_start_ms=ev.audio_ms,
                item_id=self.speech_item,
            )
            td = self.session.get("turn_detection") or {}
            if self.response is not None and td.get("interrupt_response", True):
                self.response.cancel("turn_detected")  # barge-in
            return
        item_id = self.speech_item or new_id("item")
        self.speech_item = None
        self._send("input_audio_buffer.speech_stopped", audio_end_ms=ev.audio_ms, item_id=item_id)
        pcm = self.audio.take(self.speech_start_ms, ev.audio_ms)
        td = self.session.get("turn_detection") or {}
        auto = not self.asr and bool(td.get("create_response", True)) and not self.finishing
        self._commit(item_id, pcm, announce=True, auto_response=auto)

    async def _commit_event(self, event: dict[str, Any]) -> None:
        if self.session.get("turn_detection") is not None:
            raise SessionError(
                "input_audio_buffer.commit is only available when turn_detection is null.", "type"
            )
        ms = self.audio.buffered_ms
        if ms < 100:
            raise SessionError(
                "Error committing input audio buffer: buffer too small. Expected at least 100ms "
                f"of audio, but buffer only has {ms}ms of audio.",
                None,
                "input_audio_buffer_commit_empty",
            )
        item_id = new_id("item")
        # Omni manual mode: the user item is announced when response.create arrives (§5.5)
        self._commit(item_id, self.audio.take_all(), announce=self.asr, auto_response=False)
        if not self.asr:
            self.pending_items.append(item_id)

    async def _clear(self, event: dict[str, Any]) -> None:
        self.audio.clear(self.session.get("turn_detection"))
        self.speech_item = None
        self._send("input_audio_buffer.cleared")

    async def _image(self, event: dict[str, Any]) -> None:
        image = event.get("image")
        if not isinstance(image, str) or not image:
            raise SessionError("'image' must be a non-empty base64 JPEG string.", "image")
        if len(image) > MAX_IMAGE_B64:
            raise SessionError("'image' exceeds 256 KB after base64 encoding.", "image")
        if not self.audio.appended_any:
            raise SessionError("Append audio before the first image.", "image")

    async def _item_create(self, event: dict[str, Any]) -> None:
        if self.faults.refuse_input_text:
            refuse_input_text(event.get("item"))
        turn, item = text_turn(event.get("item"))
        if turn is not None and item.get("type") == "function_call_output":
            self.tool_outputs.append(turn.text or "")
            turn.reply = speak_results(self.tool_outputs)  # the next response reads them back
        elif turn is not None:
            self.tool_outputs.clear()
        if turn is not None:
            self.latest = turn
        self._send("conversation.item.created", previous_item_id=self.last_item_id, item=item)
        self.last_item_id = item["id"]

    async def _response_create(self, event: dict[str, Any]) -> None:
        if self.asr:
            raise SessionError(f"Model '{self.model}' does not create responses.", "type")
        if self.response is not None:
            raise SessionError(
                "Conversation already has an active response",
                None,
                "conversation_already_has_active_response",
            )
        params = event.get("response") or {}
        if not isinstance(params, dict):
            raise SessionError("'response' must be an object.", "response")
        for item_id in self.pending_items:
            self._send_user_item(item_id)
        self.pending_items.clear()
        self._start_response(self.latest, params)

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        if self.response is None:
            raise SessionError(
                "Cancellation failed: no active response found", None, "response_cancel_not_active"
            )
        self.response.cancel("client_cancelled")

    async def _finish(self, event: dict[str, Any]) -> None:
        self.finishing = True
        stop = self.audio.force_stop()
        if stop is not None:
            self._on_vad(stop)
        elif self.asr and self.session.get("turn_detection") is None and self.audio.buffered_ms:
            self._commit(new_id("item"), self.audio.take_all(), announce=True, auto_response=False)
        if self.response is not None:
            self.response.cancel("client_cancelled")
        pending = [t for t in self.tasks if t.get_name().startswith("emulator-turn")]
        if pending:
            await asyncio.wait(pending, timeout=10)
        self._send("session.finished")
        self.out.close(1000, "session finished")

    # --- turns and responses ---

    def _commit(
        self, item_id: str, pcm: np.ndarray, *, announce: bool, auto_response: bool
    ) -> None:
        self._send(
            "input_audio_buffer.committed", previous_item_id=self.last_item_id, item_id=item_id
        )
        if announce:
            self._send_user_item(item_id)
        self.last_item_id = item_id
        turn = Turn(item_id=item_id, audio_ms=pcm.size * 1000 // 16000)
        self.latest = turn
        self._spawn(self._transcribe(turn, pcm, auto_response, self.turn_gen), "emulator-turn")

    def _send_user_item(self, item_id: str) -> None:
        self._send("conversation.item.created", item=user_audio_item(item_id))

    async def _transcribe(self, turn: Turn, pcm: np.ndarray, auto: bool, gen: int) -> None:
        text = await asyncio.to_thread(default_recognizer().recognize, pcm)
        turn.transcript.set_result(text)
        if self.asr or self.session.get("input_audio_transcription") is not None:
            self._send_transcription(turn.item_id, text)
        if auto and gen == self.turn_gen and self.response is None and not self.finishing:
            self._start_response(turn, {})

    def _send_transcription(self, item_id: str, text: str) -> None:
        for kind, fields in transcription_events(item_id, text, self.asr):
            self._send(kind, **fields)

    def _start_response(self, turn: Turn | None, params: dict[str, Any]) -> None:
        s = self.session
        if turn is not None and turn.reply is not None:
            self.tool_outputs.clear()
        call = self._call_for(turn)
        if call is not None:
            self.calls += 1
            self.response = CallResponse(
                self.out, self.conversation_id, *call, self._response_finished,
                delay_s=self.ctx.options.realtime_first_delta_s,
                modalities=list(s.get("modalities") or ["text", "audio"]),
                voice=str(s.get("voice", "")), previous_item_id=self.last_item_id,
                failed=self.faults.call_failed == self.calls)
            self.response.start()
            return
        plan = ResponsePlan(
            answer="",
            modalities=list(params.get("modalities") or s.get("modalities") or ["text", "audio"]),
            voice=str(s.get("voice", "")),
            out_rate=output_rate(s),
            output_audio_format=str(s.get("output_audio_format", "pcm")),
            input_audio_ms=turn.audio_ms if turn else 0,
            input_text=(turn.text or "") if turn else "",
            instructions=str(params.get("instructions") or s.get("instructions") or ""),
        )
        answer = turn.answer() if turn is not None else _const(answer_for(""))
        self.answers += 1
        stream = ResponseStream(
            self.out, self.ctx.options, self.conversation_id, plan, self._response_finished, answer,
            failed=self.faults.response_failed == self.answers,
        )
        self.response = stream
        stream.start()

    def _call_for(self, turn: Turn | None) -> tuple[str, str] | None:
        """A declared tool the user's words name (models without function calling never call)."""
        if turn is None or turn.reply is not None or not turn.transcript.done():
            return None
        if self.model.startswith(("qwen3-omni-flash-realtime", "qwen-omni-turbo")):
            return None  # they accept tool declarations but never call (function-calling.md §1.1)
        return choose_call(turn.transcript.result(), self.session.get("tools"))

    def _response_finished(self, stream: ResponseStream | CallResponse) -> None:
        if self.response is stream:
            self.response = None

    # --- output helpers ---

    def _spawn(self, coro: Any, name: str = "emulator-realtime") -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _send(self, kind: str, **fields: Any) -> None:
        self.out.send_json({"event_id": new_id("event"), "type": kind, **fields})

    def _error(
        self,
        message: str,
        param: str | None,
        *,
        code: str = "invalid_value",
        event_id: str | None = None,
    ) -> None:
        err = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        if event_id is not None:
            err["event_id"] = event_id
        self._send("error", error=err)


async def _const(text: str) -> str:
    return text


_HANDLERS = {
    "session.update": RealtimeSession._session_update,
    "input_audio_buffer.append": RealtimeSession._append,
    "input_audio_buffer.commit": RealtimeSession._commit_event,
    "input_audio_buffer.clear": RealtimeSession._clear,
    "input_image_buffer.append": RealtimeSession._image,
    "conversation.item.create": RealtimeSession._item_create,
    "response.create": RealtimeSession._response_create,
    "response.cancel": RealtimeSession._response_cancel,
    "session.finish": RealtimeSession._finish,
}
