"""A rig for reliability tests: the real daemon, null audio, a scripted user, the emulator.

Everything is real except the sound card: the daemon runs in this event loop with the null audio
backends (which still pace playout in real time), its microphone speaks on demand
(`agent.audio.virtual.ScriptedMic`, shared with the soak benchmark), and the emulator serves on
loopback. A status sampler polls `daemon.status.as_dict()` every few milliseconds, so a test can
ask what the status said *while* a fault was in force, not only after it.

This is the `daemon` layer with null audio and a `ScriptedMic` instead of file audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.audio.engine import AudioEngine
from agent.audio.virtual import ScriptedMic
from agent.config import Settings
from agent.daemon import DEFAULT_DAEMON_TIMINGS, Daemon, DaemonTimings
from agent.emulator.server import Emulator
from agent.emulator.speech import synthesize
from agent.modes import Turn
from agent.voices.client import ClientOptions
from agent.voices.ensure import EnsureOptions
from tests.support.emulator import API_KEY, RELIABILITY_FAST, new_emulator
from tests.support.settings import build_settings

BYE = "Goodbye."
JOKE = "Tell me a joke."

# Enrollment gives up quickly, so the daemon's own retry loop (and its status) take over.
FAST_ENSURE = EnsureOptions(
    client=ClientOptions(request_timeout_s=5.0, create_timeout_s=5.0, upload_timeout_s=5.0,
                         retries=1, backoff_initial_s=0.05, backoff_max_s=0.1),
    poll_initial_s=0.05, poll_factor=1.5, poll_max_s=0.2, deploy_timeout_s=5.0,
    settle_delays_s=(0.1,), lock_timeout_s=10.0,
)


def settings_for(mode: str, base_url: str, work: Path, *, input: str = "text",
                 family: str = "preset", sample: Path | None = None) -> Settings:
    """Daemon settings: null audio, no echo gate, the emulator at `base_url`."""
    voice: dict[str, Any] = {"family": family, "name": "kiosk"}
    if family == "preset":
        voice["preset"] = "Tina" if mode == "omni" else "longanyang"
    else:
        voice["sample"] = str(sample)
    # A local CosyVoice sample goes through the temporary upload, which exists in cn only (the
    # capability table refuses it in intl at start-up).
    region = "cn" if family == "cosyvoice" else "intl"
    return build_settings(mode, base_url=base_url, work=work, audio="null", voice=voice,
                          origin="<reliability>", pipeline__input=input, log__transcripts=False,
                          dashscope__region=region)


def free_port() -> int:
    """A loopback port nobody listens on (connecting to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the rig -----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    t: float
    state: str
    connected: bool
    last_error: str | None


@dataclass
class Rig:
    """One daemon against one emulator (which may start later, for connection-refused cases)."""

    work: Path
    emulator: Emulator
    daemon: Daemon
    mic: ScriptedMic
    task: asyncio.Task[int]
    turns: asyncio.Queue[Turn]
    max_tokens: int | None = 3
    started: float = field(default_factory=time.monotonic)  # just before the daemon started
    timeline: list[Snapshot] = field(default_factory=list)
    summaries: list[tuple[float, str]] = field(default_factory=list)  # sd_notify STATUS= lines

    @property
    def status(self) -> dict[str, Any]:
        return self.daemon.status.as_dict()

    @property
    def mode(self) -> Any:
        """The running mode; pipeline answers are kept to `max_tokens` LLM tokens."""
        mode = self.daemon.mode
        if mode is None:
            raise RuntimeError("the daemon is not serving yet: " + str(self.status["last_error"]))
        if self.max_tokens is not None and hasattr(mode, "llm"):
            mode.llm.parameters["max_tokens"] = self.max_tokens
        return mode

    def alive(self) -> bool:
        return not self.task.done()

    def requests(self, path: str) -> list[float]:
        """Arrival times (wall clock) of requests / WebSocket upgrades on `path`."""
        log = self.emulator.context.request_log
        return [r.time for r in log.records() if r.path.startswith(path)]

    def faults(self, spec: str | None) -> float:
        """Replace the emulator's fault plan; returns when (monotonic)."""
        if spec:
            self.emulator.context.faults.set(spec)
        else:
            self.emulator.context.faults.clear()
        return time.monotonic()

    def note(self) -> None:
        """Record the status if it changed since the last record."""
        st = self.daemon.status
        now = (st.state.value, st.connected, st.last_error)
        last = self.timeline[-1] if self.timeline else None
        if last is None or (last.state, last.connected, last.last_error) != now:
            self.timeline.append(Snapshot(time.monotonic(), *now))

    async def sample_status(self) -> None:
        while True:
            self.note()
            await asyncio.sleep(0.005)

    def first(self, pred: Callable[[Snapshot], bool], since: float) -> Snapshot | None:
        """The first recorded status after `since` that satisfies `pred`."""
        return next((s for s in self.timeline if s.t >= since and pred(s)), None)

    async def until(self, pred: Callable[[], bool], timeout: float, what: str) -> float:
        """Wait for `pred()`; returns when it became true (monotonic). Fails after `timeout`."""
        deadline = time.monotonic() + timeout
        while not pred():
            assert self.alive(), f"the daemon exited while waiting for {what}: {self.task!r}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s; status {self.status}")
            await asyncio.sleep(0.005)
        self.note()  # the timeline must hold what we just saw
        return time.monotonic()

    # --- answers -------------------------------------------------------------------------------

    async def answer(self, question: str = BYE, timeout: float = 15.0) -> float:
        """Ask (as text) and wait for a complete answer; returns when it became audible."""
        if self.daemon.settings.mode == "omni":
            return await self._omni_answer(question, timeout)
        turn = await self.mode.ask(question)
        await asyncio.wait_for(turn.done.wait(), timeout)
        assert turn.error is None and not turn.interrupted and turn.answered, turn
        assert turn.latency_ms is not None and turn.speech_end_at is not None
        return turn.speech_end_at + turn.latency_ms / 1000.0

    async def spoken_answer(self, question: str = BYE, timeout: float = 20.0,
                            quiet_s: float = 0.0) -> float:
        """Say `question` into the microphone and wait for the answered turn (pipeline, mic).

        `quiet_s`: first wait until the user has been silent and nothing played for this long,
        so the question does not run into the tail of an utterance a fault cut in two (after a
        reconnect the pre-roll carries that tail, and the server would hear one garbled
        sentence)."""
        while not self.turns.empty():
            self.turns.get_nowait()
        mode = self.mode  # serving, with the answer length set
        player = self.daemon.engine.player  # type: ignore[union-attr]
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < quiet_s:
            if mode.asr.user_speaking or player.activity.busy(time.monotonic()):
                quiet_since = time.monotonic()
            await asyncio.sleep(0.02)
        self.mic.say(question)
        deadline = time.monotonic() + timeout
        while True:
            turn = await asyncio.wait_for(self.turns.get(), max(0.1, deadline - time.monotonic()))
            if turn.heard == question and turn.error is None and not turn.interrupted:
                assert turn.latency_ms is not None and turn.speech_end_at is not None
                return turn.speech_end_at + turn.latency_ms / 1000.0

    async def _omni_answer(self, question: str, timeout: float) -> float:
        """Omni: the answer counts once it has fully arrived (`response.done`) and its first
        sample was audible. Waiting for the whole answer to play out would cost ~5 s of real
        time per case and prove nothing more about recovery."""
        mode, player, status = self.mode, self.daemon.engine.player, self.daemon.status  # type: ignore[union-attr]
        before = status.turns
        seen = player.current_response
        await mode.ask(question)
        deadline = time.monotonic() + timeout
        rid = None
        while True:
            current = player.current_response  # None again once the answer has fully arrived
            if rid is None and current is not None and current != seen:
                rid = current
            st = player.response_stats(rid) if rid else None
            if st is not None and st.first_audible is not None and status.turns > before:
                assert not st.interrupted and status.connected, status.as_dict()
                return st.first_audible
            assert self.alive() and time.monotonic() < deadline, f"no answer: {status.as_dict()}"
            await asyncio.sleep(0.005)

    async def answer_soon(self, question: str = BYE, timeout: float = 20.0,
                          spoken: bool = False, quiet_s: float = 0.0) -> tuple[float, int]:
        """Keep asking until a turn works (as a kiosk would); returns (audible at, failed tries)."""
        deadline = time.monotonic() + timeout
        failures = 0
        while True:
            try:
                if spoken:  # a garbled utterance (cut by the fault) is simply said again
                    left = max(1.0, deadline - time.monotonic())
                    return await self.spoken_answer(question, min(8.0, left), quiet_s), failures
                return await self.answer(question, max(1.0, deadline - time.monotonic())), failures
            except (AssertionError, RuntimeError, asyncio.TimeoutError):
                failures += 1
                if time.monotonic() > deadline or not self.alive():
                    raise
                await asyncio.sleep(0.2)

    async def stop(self) -> int:
        self.daemon.request_stop()
        return await asyncio.wait_for(self.task, 10.0)


@contextlib.asynccontextmanager
async def rig(
    work: Path,
    settings: Callable[[str], Settings],
    *,
    faults: str | None = None,
    emulator_options: dict[str, Any] | None = None,
    port: int | None = None,
    start_emulator: bool = True,
    ensure_options: EnsureOptions | None = FAST_ENSURE,
    max_tokens: int | None = 3,
    timings: DaemonTimings = DEFAULT_DAEMON_TIMINGS,
) -> AsyncIterator[Rig]:
    """Start an emulator (unless `start_emulator` is False: the test starts it on `port` later)
    and the daemon with `settings(base_url)`; stop both afterwards.

    `max_tokens` keeps pipeline answers to a few words (the LLM is asked for that many tokens),
    so a turn plays in about a second. `timings` scales the daemon's components down.
    """
    emulator = new_emulator(faults, **{**RELIABILITY_FAST, **(emulator_options or {})})
    if start_emulator:
        base = await emulator.start(port=port or 0)
    else:
        assert port is not None
        base = f"http://127.0.0.1:{port}"
    s = settings(base)
    engine = AudioEngine(s.audio, timings=timings.engine)
    mic = ScriptedMic(synthesize)
    mic.install(engine)
    turns: asyncio.Queue[Turn] = asyncio.Queue()
    daemon = Daemon(s, api_key=API_KEY, engine=engine, control=False, turn_listener=turns,
                    ensure_options=ensure_options, timings=timings)
    started = time.monotonic()
    task = asyncio.create_task(daemon.run(), name="daemon")
    r = Rig(work, emulator, daemon, mic, task, turns, max_tokens, started)
    notify = daemon.status.on_change

    def on_change(text: str) -> None:  # what the daemon tells systemd, kept for the test
        r.summaries.append((time.monotonic(), text))
        if notify is not None:
            notify(text)

    daemon.status.on_change = on_change
    sampler = asyncio.create_task(r.sample_status(), name="status-sampler")
    try:
        await asyncio.wait_for(daemon.ready.wait(), 10)
        yield r
    finally:
        sampler.cancel()
        if not task.done():
            daemon.request_stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 10)
        await emulator.stop()
