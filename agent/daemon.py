"""The daemon: start-up order, the long-lived tasks, control requests and a clean shutdown.

SPEC §5.1: config → secrets → state dir → audio → READY → voice → connect → serve. READY does not
wait for the cloud (a device must boot without network); the voice and the session are retried
in the background while the status says why. SIGTERM/SIGINT end everything within 5 s, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import sdnotify
from agent.audio.engine import AudioEngine
from agent.backoff import Backoff
from agent.config import ConfigError, Settings, parse_listen
from agent.control import ControlServer, resolve_socket_path
from agent.echo import aec_problem
from agent.endpoints import Endpoints, resolve_endpoints
from agent.events import EventBus
from agent.integration import Integration
from agent.listen.errors import ListenConfigError
from agent.listen.runtime import COMMANDS as LISTEN_COMMANDS
from agent.listen.runtime import load_engines
from agent.metrics import require_prometheus
from agent.modes import Mode, Turn
from agent.secrets import redact, resolve_api_key
from agent.statedir import open_state_dir
from agent.status import AgentState, Status
from agent.voices.errors import AuthError, QuotaError, VoiceError
from agent.voices.plan import check_voice_config
from agent.watchdog import Watchdog

if TYPE_CHECKING:  # enrollment pulls in aiohttp (~40 % of this module's import time): after READY
    from agent.voices.ensure import EnsureOptions, VoiceResult

log = logging.getLogger("voice-agent")

EX_TEMPFAIL = 75  # sysexits.h: try again later (a fresh process), see _on_audio_fatal
SHUTDOWN_BUDGET_S = 4.0  # SPEC §5.8: exit within 5 s of SIGTERM
VOICE_RETRY = (2.0, 300.0)  # enrollment retries: first delay, cap (seconds)
AUTH_RETRY = (60.0, 900.0)


def preflight(settings: Settings) -> None:
    """What cannot run on this machine, refused with exit 78 before touching anything."""
    check_voice_config(settings)  # sample file, design prompt: start-up checks, not schema
    if settings.metrics.listen is not None:
        try:
            require_prometheus()
        except ImportError as e:
            raise ConfigError(f"{settings.source}: {e}") from None
    if settings.audio.echo == "aec":
        why = aec_problem()  # the canceller is an optional extra: say how to get it
        if why is not None:
            raise ConfigError(
                f"{settings.source}: audio.echo: 'aec' needs the optional echo canceller: {why}; "
                "or use audio.echo: gate (no extra needed) or half_duplex"
            )


def load_listen_engines(settings: Settings) -> tuple[Any, Any]:
    """The wake-word model and VAD the listen mode needs; an unusable model is exit 78."""
    try:
        return load_engines(settings)
    except ListenConfigError as e:
        raise ConfigError(f"{settings.source}: {e.key}: {e.message}") from None


def make_mode(
    settings: Settings, endpoints: Endpoints, api_key: str, engine: AudioEngine, status: Status,
    voice: str | None, listen_engines: tuple[Any, Any] | None = None,
) -> Mode:
    """The mode `settings.mode` names; both offer the same `Mode` surface."""
    if settings.mode == "pipeline":
        from agent.pipeline import PipelineMode

        return PipelineMode(settings, endpoints, api_key, engine, status, voice,
                            listen_engines=listen_engines)
    from agent.omni import OmniMode

    return OmniMode(settings, endpoints, api_key, engine, status, voice,
                    listen_engines=listen_engines)


class Daemon:
    """Owns the audio engine, the mode, the control socket and the watchdog."""

    def __init__(
        self,
        settings: Settings,
        *,
        api_key: str | None = None,
        endpoints: Endpoints | None = None,
        ensure_options: EnsureOptions | None = None,
        engine: AudioEngine | None = None,
        control: bool = True,
        turn_listener: asyncio.Queue[Turn] | None = None,
    ) -> None:
        self.settings = settings
        self.api_key = api_key
        self.endpoints = endpoints or resolve_endpoints(settings.dashscope)
        self.ensure_options = ensure_options
        self.engine = engine
        self.use_control = control
        self.turn_listener = turn_listener
        self.status = Status(mode=settings.mode)
        self.status.on_change = self._on_status_change
        self.integration: Integration | None = None  # events, volume, metrics: once the state dir is open
        self.mode: Mode | None = None
        self.voice: VoiceResult | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._fatal: str | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._listen_engines: tuple[Any, Any] | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT or `request_stop()`; return the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        preflight(self.settings)
        self._listen_engines = load_listen_engines(self.settings)
        if self.api_key is None:
            self.api_key = resolve_api_key(self.settings)
        state_dir = open_state_dir(self.settings)
        listen = self.settings.metrics.listen
        self.integration = Integration(self.status, state_dir, parse_listen(listen) if listen else None)
        control: ControlServer | None = None
        watchdog: Watchdog | None = None
        try:
            if self.engine is None:
                self.engine = AudioEngine(self.settings.audio)
            self.engine.on_fatal = self._on_audio_fatal
            await self.engine.start()
            self.status.audio_status = self.engine.status
            self.integration.attach_player(self.engine.player)
            await self.integration.start()
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
        voice = await self._ensure_voice(state_dir)
        if self.voice is not None and not self.voice.verified:
            # Running on a cached id or the preset while offline: confirm (or replace) it later.
            self._tasks.append(asyncio.create_task(self._reverify(state_dir), name="voice-reverify"))
        assert self.engine is not None and self.api_key is not None
        self.mode = make_mode(
            self.settings, self.endpoints, self.api_key, self.engine, self.status, voice,
            self._listen_engines,
        )
        if self.turn_listener is not None:
            self.mode.turn_listeners.append(self.turn_listener)
        await self.mode.run()

    async def _ensure_voice(self, state_dir: Path) -> str | None:
        """Enroll or find the voice, retrying in the background while the status says why."""
        import aiohttp  # imported here, after READY: it is a third of start → READY otherwise

        from agent.voices.ensure import ensure_voice
        backoff = Backoff(*VOICE_RETRY)
        auth_backoff = Backoff(*AUTH_RETRY)
        assert self.api_key is not None
        while True:
            try:
                result = await ensure_voice(
                    self.settings, self.api_key, self.endpoints, state_dir,
                    log=logging.getLogger("voice-agent.voices"), options=self.ensure_options,
                )
                self.voice = result
                self.status.voice = result.voice_id or None
                self.status.clear_error()
                log.info("voice %s (%s%s)", result.voice_id or "(server default)", result.outcome,
                         "" if result.verified else ", not verified with the service yet")
                return result.voice_id or None
            except ConfigError:
                raise  # an invalid sample: exit 78, the operator must fix it
            except AuthError as e:
                delay = auth_backoff.next_delay()
                self._voice_problem(f"voice enrollment: {e}", delay)
            except QuotaError as e:
                delay = AUTH_RETRY[1]
                self._voice_problem(f"voice enrollment: {e}", delay)
            except (VoiceError, aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                delay = backoff.next_delay()
                self._voice_problem(f"voice enrollment: {redact(str(e)) or e.__class__.__name__}", delay)
            await asyncio.sleep(delay)

    async def _reverify(self, state_dir: Path) -> None:
        import aiohttp

        from agent.voices.ensure import ensure_voice
        backoff = Backoff(*VOICE_RETRY)
        while self.voice is not None and not self.voice.verified:
            await backoff.sleep()
            with contextlib.suppress(VoiceError, aiohttp.ClientError, OSError, asyncio.TimeoutError):
                assert self.api_key is not None
                result = await ensure_voice(
                    self.settings, self.api_key, self.endpoints, state_dir,
                    log=logging.getLogger("voice-agent.voices"), options=self.ensure_options,
                )
                if result.voice_id != (self.voice.voice_id if self.voice else None):
                    log.info("voice confirmed as %s (was %s)", result.voice_id, self.status.voice)
                    self.status.voice = result.voice_id
                    if self.mode is not None:
                        await self.mode.set_voice(result.voice_id)
                self.voice = result

    def _voice_problem(self, message: str, delay: float) -> None:
        self.status.error(message)
        self.status.set_state(AgentState.ERROR, f"{message}; retrying in {delay:.0f} s")
        log.error("%s; retrying in %.0f s", message, delay)

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
        if self.daemon.mode is not None:
            await self.daemon.mode.interrupt()

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
