"""AudioEngine: builds the backends from `AudioSettings`, runs them, watches them, recovers them.

The daemon owns one engine for its whole life:

    engine = AudioEngine(settings.audio)
    await engine.start()          # opens devices/files; raises AudioConfigError on a config mistake
    engine.player.feed(...); chunk = await engine.mic.read()
    engine.status()               # SPEC §6 `audio` fields
    await engine.stop()           # closes devices; output WAV header final

Device recovery (SPEC §5.6): a watchdog task checks four times a second that each stream is
alive — no failure reported by the backend (PortAudio error, stream finished unexpectedly) and a
callback heartbeat that moved within the last second. When a PortAudio stream is not alive the
status says so (`output_ok`/`input_ok` false, `last_error`), every PortAudio stream is closed,
PortAudio is re-initialised (`sd._terminate(); sd._initialize()` — the only way to see a
restarted sound server or a re-plugged device) and the streams are reopened with exponential
backoff (0.5 s doubling to 10 s). The device is re-resolved by name each time, since indexes
change across re-plugs. Meanwhile the daemon keeps serving: the player keeps accepting audio
into its bounded ring, and the microphone simply delivers nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from agent.audio.backend import AudioError, Stream
from agent.audio.devices import load_portaudio, resolve_device
from agent.audio.filebackend import FileOutput, open_file_input
from agent.audio.microphone import MIC_RATE, Microphone
from agent.audio.nullbackend import open_null_input, open_null_output
from agent.audio.pacer import DEFAULT_PERIOD_S, Pacer
from agent.audio.playout import SOURCE_RATE, Player
from agent.config import AudioSettings

log = logging.getLogger("agent.audio")



@dataclass(frozen=True)
class EngineTimings:
    """The device watchdog's timings (seconds); tests pass short ones, users cannot set them."""

    watch_interval_s: float = 0.25
    stall_s: float = 1.0  # no callback for this long = the stream is dead
    first_callback_grace_s: float = 3.0  # a freshly opened stream may take a moment to get going
    backoff_start_s: float = 0.5
    backoff_cap_s: float = 10.0
    close_timeout_s: float = 3.0
    open_timeout_s: float = 5.0


DEFAULT_ENGINE_TIMINGS = EngineTimings()

T = TypeVar("T")
_PA_LOCK = threading.Lock()  # PortAudio calls (open/close/re-init) one at a time


async def off_loop(fn: Callable[[], T], timeout: float, what: str, cleanup: Callable[[T], None] | None = None) -> T:
    """Run a blocking PortAudio call on a *daemon* thread, with a timeout.

    Why not `asyncio.to_thread`: its worker threads are joined at interpreter exit, so one
    driver call wedged by a dying sound server would keep the daemon from exiting on SIGTERM.
    A daemon thread is simply abandoned. If the call finishes after we gave up, `cleanup`
    releases what it produced (e.g. closes a stream nobody will use).
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()
    abandoned = threading.Event()

    def deliver(result: Any, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def run() -> None:
        try:
            with _PA_LOCK:
                result = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting side
            result, exc = None, e
        else:
            exc = None
        if abandoned.is_set():
            if exc is None and cleanup is not None:
                with contextlib.suppress(Exception):
                    cleanup(result)  # type: ignore[arg-type]
            return
        try:
            loop.call_soon_threadsafe(deliver, result, exc)
        except RuntimeError:  # loop closed
            if exc is None and cleanup is not None:
                with contextlib.suppress(Exception):
                    cleanup(result)  # type: ignore[arg-type]

    threading.Thread(target=run, name=f"audio-{what}", daemon=True).start()
    try:
        return await asyncio.wait_for(fut, timeout)
    except asyncio.TimeoutError:
        abandoned.set()
        raise AudioError(f"PortAudio {what} did not return within {timeout:.0f} s") from None
    except asyncio.CancelledError:
        abandoned.set()
        raise


def _close_streams(streams: list[Stream]) -> None:
    for st in streams:
        with contextlib.suppress(Exception):
            st.close()


class AudioEngine:
    """The player, the microphone and the streams that drive them."""

    def __init__(
        self,
        settings: AudioSettings,
        *,
        output_rate: int | None = None,
        input_rate: int | None = None,
        latency: float | None = None,
        pace_s: float = DEFAULT_PERIOD_S,
        capacity_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        timings: EngineTimings = DEFAULT_ENGINE_TIMINGS,
    ) -> None:
        """`output_rate`/`input_rate` force the PortAudio device rate (normally negotiated:
        24/16 kHz if the device accepts it, else its default rate, with resampling); `latency`
        is the PortAudio latency request in seconds."""
        self.settings = settings
        self.player = Player(settings.jitter, capacity_s=capacity_s, clock=clock)
        self.mic = Microphone(settings.chunk_ms, clock=clock)
        self._force_rate = {"output": output_rate, "input": input_rate}
        self._latency = latency
        self._pace_s = pace_s
        self._clock = clock
        self.timings = timings
        self._backend = {"output": settings.output.backend, "input": settings.input.backend}
        self._streams: dict[str, Stream | None] = {"output": None, "input": None}
        self._ok = {"output": False, "input": False}
        self._hb = {"output": (-1, 0.0), "input": (-1, 0.0)}  # (heartbeat, when it last moved)
        self._opened_at = {"output": 0.0, "input": 0.0}
        self._pacer: Pacer | None = None
        self._pa: ModuleType | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._started = False
        self._stopping = False
        self.last_error: str | None = None
        self.reopens = 0
        self.wedged = False
        self._timeline_start: float | None = None  # kept after stop(), for reading the WAVs
        # Called (on the loop) when PortAudio is wedged and only a process restart can bring the
        # sound card back; a daemon under systemd should exit non-zero here (see docs/audio.md).
        self.on_fatal: Callable[[str], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def uses_portaudio(self) -> bool:
        return "sounddevice" in self._backend.values()

    def _pa_kinds(self) -> list[str]:
        return [k for k in ("output", "input") if self._backend[k] == "sounddevice"]

    async def start(self) -> None:
        """Open and start every stream. Config mistakes raise AudioConfigError (exit 78);
        a device that cannot be opened right now is retried in the background instead."""
        if self._started:
            return
        loop = asyncio.get_running_loop()
        self.player.attach_loop(loop)
        self.mic.attach_loop(loop)
        self.mic.reopen()
        s = self.settings
        if self.uses_portaudio:
            self._pa = load_portaudio()
            try:
                rows = await off_loop(self._pa.query, self.timings.open_timeout_s, "query")
            except AudioError:
                rows = []  # a wedged sound server: not a config error; the opening below reports it
            if rows:  # an empty list means no sound server yet: not a config error, retry later
                for kind in self._pa_kinds():
                    resolve_device(getattr(s, kind).device, kind, rows)
            if sys.getswitchinterval() > 0.002:
                # A Python callback needs the GIL: a 5 ms switch interval delays it ~5 ms whenever
                # the loop is busy (reference §3.3); 2 ms keeps it well inside one period.
                sys.setswitchinterval(0.002)
        paced: list[Stream] = []
        if "file" in self._backend.values() or "null" in self._backend.values():
            self._pacer = Pacer(self._pace_s, clock=self._clock)
            if self._backend["input"] == "file":
                paced.append(open_file_input(s.input.path or "", self._pacer, self.mic.capture))
            elif self._backend["input"] == "null":
                paced.append(open_null_input(self._pacer, self.mic.capture))
            if self._backend["output"] == "file":
                paced.append(FileOutput(s.output.path or "", self._pacer, self.player.render))
            elif self._backend["output"] == "null":
                paced.append(open_null_output(self._pacer, self.player.render))
        self._started = True
        self._stopping = False
        now = self._clock()
        for st in paced:
            self._set_stream(st, now)
            st.start()  # attaches to the pacer; nothing runs before pacer.start()
        if self._pacer is not None:
            self._pacer.start()  # input and output begin on the same tick: one timeline
            self._timeline_start = self._pacer.t0
        if self._pa is not None:
            try:
                await self._open_portaudio()
            except Exception as e:  # device busy, server down, ...: keep serving and retry
                self._report(f"cannot open audio device: {_describe(e)}")
                self._recovery = asyncio.create_task(self._recover(), name="audio-recovery")
        self._watchdog = asyncio.create_task(self._watch(), name="audio-watchdog")

    async def stop(self) -> None:
        """Stop all streams and close files/devices (the output WAV header is final after this)."""
        if not self._started:
            return
        self._stopping = True
        for task in (self._watchdog, self._recovery):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._watchdog = self._recovery = None
        if self._pacer is not None:
            await asyncio.to_thread(self._pacer.stop)
        for kind in ("output", "input"):
            st = self._streams[kind]
            if st is not None and self._backend[kind] != "sounddevice":
                st.close()
                if st.failed:
                    self._report(st.failed)
        await self._close_portaudio()
        self._pacer = None
        self._ok = {"output": False, "input": False}
        self.mic.close()
        self.player.attach_loop(None)
        self._started = False

    def _set_stream(self, st: Stream, now: float) -> None:
        self._streams[st.kind] = st
        self._opened_at[st.kind] = now
        self._ok[st.kind] = True
        log.info("audio %s: %s at %d Hz", st.kind, st.description, st.samplerate)

    def _report(self, message: str) -> None:
        if message != self.last_error:
            log.warning("audio: %s", message)
        self.last_error = message

    # ------------------------------------------------------------------ PortAudio

    def _open_portaudio_sync(self) -> list[Stream]:
        """Resolve devices, negotiate rates and open (not start) the PortAudio streams."""
        pa = self._pa
        assert pa is not None
        rows = pa.query()
        if not rows:
            raise AudioError("no audio devices (sound server not running?)")
        opened: list[Stream] = []
        latency = self._latency if self._latency is not None else pa.DEFAULT_LATENCY_S
        try:
            for kind in self._pa_kinds():
                dev = resolve_device(getattr(self.settings, kind).device, kind, rows)
                preferred = SOURCE_RATE if kind == "output" else MIC_RATE
                rate = self._force_rate[kind] or pa.negotiate_rate(dev, kind, preferred)
                if kind == "output":
                    opened.append(pa.PortAudioOutput(dev, rate, self.player.render, latency))
                else:
                    opened.append(pa.PortAudioInput(dev, rate, self.mic.capture, latency))
        except BaseException:
            for st in opened:
                st.close()
            raise
        return opened

    async def _open_portaudio(self) -> None:
        opened = await off_loop(self._open_portaudio_sync, self.timings.open_timeout_s, "open", cleanup=_close_streams)
        # Rate changes touch producer-side state: do them on the loop thread, before start.
        for st in opened:
            if st.kind == "output":
                self.player.set_device_rate(st.samplerate)
            else:
                self.mic.set_device_rate(st.samplerate)
        try:
            await off_loop(lambda: [st.start() for st in opened], self.timings.open_timeout_s, "start")
        except BaseException:
            with contextlib.suppress(Exception):
                await off_loop(lambda: _close_streams(opened), self.timings.close_timeout_s, "close")
            raise
        now = self._clock()
        for st in opened:
            self._set_stream(st, now)

    async def _close_portaudio(self) -> None:
        streams = [self._streams[k] for k in self._pa_kinds() if self._streams[k] is not None]
        for k in self._pa_kinds():
            self._streams[k] = None
            self._ok[k] = False
        if not streams:
            return

        # A wedged driver can hang in close; never let that stall the daemon.
        try:
            await off_loop(lambda: _close_streams(streams), self.timings.close_timeout_s, "close")
        except AudioError as e:
            self._wedge(str(e))

    def _wedge(self, why: str) -> None:
        """PortAudio cannot recover in this process.

        Seen with PortAudio 19.6 and the ALSA pulse plugin when the sound server dies: a capture
        stream's thread can loop forever in `PaAlsaStream_WaitForFrames`' error path (a
        `PA_UNLESS` after its own `error:` label jumps back to it), printing to stderr, and then
        ignores abort/close. Terminating PortAudio would hang on that stream too. The thread
        lives until the process exits, so the remedy is a process restart.
        """
        if self.wedged:
            return
        self.wedged = True
        msg = f"PortAudio is wedged ({why}); audio devices need a process restart"
        self._report(msg)
        log.critical("audio: %s", msg)
        if self.on_fatal is not None:
            self.on_fatal(msg)

    async def _recover(self) -> None:
        """Close, re-initialise PortAudio, reopen; back off exponentially until it works."""
        pa = self._pa
        assert pa is not None
        delay = self.timings.backoff_start_s
        await self._close_portaudio()
        while not self._stopping and not self.wedged:
            try:
                await off_loop(pa.reinitialize, self.timings.close_timeout_s, "re-initialisation")
                await self._open_portaudio()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._report(f"reopening audio device failed: {_describe(e)}; retry in {delay:.1f} s")
                await self._close_portaudio()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.timings.backoff_cap_s)
                continue
            self.reopens += 1
            log.info("audio: devices reopened (%d reopen(s) so far)", self.reopens)
            return

    # ------------------------------------------------------------------ watchdog

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.timings.watch_interval_s)
            self.check_streams()

    def check_streams(self) -> None:
        """One watchdog pass (public so tests can drive it)."""
        now = self._clock()
        beats = {"output": self.player.heartbeat, "input": self.mic.heartbeat}
        need_recovery = False
        for kind in ("output", "input"):
            st = self._streams[kind]
            if st is None:
                continue
            hb, since = self._hb[kind]
            if beats[kind] != hb:
                self._hb[kind] = (beats[kind], now)
                since = now
            reason = st.failed
            moved_since_open = since >= self._opened_at[kind]
            quiet = now - max(since, self._opened_at[kind])
            limit = self.timings.stall_s if moved_since_open else self.timings.first_callback_grace_s
            if reason is None and quiet > limit:
                reason = f"{kind} callback not called for {quiet:.1f} s ({st.description})"
            self._ok[kind] = reason is None
            if reason is not None:
                self._report(reason)
                need_recovery = need_recovery or self._backend[kind] == "sounddevice"
        if (
            need_recovery
            and not self._stopping
            and not self.wedged
            and (self._recovery is None or self._recovery.done())
        ):
            for k in self._pa_kinds():
                self._ok[k] = False
            self._recovery = asyncio.get_running_loop().create_task(self._recover(), name="audio-recovery")

    # ------------------------------------------------------------------ status

    @property
    def timeline_start(self) -> float | None:
        """Monotonic time of sample 0 of the file/null streams (both WAVs share it): output
        sample i played at `timeline_start + i / 24000`, input sample j was heard at
        `timeline_start + j / 16000`. None without a paced backend or before start(); kept
        after stop() so the files can be analysed afterwards."""
        return self._timeline_start

    @property
    def output_ok(self) -> bool:
        return self._ok["output"]

    @property
    def input_ok(self) -> bool:
        return self._ok["input"]

    def status(self) -> dict[str, Any]:
        """The SPEC §6 `audio` object (plus diagnostics)."""
        ps = self.player.stats()
        ms = self.mic.stats()
        out, inp = self._streams["output"], self._streams["input"]
        return {
            "input_ok": self.input_ok,
            "output_ok": self.output_ok,
            "underruns": ps.underruns,
            "underrun_ms": ps.underrun_ms,
            "host_underflows": ps.host_underflows,
            "buffered_ms": ps.buffered_ms,
            "state": ps.state,
            "target_ms": ps.target_ms,
            "speaking": self.player.activity.speaking(time.monotonic()),
            "output_device": out.description if out else None,
            "input_device": inp.description if inp else None,
            "output_rate": self.player.device_rate,
            "input_rate": self.mic.device_rate,
            "output_latency_ms": ps.latency_ms,
            "dropped_ms": ps.dropped_ms,
            "input_dropped_chunks": ms.dropped_chunks,
            "input_overflows": ms.overflows,
            "muted": ms.muted,
            "reopens": self.reopens,
            "wedged": self.wedged,
            "last_error": self.last_error,
        }


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
