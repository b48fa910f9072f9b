"""Run the real daemon (omni mode, file audio) against a real emulator on loopback.

Imported by the omni tests (pytest puts this directory on sys.path). A scripted user is a 16 kHz
WAV with phrases at chosen times; the speaker is the file backend's 24 kHz WAV, whose timeline is
the wall clock since the streams started — so "when" questions are answered by sample indices.
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import Settings, settings_from_dict
from agent.daemon import Daemon
from agent.emulator.answers import answer_for
from agent.emulator.context import EmulatorOptions
from agent.emulator.server import Emulator
from agent.emulator.speech import synthesize
from agent.omni import Turn

API_KEY = "sk-emulator-omni-test"
OUT_RATE = 24000
IN_RATE = 16000


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


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


def answer_audio(question: str) -> np.ndarray:
    """What the emulator speaks for a question (24 kHz)."""
    return synthesize(answer_for(question), OUT_RATE)


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


def agent_settings(base_url: str, work: Path, api_key: str = API_KEY, **overrides: Any) -> Settings:
    raw: dict[str, Any] = {
        "mode": "omni",
        "dashscope": {"http_url": base_url, "api_key": api_key},
        "voice": {"family": "preset", "preset": "Tina"},
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

    @property
    def output(self) -> Path:
        return self.work / "speaker.wav"

    async def next_turn(self, timeout: float = 30.0) -> Turn:
        return await asyncio.wait_for(self.turns.get(), timeout)

    async def stop(self) -> int:
        self.daemon.request_stop()
        return await asyncio.wait_for(self.task, 10.0)

    def timeline_start(self) -> float:
        """Monotonic time of sample 0 of both WAVs."""
        assert self.daemon.engine is not None
        t0 = self.daemon.engine.timeline_start
        assert t0 is not None
        return t0


@contextlib.asynccontextmanager
async def running_agent(
    work: Path,
    phrases: list[tuple[float, str]],
    *,
    emulator_options: dict[str, Any] | None = None,
    faults: str | None = None,
    api_key: str = API_KEY,
    **settings: Any,
) -> AsyncIterator[Running]:
    options = EmulatorOptions(api_key=API_KEY, **(emulator_options or {}))
    emulator = Emulator(options=options, faults=faults)
    base = await emulator.start()
    script(work / "user.wav", phrases)
    turns: asyncio.Queue[Turn] = asyncio.Queue()
    daemon = Daemon(agent_settings(base, work, api_key, **settings), turn_listener=turns)
    task = asyncio.create_task(daemon.run())
    run = Running(emulator, daemon, task, turns, work)
    try:
        await asyncio.wait_for(daemon.ready.wait(), 10)
        yield run
    finally:
        if not task.done():
            daemon.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await emulator.stop()


def realtime_connects(emulator: Emulator) -> int:
    log = emulator.context.request_log
    return sum(1 for r in log.records() if r.path.startswith("/api-ws/v1/realtime"))
