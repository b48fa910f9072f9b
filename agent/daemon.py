"""The daemon: start-up order, the long-lived tasks, control requests and a clean shutdown.

SPEC §5.1: config → secrets → state dir → audio → READY → voice → connect → serve. READY does not
wait for the cloud (a device must boot without network); the voice and the session are retried
in the background while the status says why. A refused or unreachable enrollment does not keep
the device mute: it serves with the fallback voice meanwhile (`agent.voices.keeper`, SPEC §13). SIGTERM/SIGINT end everything within 5 s, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import sdnotify
from agent.account import DashScopeAccount
from agent.audio.engine import DEFAULT_ENGINE_TIMINGS, AudioEngine, EngineTimings
from agent.capabilities import Finding
from agent.config import ConfigError, Settings, parse_listen
from agent.control import ControlServer, resolve_socket_path
from agent.echo import aec_problem
from agent.events import EventBus
from agent.integration import Integration
from agent.listen.errors import ListenConfigError
from agent.listen.runtime import COMMANDS as LISTEN_COMMANDS
from agent.listen.runtime import load_engines
from agent.memory import Memory
from agent.metrics import require_prometheus
from agent.modes import Mode, Turn
from agent.statedir import open_state_dir
from agent.status import Status
from agent.tools.factory import build_registry
from agent.tools.registry import ToolRegistry
from agent.tools.timers import Ringer
from agent.voices.keeper import VoiceKeeper
from agent.voices.plan import check_voice_config, describe_with_sources
from agent.watchdog import Watchdog

if TYPE_CHECKING:  # enrollment and the modes pull in aiohttp and websockets: after READY
    from agent.pipeline import PipelineTimings
    from agent.realtime.connection import RealtimeTimings
    from agent.realtime.session import SessionTimings
    from agent.tts.connection import TtsTimings
    from agent.voices.ensure import EnsureOptions, VoiceResult

log = logging.getLogger("voice-agent")

EX_TEMPFAIL = 75  # sysexits.h: try again later (a fresh process), see _on_audio_fatal
SHUTDOWN_BUDGET_S = 4.0  # SPEC §5.8: exit within 5 s of SIGTERM
TOOLS_START_WAIT_S = 2.0  # READY never waits longer for tool sources (an MCP server may be down)


@dataclass(frozen=True)
class DaemonTimings:
    """The daemon's own retry timings and the ones it hands to each component.

    Tests and benchmarks pass shorter ones; users cannot set them (SPEC §4 keys are fixed). A
    component field left None means that component's own defaults: the modes' modules are
    imported after READY, not here.
    """

    voice_retry_s: tuple[float, float] = (2.0, 300.0)  # enrollment retries: first delay, cap
    auth_retry_s: tuple[float, float] = (60.0, 900.0)  # enrollment with a refused key
    engine: EngineTimings = DEFAULT_ENGINE_TIMINGS
    realtime: RealtimeTimings | None = None
    session: SessionTimings | None = None
    pipeline: PipelineTimings | None = None
    tts: TtsTimings | None = None


def _given(**timings: Any) -> dict[str, Any]:
    return {k: v for k, v in timings.items() if v is not None}


DEFAULT_DAEMON_TIMINGS = DaemonTimings()


def preflight(settings: Settings) -> list[Finding]:
    """What cannot run on this machine, refused with exit 78 before touching anything.

    Returns what the documents disagree on for this configuration (logged as warnings by `run`).
    """
    warnings = check_voice_config(settings)  # sample, design prompt, region × model: start-up checks
    if settings.metrics.listen is not None:
        try:
            require_prometheus()
        except ImportError as e:
            raise ConfigError(f"{settings.source}: {e}") from None
    mcp_problem = _mcp_problem(settings)
    if mcp_problem is not None:
        raise ConfigError(f"{settings.source}: {mcp_problem}")
    if settings.audio.echo == "aec":
        why = aec_problem()  # the canceller is an optional extra: say how to get it
        if why is not None:
            raise ConfigError(
                f"{settings.source}: audio.echo: 'aec' needs the optional echo canceller: {why}; "
                "or use audio.echo: gate (no extra needed) or half_duplex"
            )
    return warnings


def _mcp_problem(settings: Settings) -> str | None:
    """`tools.mcp` servers configured but the optional `mcp` package missing (exit 78)."""
    tools = getattr(settings, "tools", None)
    if not getattr(tools, "mcp", None):
        return None
    from agent.tools.mcp_config import mcp_missing

    return mcp_missing()


def load_listen_engines(settings: Settings) -> tuple[Any, ...]:
    """The wake-word model and VAD the listen mode needs; an unusable model is exit 78."""
    try:
        return load_engines(settings)
    except ListenConfigError as e:
        raise ConfigError(f"{settings.source}: {e.key}: {e.message}") from None


def make_mode(
    settings: Settings, account: DashScopeAccount, engine: AudioEngine, status: Status,
    voice: str | None, memory: Memory | None = None, tools: ToolRegistry | None = None,
    listen_engines: tuple[Any, ...] | None = None, timings: DaemonTimings = DEFAULT_DAEMON_TIMINGS,
) -> Mode:
    """The mode `settings.mode` names; both offer the same `Mode` surface."""
    t = timings
    if settings.mode == "pipeline":
        from agent.pipeline import PipelineMode

        return PipelineMode(settings, account, engine, status, voice, memory=memory, tools=tools,
                            listen_engines=listen_engines, **_given(
            timings=t.pipeline, tts=t.tts, realtime=t.realtime, session=t.session))
    from agent.omni import OmniMode

    return OmniMode(settings, account, engine, status, voice, memory=memory, tools=tools,
                    listen_engines=listen_engines,
                    **_given(realtime=t.realtime, session=t.session))


class Daemon:
    """Owns the audio engine, the mode, the control socket and the watchdog."""

    def __init__(
        self,
        settings: Settings,
        *,
        api_key: str | None = None,
        ensure_options: EnsureOptions | None = None,
        engine: AudioEngine | None = None,
        control: bool = True,
        turn_listener: asyncio.Queue[Turn] | None = None,
        timings: DaemonTimings = DEFAULT_DAEMON_TIMINGS,
    ) -> None:
        self.settings = settings
        self.timings = timings
        self.api_key = api_key  # None: resolved from the settings (SPEC §4 order) at start
        self.account: DashScopeAccount | None = None  # the one account every component gets
        self.ensure_options = ensure_options
        self.engine = engine
        self.use_control = control
        self.turn_listener = turn_listener
        self.status = Status(mode=settings.mode)
        self.status.on_change = self._on_status_change
        self.integration: Integration | None = None  # events, volume, metrics: once the state dir is open
        self.mode: Mode | None = None
        self.memory: Memory | None = None  # conversation memory (SPEC §11), once the state dir is open
        self.keeper: VoiceKeeper | None = None
        self.tools: ToolRegistry | None = None  # once the state dir and the volume exist
        self.ringer = Ringer(self._timer_earcon, self._say)
        self._tools_start: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._fatal: str | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._listen_engines: tuple[Any, ...] | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT or `request_stop()`; return the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        for finding in preflight(self.settings):
            log.warning("%s", describe_with_sources(finding))
        self._listen_engines = load_listen_engines(self.settings)
        self.account = DashScopeAccount.from_settings(self.settings, self.api_key)
        state_dir = open_state_dir(self.settings)
        listen = self.settings.metrics.listen
        self.integration = Integration(self.status, state_dir, parse_listen(listen) if listen else None)
        self.memory = self._open_memory(state_dir)
        self.integration.events.listen(self._on_event)
        control: ControlServer | None = None
        watchdog: Watchdog | None = None
        try:
            if self.engine is None:
                self.engine = AudioEngine(self.settings.audio, timings=self.timings.engine)
            self.engine.on_fatal = self._on_audio_fatal
            await self.engine.start()
            self.status.audio_status = self.engine.status
            self.integration.attach_player(self.engine.player)
            await self.integration.start()
            await self._start_tools(state_dir)
            if self.use_control:
                control = ControlServer(DaemonControl(self), resolve_socket_path(self.settings))
                await control.start()
            player = self.engine.player
            watchdog = Watchdog(
                audio_heartbeat=lambda: player.heartbeat,
                is_audio_expected=self.engine.output_ok,
            )
            watchdog.start()
            sdnotify.ready("starting: audio ready, preparing the voice")
            self.ready.set()
            log.info("ready (mode %s, state dir %s)", self.settings.mode, state_dir)
            self._tasks.append(asyncio.create_task(self._serve(state_dir), name="serve"))
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait([stop, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
            for t in self._tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            return EX_TEMPFAIL if self._fatal else 0
        finally:
            await self._shutdown(control, watchdog)

    def _open_memory(self, state_dir: Path) -> Memory:
        """The remembered turns (loaded from state_dir), fed by the event stream."""
        assert self.integration is not None
        memory = Memory.from_settings(self.settings, state_dir)
        memory.on_change = lambda n: setattr(self.status, "memory_turns", n)
        memory.load()
        self.integration.events.listen(memory.observe)
        return memory

    # --- tools (SPEC §11) -----------------------------------------------------------------------

    async def _start_tools(self, state_dir: Path) -> None:
        """The registry the modes call (built-ins and MCP servers); timers saved in the state
        dir are scheduled again, so one set before a restart rings on time."""
        assert self.integration is not None
        if not self.settings.tools.builtin and not self.settings.tools.mcp:
            return
        self.tools = build_registry(
            self.settings, state_dir=state_dir, volume=self.integration.volume,
            on_timer_due=self.ringer.ring,
            publish=lambda event, **fields: self.status.publish(event, **fields))
        self.status.tools_status = self.tools.status
        if self.memory is not None:  # tool results in short, for the next session (SPEC §11)
            self.tools.on_call.append(self.memory.tool_call)
        self._tools_start = asyncio.create_task(self.tools.start(), name="tools-start")
        await asyncio.wait({self._tools_start}, timeout=TOOLS_START_WAIT_S)  # the rest goes on

    def _timer_earcon(self) -> None:
        """The timer earcon (when `listen.earcons`), unless an answer is playing: starting
        another response would cut that answer."""
        from agent.listen.runtime import play_earcon

        if self.engine is None or not self.settings.listen.earcons:
            return
        if play_earcon(self.engine.player, "timer") == 0.0:
            log.info("timer earcon skipped: %s is playing", self.engine.player.current_response)

    def _on_event(self, event: str, fields: dict[str, Any]) -> None:
        """The wake word silences a ringing timer, as `interrupt` does (SPEC §11)."""
        if event == "wake" and self.ringer.stop():
            log.info("timer ringing stopped by the wake word")

    async def _say(self, text: str) -> Any:
        if self.mode is None:
            raise RuntimeError("not serving yet")
        return await self.mode.say(text)

    def _on_audio_fatal(self, message: str) -> None:
        """PortAudio is wedged (a driver thread that never returns): only a new process helps.

        Exit 75 (EX_TEMPFAIL) so systemd's Restart=on-failure starts a fresh process.
        """
        self._fatal = message
        self.status.error(f"audio: {message}; restarting the process")
        self.request_stop()

    def request_stop(self) -> None:
        self._stop.set()

    async def _shutdown(self, control: ControlServer | None, watchdog: Watchdog | None) -> None:
        sdnotify.stopping("stopping")
        log.info("stopping")

        async def steps() -> None:
            if self.mode is not None:
                await self.mode.stop(timeout=2.0)
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.ringer.close()
            if self._tools_start is not None and not self._tools_start.done():
                self._tools_start.cancel()
                await asyncio.gather(self._tools_start, return_exceptions=True)
            if self.tools is not None:
                await self.tools.stop()
            if self.memory is not None:
                await self.memory.flush()  # the last turn is on disk before we exit
            if control is not None:
                await control.close()
            if self.integration is not None:
                await self.integration.close()
            if watchdog is not None:
                await watchdog.stop()

        try:
            await asyncio.wait_for(steps(), SHUTDOWN_BUDGET_S - 1.0)
        except asyncio.TimeoutError:
            log.warning("shutdown took too long; closing devices anyway")
        if self.engine is not None:
            await self.engine.stop()  # the output WAV header is final after this

    async def _serve(self, state_dir: Path) -> None:
        assert self.engine is not None and self.account is not None
        keeper = VoiceKeeper(self.settings, self.account, state_dir, self.status,
                             options=self.ensure_options, retry=self.timings.voice_retry_s,
                             auth_retry=self.timings.auth_retry_s)
        self.keeper = keeper
        voice = await keeper.first_voice()  # the configured voice, or the fallback (SPEC §13)
        self.mode = make_mode(
            self.settings, self.account, self.engine, self.status, voice, self.memory, self.tools,
            self._listen_engines, self.timings,
        )
        keeper.on_voice = self.mode.set_voice
        if not keeper.settled:
            # Refused, unreachable or only cached: keep trying, switch the voice when it works.
            self._tasks.append(asyncio.create_task(keeper.keep(), name="voice-keeper"))
        if self.turn_listener is not None:
            self.mode.turn_listeners.append(self.turn_listener)
        await self.mode.run()

    @property
    def voice(self) -> VoiceResult | None:
        """The enrollment result in use (None until the first success)."""
        return self.keeper.result if self.keeper is not None else None

    def _on_status_change(self, text: str) -> None:
        sdnotify.status(text)


class DaemonControl:
    """The control socket's view of the daemon (SPEC §6): a `ControlHandler`."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def status(self) -> dict[str, Any]:
        return self.daemon.status.as_dict()

    @property
    def events(self) -> EventBus:
        return self._integration().events

    def volume(self, level: int | None) -> int:
        return self._integration().volume(level)

    def _integration(self) -> Integration:
        if self.daemon.integration is None:
            raise RuntimeError("starting: the event stream and volume are not ready yet")
        return self.daemon.integration

    async def say(self, text: str) -> None:
        await self._mode().say(text)  # queued; played after whatever is being said now

    async def ask(self, text: str) -> None:
        await self._mode().ask(text)

    def _mode(self) -> Mode:
        mode = self.daemon.mode
        if mode is None:
            raise RuntimeError("not serving yet: " + (self.daemon.status.last_error or "starting"))
        return mode

    async def interrupt(self) -> None:
        if self.daemon.ringer.stop():
            log.info("timer ringing stopped by interrupt")
        if self.daemon.mode is not None:
            await self.daemon.mode.interrupt()

    async def forget(self) -> None:
        """Clear the conversation memory, in memory and on disk (SPEC §6)."""
        if self.daemon.memory is None:
            raise RuntimeError("starting: the memory is not open yet")
        await self.daemon.memory.forget()
    async def listen(self) -> None:
        """Open one turn now, as if the wake word had been heard (SPEC §6 `listen`)."""
        self._uplink().post(LISTEN_COMMANDS["listen"])

    async def talk(self, action: str | None) -> None:
        """Push-to-talk: `start` sends the microphone upstream, `stop` ends the turn."""
        self._uplink().post(LISTEN_COMMANDS[f"talk_{action}"])

    def _uplink(self) -> Any:
        uplink = getattr(self._mode(), "uplink", None)
        if uplink is None:
            raise RuntimeError("no microphone uplink (pipeline.input is text)")
        return uplink

    def mute(self) -> None:
        self._set_muted(True)

    def unmute(self) -> None:
        self._set_muted(False)

    def _set_muted(self, muted: bool) -> None:
        self.daemon.status.muted = muted
        if self.daemon.engine is not None:
            self.daemon.engine.mic.muted = muted
        log.info("microphone %s", "muted" if muted else "unmuted")
