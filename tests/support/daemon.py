"""The daemon layer: the real daemon (file audio) against an emulator on loopback, either mode.

Fixtures:
- `daemon_mode`: "omni" (tests/pipeline_mode overrides it with "pipeline");
- `scripted_user`: `scripted_user(phrases)` writes the user's WAV, each phrase at its second;
- `daemon`: `async with daemon(phrases, faults=..., emulator_options=..., **section__key) as run`
  → a `Running` handle, the daemon ready and its audio timeline started.

The emulator runs at its own (realistic) pace unless `emulator_options` says otherwise: these
tests measure when audio is heard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import DEFAULT_DAEMON_TIMINGS, Daemon, DaemonTimings
from agent.emulator.server import Emulator
from agent.modes import Turn
from tests.support.audio import OUT_RATE, script
from tests.support.emulator import API_KEY, REALISTIC, start_emulator
from tests.support.settings import build_settings

Phrases = list[tuple[float, str]]


@dataclass
class Running:
    emulator: Emulator
    daemon: Daemon
    task: asyncio.Task[int]
    turns: asyncio.Queue[Turn]
    work: Path
    t0: float = 0.0  # monotonic time of sample 0 of both WAVs
    seen: list[Turn] = field(default_factory=list)

    @property
    def output(self) -> Path:
        return self.work / "speaker.wav"

    @property
    def mode(self) -> Any:
        assert self.daemon.mode is not None
        return self.daemon.mode

    async def serving(self, timeout: float = 10.0) -> Any:
        """The mode, once the daemon runs it (and, in pipeline mode, its synthesis socket is up)."""
        async def wait() -> None:
            while True:
                mode, tts = self.daemon.mode, getattr(self.daemon.mode, "tts", None)
                if mode is not None and (tts is None or tts.connected):
                    return
                await asyncio.sleep(0.01)

        await asyncio.wait_for(wait(), timeout)
        return self.mode

    def timeline_start(self) -> float:
        """Monotonic time of sample 0 of both WAVs."""
        return self.t0

    def at(self, t: float) -> int:
        """Output sample index of monotonic time `t`."""
        return int((t - self.t0) * OUT_RATE)

    async def next_turn(self, timeout: float = 30.0) -> Turn:
        turn = await asyncio.wait_for(self.turns.get(), timeout)
        self.seen.append(turn)
        return turn

    async def stop(self) -> int:
        self.daemon.request_stop()
        return await asyncio.wait_for(self.task, 10.0)

    def requests(self, path: str) -> int:
        """How many requests (HTTP, or WebSocket upgrades) reached the emulator on `path`."""
        return sum(1 for r in self.emulator.context.request_log.records() if r.path.startswith(path))


async def _timeline_start(daemon: Daemon) -> float:
    """Sample 0 of both WAVs (the engine's pacer starts them on one tick)."""
    for _ in range(500):
        t0 = daemon.engine.timeline_start if daemon.engine is not None else None
        if t0 is not None:
            return float(t0)
        await asyncio.sleep(0.01)
    raise AssertionError("the audio timeline never started")


@contextlib.asynccontextmanager
async def running_daemon(
    work: Path,
    phrases: Phrases | None = None,
    *,
    mode: str = "omni",
    api_key: str = API_KEY,
    emulator_options: dict[str, Any] | None = None,
    faults: str | None = None,
    user: Callable[[Phrases], Path] | None = None,
    timings: DaemonTimings = DEFAULT_DAEMON_TIMINGS,
    **overrides: Any,
) -> AsyncIterator[Running]:
    """An emulator, the scripted user in `work/user.wav`, and the daemon ready and serving.

    `api_key` is what the daemon sends (the emulator always expects `API_KEY`); `timings`
    scales the daemon's components down to the emulator's."""
    emulator = await start_emulator(faults, **{**REALISTIC, **(emulator_options or {})})
    if user is not None:
        user(phrases or [])
    else:
        script(work / "user.wav", phrases or [])
    turns: asyncio.Queue[Turn] = asyncio.Queue()
    settings = build_settings(mode, base_url=emulator.base_url, work=work, api_key=api_key,
                              **overrides)
    daemon = Daemon(settings, turn_listener=turns, timings=timings)
    task = asyncio.create_task(daemon.run())
    run = Running(emulator, daemon, task, turns, work)
    try:
        await asyncio.wait_for(daemon.ready.wait(), 10)
        run.t0 = await _timeline_start(daemon)
        yield run
    finally:
        if not task.done():
            daemon.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await emulator.stop()


@pytest.fixture
def daemon_mode() -> str:
    return "omni"


@pytest.fixture
def scripted_user(tmp_path: Path) -> Callable[[Phrases], Path]:
    """`scripted_user(phrases)` → the 16 kHz WAV the file microphone will play."""

    def write(phrases: Phrases, total_s: float = 1.0) -> Path:
        path = tmp_path / "user.wav"
        script(path, phrases, total_s)
        return path

    return write


RunDaemon = Callable[..., contextlib.AbstractAsyncContextManager[Running]]


@pytest.fixture
def daemon(tmp_path: Path, daemon_mode: str, scripted_user: Callable[[Phrases], Path]) -> RunDaemon:
    """`async with daemon(phrases, **kw) as run:` — `running_daemon` in `tmp_path`."""

    def start(phrases: Phrases | None = None, **kw: Any) -> contextlib.AbstractAsyncContextManager[Running]:
        return running_daemon(tmp_path, phrases, **{"mode": daemon_mode, "user": scripted_user, **kw})

    return start
