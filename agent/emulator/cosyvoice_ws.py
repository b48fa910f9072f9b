"""Emulated CosyVoice duplex synthesis: `GET /api-ws/v1/inference` (reference §4).

run-task → task-started; continue-task text is cut into sentences and each complete sentence is
spoken at once: sentence-begin, then N × (sentence-synthesis JSON immediately followed by exactly
one binary audio frame), then sentence-end with the cumulative `usage.characters`; finish-task
speaks the rest and ends with task-finished. The socket is reusable after task-finished (new
task_id), closes after task-failed, after a 23 s gap in the text, and after 60 s without a task
(both gaps are options). A new run-task mid-task pre-empts the old task: its pending audio is
discarded and it gets no further events. Only pcm and wav output are produced (no mp3/opus
encoder offline): other formats fail the task with a message that says so.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from agent.emulator.context import EmulatorContext
from agent.emulator.cosyvoice_task import Task, TaskFailed, new_task, render, wav_header
from agent.emulator.cosyvoice_text import billing_characters, split_sentences, strip_ssml
from agent.emulator.faults import ConnectionFaults
from agent.emulator.region import honours_cancel, serves_tts_model
from agent.emulator.ws_outbox import Outbox

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_TEXT_PER_CONTINUE = 20_000
MAX_TEXT_PER_TASK = 200_000
CHUNK_S = 0.16  # audio per binary frame (≈7.7 kB at 24 kHz, like the service's ~8 kB frames)
_PAYLOAD_KEYS = {"model", "task_group", "task", "function", "input", "parameters", "resources"}
_INPUT_KEYS = {"text", "flush", "directive"}
POLL_S = 0.25  # how often the receive loop re-checks its deadlines


async def handle_inference(request: web.Request, ctx: EmulatorContext) -> web.StreamResponse:
    """Upgrade and serve one duplex synthesis connection (auth was checked by the caller)."""
    faults = ctx.faults.for_connection("inference", request)  # the same view the gate drew
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, autoping=False)
    await ws.prepare(request)
    try:
        await CosyConnection(ws, request, ctx, faults).run()
    except Exception:  # an emulator bug must not look like a clean close
        ctx.log.exception("cosyvoice connection failed")
        await ws.close(code=1011, message=b"internal error")
    return ws


class CosyConnection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        ctx: EmulatorContext,
        faults: ConnectionFaults,
    ) -> None:
        self.ws = ws
        self.ctx = ctx
        self.faults = faults
        self.out = Outbox(
            ws, request, faults, self._fatal_frames, on_sent=ctx.observer.reporter()
        )
        self.task: Task | None = None
        self.used_ids: set[str] = set()
        self.idle_since = time.monotonic()
        self.closing = False
        self.natural_marked = False

    # --- lifecycle ---

    async def run(self) -> None:
        try:
            while not self.closing:
                try:
                    msg = await self.ws.receive(timeout=self._timeout())
                except asyncio.TimeoutError:
                    self._on_timeout()
                    continue
                if msg.type == WSMsgType.TEXT:
                    self._on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self._fail_current("InvalidParameter", "Binary frames are not accepted.")
                elif msg.type == WSMsgType.PING:
                    await self.out.answer_ping(msg.data)
                elif msg.type != WSMsgType.PONG:
                    break
            # drain what is queued (e.g. task-failed and its close); the client ends the socket
            async for msg in self.ws:
                if msg.type == WSMsgType.PING:
                    await self.out.answer_ping(msg.data)
        finally:
            self._stop_task()
            await self.out.drain(timeout=5.0)
            await self.out.stop()

    def _timeout(self) -> float:
        """Seconds until the next deadline; short polls while a task is finishing (it may end)."""
        deadline = self._deadline()
        if deadline is None or self.out.silent:  # half-open: no timers fire, just hold on
            return POLL_S
        return min(POLL_S, max(0.0, deadline - time.monotonic()))

    def _deadline(self) -> float | None:
        opts = self.ctx.options
        if self.task is None:
            return self.idle_since + opts.cosyvoice_idle_close_s
        if not self.task.finishing:
            return self.task.last_text_at + opts.cosyvoice_text_gap_s
        return None

    def _on_timeout(self) -> None:
        deadline = self._deadline()
        if deadline is None or time.monotonic() < deadline or self.out.silent:
            return
        if self.task is None:
            self.ctx.log.info("cosyvoice: closing idle connection")
            self._close(1000, "idle timeout")
        else:
            gap = self.ctx.options.cosyvoice_text_gap_s
            self._fail_current("RequestTimeOut", f"request timeout after {gap:g} seconds.")

    # --- instructions ---

    def _on_text(self, data: str) -> None:
        try:
            msg = json.loads(data)
            header = msg["header"]
            action = header["action"]
            task_id = str(header["task_id"])
            payload = msg.get("payload", {})
            if not isinstance(payload, dict):
                raise TypeError("payload")
        except (ValueError, KeyError, TypeError):
            self._fail_current(
                "InvalidParameter",
                "Invalid instruction: expected JSON with "
                "header.action, header.task_id and a payload object.",
            )
            return
        if set(payload) - _PAYLOAD_KEYS or set(payload.get("input") or {}) - _INPUT_KEYS:
            self._close(1007, "unexpected fields in payload")  # documented (§4.1)
            return
        try:
            if action == "run-task":
                self._run_task(task_id, header, payload)
            elif action == "continue-task":
                self._continue_task(task_id, payload)
            elif action == "finish-task":
                self._finish_task(task_id, payload)
            else:
                raise TaskFailed("InvalidParameter", f"Unsupported action '{action}'.")
        except TaskFailed as e:
            self._task_failed(task_id, e.code, e.message)

    def _run_task(self, task_id: str, header: dict[str, Any], payload: dict[str, Any]) -> None:
        if task_id in self.used_ids:
            raise TaskFailed(
                "InvalidParameter", f"Duplicate task_id '{task_id}' on this connection."
            )
        self.used_ids.add(task_id)
        if self.task is not None:  # pre-emption: the old task ends silently, audio discarded
            self._stop_task()
        if header.get("streaming") != "duplex":
            raise TaskFailed("InvalidParameter", "header.streaming must be 'duplex'.")
        if "input" not in payload:
            raise TaskFailed("InvalidParameter", "task can not be null")
        model = str(payload.get("model") or "")
        if model and not serves_tts_model(self.ctx.options.region, model):
            raise TaskFailed("ModelNotFound", f"Model not exist: {model}")
        task = new_task(task_id, payload, self.ctx.stores.cosy_voices)
        if self.faults.task_failed:
            raise TaskFailed("InternalError", "Internal server error (injected by the emulator).")
        self.task = task
        task.worker = asyncio.create_task(self._work(task), name=f"emulator-tts-{task_id}")
        self._event(task_id, "task-started", {})
        text = (payload.get("input") or {}).get("text")
        if text:
            self._add_text(task, text)

    def _continue_task(self, task_id: str, payload: dict[str, Any]) -> None:
        task = self._task_for(task_id)
        if task is None:
            return
        if task.finishing:
            raise TaskFailed("InvalidParameter", "continue-task after finish-task.")
        inp = payload.get("input") or {}
        text = inp.get("text")
        if text is not None:
            if not isinstance(text, str):
                raise TaskFailed("InvalidParameter", "Parameter invalid: text is null")
            if len(text) > MAX_TEXT_PER_CONTINUE:
                raise TaskFailed(
                    "InvalidParameter",
                    f"Text too long: {len(text)} characters in one continue-task "
                    f"(limit {MAX_TEXT_PER_CONTINUE}).",
                )
            self._add_text(task, text)
        if inp.get("flush") is True and task.pending:
            task.queue.put_nowait(task.pending)
            task.pending = ""

    def _add_text(self, task: Task, text: str) -> None:
        task.last_text_at = time.monotonic()
        task.texts += 1
        if task.ssml and task.texts > 1:
            raise TaskFailed("InvalidParameter", "Text request limit violated, expected 1.")
        task.received += len(text)
        if task.received > MAX_TEXT_PER_TASK:
            raise TaskFailed(
                "InvalidParameter",
                f"Text too long: more than {MAX_TEXT_PER_TASK} characters in one task.",
            )
        sentences, task.pending = split_sentences(task.pending + text)
        for sentence in sentences:
            task.queue.put_nowait(sentence)

    def _finish_task(self, task_id: str, payload: dict[str, Any]) -> None:
        task = self._task_for(task_id)
        if task is None:
            return
        cancel = (payload.get("input") or {}).get("directive") == "cancel"
        if cancel and honours_cancel(self.ctx.options.region, task.model):
            self._stop_task()
            self._task_finished(task)
            return
        if task.finishing:
            return
        task.finishing = True
        if task.pending:
            task.queue.put_nowait(task.pending)
            task.pending = ""
        task.queue.put_nowait(None)

    def _task_for(self, task_id: str) -> Task | None:
        """The running task with this id; None for a finished/pre-empted one (late message)."""
        if self.task is not None and self.task.task_id == task_id:
            return self.task
        if task_id in self.used_ids:
            return None
        raise TaskFailed(
            "InvalidParameter", f"task_id '{task_id}' does not belong to a running task."
        )

    # --- synthesis ---

    async def _work(self, task: Task) -> None:
        while (sentence := await task.queue.get()) is not None:
            await self._speak(task, sentence)
        self._task_finished(task)

    async def _speak(self, task: Task, raw: str) -> None:
        text = strip_ssml(raw) if task.ssml else raw
        task.characters += billing_characters(text)
        spoken = text.strip()
        if not spoken:
            return  # whitespace between sentences: billed, nothing to say
        index = task.sentence_index
        task.sentence_index += 1
        sentence = {"index": index, "words": []}
        self._result(
            task, {"sentence": sentence, "type": "sentence-begin", "original_text": spoken}
        )
        pcm = await asyncio.to_thread(render, task, spoken)
        loop = asyncio.get_running_loop()
        start = loop.time() + (
            self.ctx.options.cosyvoice_first_audio_s if task.first_audio else 0.0
        )
        task.first_audio = False
        chunk = max(1, int(task.rate * CHUNK_S))
        interval = CHUNK_S / max(self.ctx.options.cosyvoice_speed, 1e-6)
        for k, pos in enumerate(range(0, pcm.size, chunk)):
            delay = start + k * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            data = pcm[pos : pos + chunk].astype("<i2").tobytes()
            if task.wav and not task.header_sent:
                data = wav_header(task.rate) + data
                task.header_sent = True
            synthesis = {"sentence": sentence, "type": "sentence-synthesis"}
            # exactly one binary frame right after each sentence-synthesis event
            self.out.send_pair(self._result_event(task, synthesis), data)
            if not self.natural_marked:
                self.natural_marked = True
                self.out.mark_natural_point()
        self._result(
            task,
            {"sentence": sentence, "type": "sentence-end", "original_text": spoken},
            usage={"characters": task.characters},
        )

    # --- events ---

    def _event(self, task_id: str, event: str, payload: dict[str, Any], **attrs: Any) -> None:
        header = {"task_id": task_id, "event": event, "attributes": attrs}
        self.out.send_json({"header": header, "payload": payload})

    def _result(self, task: Task, output: dict[str, Any], usage: dict | None = None) -> None:
        self.out.send_json(self._result_event(task, output, usage))

    @staticmethod
    def _result_event(task: Task, output: dict[str, Any], usage: dict | None = None) -> dict:
        payload: dict[str, Any] = {"output": output}
        if usage is not None:
            payload["usage"] = usage
        header = {"task_id": task.task_id, "event": "result-generated", "attributes": {}}
        return {"header": header, "payload": payload}

    def _task_finished(self, task: Task) -> None:
        payload = {"output": {"sentence": {"words": []}}, "usage": {"characters": task.characters}}
        self._event(task.task_id, "task-finished", payload, request_uuid=str(uuid.uuid4()))
        if self.task is task:
            self.task = None
        self.idle_since = time.monotonic()

    def _task_failed(self, task_id: str, code: str, message: str) -> None:
        """task-failed always ends the connection (§4.2)."""
        self._stop_task()
        header = {
            "task_id": task_id,
            "event": "task-failed",
            "error_code": code,
            "error_message": message,
            "attributes": {},
        }
        self.out.send_json({"header": header, "payload": {}})
        self._close(1011 if code == "InternalError" else 1000, "task failed")

    def _fail_current(self, code: str, message: str) -> None:
        if self.task is not None:
            self._task_failed(self.task.task_id, code, message)
        else:
            self._close(1007 if code == "InvalidParameter" else 1000, message)

    def _fatal_frames(self) -> list[str]:
        task_id = self.task.task_id if self.task is not None else ""
        self._stop_task()
        header = {
            "task_id": task_id,
            "event": "task-failed",
            "error_code": "InternalError",
            "error_message": "Internal server error (injected by the emulator).",
            "attributes": {},
        }
        return [json.dumps({"header": header, "payload": {}})]

    def _stop_task(self) -> None:
        task, self.task = self.task, None
        if task is not None and task.worker is not None:
            task.worker.cancel()
        self.idle_since = time.monotonic()

    def _close(self, code: int, reason: str) -> None:
        self.closing = True
        self.out.close(code, reason)
