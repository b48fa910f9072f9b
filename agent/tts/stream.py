"""`SynthesisStream`: one utterance on the manager's socket — text in, PCM out.

A stream usually runs one CosyVoice task. It runs a chain of tasks when the producer pauses
longer than the text-gap limit (the task is finished early and the next text starts a new one),
and restarts a task once when its socket died before task-started. The caller never sees either:
it calls `send_text()`, `finish()` or `cancel()` and iterates `audio()`. See the
`agent.tts.connection` docstring for the rules and timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from websockets.exceptions import ConnectionClosed

from agent.tts.connection import Connection, SocketPool
from agent.tts.errors import SynthesisError
from agent.tts.protocol import (
    InvalidState,
    ProtocolError,
    SynthesisParams,
    SynthesisTask,
    TaskFailed,
    TaskFinished,
    TaskStarted,
    TaskState,
    UnknownEvent,
)

log = logging.getLogger("agent.tts")


class SynthesisStream:
    """The caller's handle for one utterance: `send_text`, `finish`/`cancel`, `audio()`."""

    def __init__(self, pool: SocketPool, params: SynthesisParams) -> None:
        """A stream for the holder of `pool`'s lane (`SynthesisManager.begin()`); `start()` next."""
        self._pool = pool
        self.params = params
        self._clock = pool.clock
        self._queue: asyncio.Queue[bytes | SynthesisError | None] = asyncio.Queue()
        self._task: SynthesisTask | None = None
        self._conn: Connection | None = None
        self._task_done = asyncio.Event()
        self._text_event = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._finished = False  # the caller called finish()
        self._cancelled = False
        self._released = False
        self._restarts = 0
        self._replay: tuple[str, ...] | None = None  # text to resend after a lost run-task
        self._carry = b""  # odd trailing byte of the last frame
        self._last_frame_at = self._clock()
        self._stall_watch: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()  # referenced so none is GC'd mid-way
        self.ended = False
        self.error: SynthesisError | None = None
        self.task_ids: list[str] = []
        self.begun_at = self._clock()
        self.started_at: float | None = None  # first task-started
        self.first_audio_at: float | None = None  # first audio frame received (metrics)
        self.finished_at: float | None = None
        self.characters = 0  # billed characters over all tasks (usage.characters)
        self.audio_bytes = 0
        self.unpaired_frames = 0
        self.dropped_frames = 0  # audio that arrived after cancel
        self.gap_finishes = 0  # tasks ended early by the text-gap watchdog
        self._last_text_at = self._clock()
        self._spawn(self._watch_gap(), "cosyvoice-gap")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    @property
    def task_id(self) -> str | None:
        return self._task.task_id if self._task else (self.task_ids[-1] if self.task_ids else None)

    # -- caller API -----------------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Queue `text` for synthesis (sent at once if the task has started)."""
        if self.error is not None:
            raise self.error
        if self._finished or self._cancelled:
            raise InvalidState("the synthesis stream was finished or cancelled")
        if not text:
            return
        async with self._start_lock:
            task = self._task
            if task is None or task.finish_requested:
                if task is not None and not task.done:
                    await self._task_done.wait()  # its tail audio first: run-task would drop it
                if self.error is not None:
                    raise self.error
                await self._start_task()
            assert self._task is not None
            self._task.send_text(text)
            self._last_text_at = self._clock()
            self._text_event.set()
            await self._flush()
        if self.error is not None:
            raise self.error

    async def finish(self) -> None:
        """No more text: the rest is synthesized, then `audio()` ends."""
        if self._finished or self._cancelled or self.ended:
            return
        self._finished = True
        self._text_event.set()
        async with self._start_lock:
            task = self._task
            if task is None and self._replay is not None:
                return  # a restart is pending; it takes the finish along
            if task is None or task.done:
                self._end()
                return
            task.finish()
            await self._flush()

    async def cancel(self) -> None:
        """Barge-in: stop now. `audio()` ends at once; late audio is dropped."""
        if self._cancelled or self.ended:
            return
        self._cancelled = True
        self._text_event.set()
        self._queue.put_nowait(None)
        task, conn = self._task, self._conn
        if task is None or task.done or conn is None:
            self._end()
            return
        if task.state is TaskState.CREATED:
            conn.close("cancelled before task-started")  # cheaper than waiting to cancel
            self._detach()
            self._end()
            return
        if not self._pool.cancel_directive and task.has_text:
            task.abandon()  # plain finish-task; the next run-task pre-empts it (REF §4.4)
            await self._flush()
            self._pool.abandoned += 1
            self._detach()
            self._end()
            return
        task.cancel()
        await self._flush()
        self._spawn(self._cancel_cleanup(task, conn), "cosyvoice-cancel")

    async def audio(self) -> AsyncIterator[bytes]:
        """24 kHz 16-bit mono PCM chunks as they arrive; raises SynthesisError on failure."""
        while not self._cancelled:
            item = await self._queue.get()
            if item is None or self._cancelled:
                return
            if isinstance(item, SynthesisError):
                raise item
            yield item

    async def __aenter__(self) -> SynthesisStream:
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            await self.finish()
        else:
            await self.cancel()

    # -- task plumbing --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the first task (the lane is ours); `abort()` if this raises."""
        await self._start_task()

    def abort(self) -> None:
        """The first task could not start: end the stream and give the lane back."""
        self._end()

    async def _start_task(self) -> None:
        """A new task on an idle socket (caller holds `_start_lock`, or is `start()`)."""
        pool = self._pool
        conn = await pool.socket()
        await pool.limiter.acquire()
        if not conn.usable or conn.sink is not None:
            conn = await pool.socket()
        if self._cancelled or self.ended:  # cancelled while we waited for a socket
            raise SynthesisError("Cancelled", "the synthesis stream was cancelled")
        task = SynthesisTask(self.params)
        task.start()
        replay, self._replay = self._replay or (), None
        for text in replay:
            task.send_text(text)
        if self._finished:  # finish() came while a restart was pending
            task.finish()
        self._task, self._conn = task, conn
        self._task_done.clear()
        pool.claim(conn, self)
        self.task_ids.append(task.task_id)
        pool.tasks_started += 1
        self._last_text_at = self._clock()
        self._text_event.set()
        await self._flush()
        self._spawn(self._watch_start(task, conn), "cosyvoice-start-timeout")

    async def _flush(self) -> None:
        task, conn = self._task, self._conn
        if task is None or conn is None:
            return
        try:
            await conn.flush(task)
        except ConnectionClosed:
            pass  # the reader reports the close (and restarts or fails the task)
        if task.state is TaskState.FINISHING and not task.cancelled and self._stall_watch is None:
            self._last_frame_at = self._clock()
            self._stall_watch = self._spawn(self._watch_stall(), "cosyvoice-stall")

    async def _watch_stall(self) -> None:
        """A finishing task whose socket stays silent for `stall_timeout_s` is declared dead."""
        limit = self._pool.timings.stall_timeout_s
        while not self.ended and not self._cancelled:
            task, conn = self._task, self._conn
            if task is not None and conn is not None and task.state is TaskState.FINISHING:
                silent = self._clock() - self._last_frame_at
                if silent >= limit:
                    log.warning("cosyvoice: no data for %.1f s after finish-task; replacing socket",
                                silent)
                    conn.close("stalled", planned=False)
                    return
                await asyncio.sleep(limit - silent)
            else:
                await asyncio.sleep(limit / 2)

    async def on_frame(self, conn: Connection, frame: str | bytes) -> None:
        """`FrameSink`: a frame of our task (frames of an earlier owner are counted as stray)."""
        task = self._task
        if conn is not self._conn or task is None:
            conn.stray_frames += 1
            return
        self._last_frame_at = self._clock()
        if isinstance(frame, bytes):
            chunk = task.receive_bytes(frame)
            if chunk.discard or self._cancelled:
                self.dropped_frames += 1
                return
            if not chunk.paired:
                self.unpaired_frames += 1
            data = self._carry + chunk.data
            cut = len(data) & ~1  # keep int16 samples aligned across an odd-sized frame
            data, self._carry = data[:cut], data[cut:]
            if not data:
                return
            if self.first_audio_at is None:
                self.first_audio_at = self._clock()
            self.audio_bytes += len(data)
            self._queue.put_nowait(data)
            return
        try:
            events = task.receive_text(frame)
        except ProtocolError as e:
            log.debug("cosyvoice: ignoring malformed frame: %s", e)
            return
        for ev in events:
            if isinstance(ev, TaskStarted):
                self.started_at = self.started_at or self._clock()
                await self._flush()
            elif isinstance(ev, TaskFinished):
                self._task_ended(task, None)
            elif isinstance(ev, TaskFailed):
                conn.failed = True
                self._task_ended(task, SynthesisError(ev.code, ev.message, task_id=task.task_id))
                conn.close("task failed", planned=False)
            elif isinstance(ev, UnknownEvent):
                log.debug("cosyvoice: unknown event %r", ev.name)

    def _task_ended(self, task: SynthesisTask, error: SynthesisError | None) -> None:
        self.characters += task.characters or 0
        self._detach()
        self._task_done.set()
        if error is not None:
            self._fail(error)
        elif self._cancelled or self._finished:
            if not self._cancelled:
                self._pool.backoff.reset()  # a whole task worked: the link is healthy
            self._end()

    def _detach(self) -> None:
        """Give the socket back to the manager (idle from now)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.give_back(conn, self)

    def on_closed(self, conn: Connection) -> None:
        """`FrameSink`: our socket closed: restart a task that never started, else fail."""
        task = self._task
        if conn is not self._conn or task is None or task.done:
            return
        self._detach()
        if self._cancelled:
            self._task_done.set()
            self._end()
            return
        if task.state is TaskState.CREATED and self._restarts < 1:
            self._restarts += 1
            log.info("cosyvoice: socket %s before task-started; restarting the task",
                     conn.close_reason)
            self._replay = task.queued_text
            self._task = None
            self._spawn(self._restart(), "cosyvoice-restart")
            return
        self._task_done.set()
        self._fail(SynthesisError("ConnectionClosed", f"synthesis socket {conn.close_reason}",
                                  task_id=task.task_id))

    async def _restart(self) -> None:
        async with self._start_lock:
            if self._task is not None or self._replay is None or self.ended or self._cancelled:
                return  # a send_text() already restarted it, or the stream is over
            try:
                await self._start_task()
            except SynthesisError as e:
                self._task_done.set()
                self._fail(e)

    async def _watch_start(self, task: SynthesisTask, conn: Connection) -> None:
        await asyncio.sleep(self._pool.timings.start_timeout_s)
        if self._task is task and task.state is TaskState.CREATED and not self._cancelled:
            log.warning("cosyvoice: no task-started within %.1f s; replacing the socket",
                        self._pool.timings.start_timeout_s)
            conn.close("start timeout", planned=False)

    async def _cancel_cleanup(self, task: SynthesisTask, conn: Connection) -> None:
        """Wait briefly for task-finished after cancel; otherwise replace the socket."""
        try:
            await asyncio.wait_for(self._task_done.wait(), self._pool.timings.cancel_grace_s)
        except asyncio.TimeoutError:
            log.info("cosyvoice: no task-finished %.1f s after cancel; replacing the socket",
                     self._pool.timings.cancel_grace_s)
            conn.close("cancel not acknowledged")
            self._detach()
        self._end()

    async def _watch_gap(self) -> None:
        """Keep every task under the server's 23 s text-gap limit (see module docstring)."""
        gap = self._pool.timings.text_gap_s
        while not (self._finished or self._cancelled or self.ended):
            task, conn = self._task, self._conn
            remaining = self._last_text_at + gap - self._clock()
            if task is None or task.finish_requested or task.done or conn is None:
                remaining = gap  # nothing to guard until a new task starts
            elif remaining <= 0:
                self.gap_finishes += 1
                if task.has_text:
                    log.info("cosyvoice: no text for %.0f s; finishing the task early", gap)
                    task.finish()
                    await self._flush()
                else:
                    log.info("cosyvoice: no text for %.0f s on an empty task; replacing socket", gap)
                    self._detach()
                    self._task = None
                    conn.close("empty task retired")
                continue
            self._text_event.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._text_event.wait(), max(remaining, 0.0))

    # -- ending ---------------------------------------------------------------------------------

    def _fail(self, error: SynthesisError) -> None:
        if self.ended:
            return
        self.error = error
        self._pool.last_error = str(error)
        log.warning("cosyvoice: %s", error)
        self._queue.put_nowait(error)
        self._end()

    def _end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.finished_at = self._clock()
        self._queue.put_nowait(None)
        self._text_event.set()
        self._task_done.set()  # nobody may wait for a task of an ended stream
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._pool.release(self)
