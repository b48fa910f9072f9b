"""Run the real daemon (file audio) against a real emulator on loopback, in either mode.

The scripted user is a 16 kHz WAV with phrases at chosen times; the speaker is the file backend's
24 kHz WAV, whose timeline is the wall clock since the streams started — so "when" questions are
answered by sample indices. The mode kits (tests/omni/omnikit.py, tests/pipeline_mode/pipekit.py)
add what is particular to their mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.audio.wav import write_wav
from agent.config import Settings, settings_from_dict
from agent.daemon import Daemon
from agent.emulator.context import EmulatorOptions
from agent.emulator.server import Emulator
from agent.emulator.speech import synthesize
from agent.modes import Turn

OUT_RATE = 24000
IN_RATE = 16000


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == OUT_RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def script(path: Path, phrases: list[tuple[float, str]], total_s: float = 1.0) -> None:
    """A user who says each phrase at the given second of the timeline."""
    end = max([t + len(synthesize(p, IN_RATE)) / IN_RATE for t, p in phrases] + [total_s])
    pcm = np.zeros(int((end + 0.5) * IN_RATE), np.int16)
    for t, phrase in phrases:
        s = synthesize(phrase, IN_RATE)
        i = int(t * IN_RATE)
        pcm[i : i + len(s)] = s
    write_wav(path, pcm, IN_RATE)


def locate(haystack: np.ndarray, needle: np.ndarray) -> tuple[int, float]:
    """Best offset of `needle` in `haystack` and the normalised correlation there (FFT)."""
    h = haystack.astype(np.float64)
    n = needle.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(h) + len(n))))
    corr = np.fft.irfft(np.fft.rfft(h, size) * np.conj(np.fft.rfft(n, size)), size)[: len(h) - len(n) + 1]
    idx = int(np.argmax(corr))
    seg = h[idx : idx + len(n)]
    denom = np.sqrt(np.sum(seg * seg) * np.sum(n * n)) or 1.0
    return idx, float(corr[idx] / denom)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


def file_daemon_settings(
    base_url: str, work: Path, api_key: str, mode_keys: dict[str, Any], /, **overrides: Any
) -> Settings:
    """File audio in `work`; `mode_keys` are the mode's own; `section__key=value` overrides."""
    raw: dict[str, Any] = {
        **mode_keys,
        "dashscope": {"http_url": base_url, "api_key": api_key},
        "audio": {
            "input": {"backend": "file", "path": str(work / "user.wav")},
            "output": {"backend": "file", "path": str(work / "speaker.wav")},
            "echo": "none",
        },
        "state_dir": str(work / "state"),
        "control": {"socket": str(work / "control.sock")},
        "log": {"level": "info"},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            raw.setdefault(section, {})[name] = value
        else:
            raw[section] = value
    return settings_from_dict(raw, "<test>")


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
    settings: Any,
    phrases: list[tuple[float, str]],
    *,
    api_key: str,
    emulator_key: str,
    emulator_options: dict[str, Any] | None = None,
    faults: str | None = None,
    **overrides: Any,
) -> AsyncIterator[Running]:
    """The daemon built by `settings(base_url, work, api_key, **overrides)`, ready and serving."""
    options = EmulatorOptions(api_key=emulator_key, **(emulator_options or {}))
    emulator = Emulator(options=options, faults=faults)
    base = await emulator.start()
    script(work / "user.wav", phrases)
    turns: asyncio.Queue[Turn] = asyncio.Queue()
    daemon = Daemon(settings(base, work, api_key, **overrides), turn_listener=turns)
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
