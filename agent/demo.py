"""`voice-agent demo`: the whole daemon against the built-in emulator, offline, in one process.

A scripted "user" (spoken questions rendered by the emulator's speech engine) is played into the
daemon through the file microphone; what the speaker would play is written to a WAV (or played
through the sound card with `--speakers`). Each turn is printed as it completes. The question
timeline leaves room for each answer, because the default echo defence (half-duplex) closes the
microphone while the assistant speaks, exactly as on a device.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from agent.config import settings_from_dict
from agent.daemon import Daemon
from agent.emulator.answers import answer_for
from agent.emulator.context import EmulatorOptions
from agent.emulator.server import Emulator
from agent.emulator.speech import synthesize
from agent.logs import setup_logging
from agent.omni import Turn

QUESTIONS = ("What's the weather like today?", "Tell me a joke.")
VOICE_TEXT = (
    "Hello, this is the voice of the demo kiosk. I speak clearly and calmly, "
    "so that everybody in the lobby can understand what I say. "
    "Ask me about the weather, the time, or anything else you would like to know."
)
LEAD_IN_S = 0.8
# After each question: the server's end-of-speech silence, the first audio delay, the answer
# itself and a pause before the next question.
TURN_GAP_S = 2.5
TURN_TIMEOUT_S = 45.0


def _write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())


def script_questions(path: Path, questions: tuple[str, ...] = QUESTIONS) -> None:
    """Lay the questions out on a 16 kHz timeline with room for each answer to play."""
    rate = 16000
    parts = [np.zeros(int(LEAD_IN_S * rate), np.int16)]
    for q in questions:
        parts.append(synthesize(q, rate))
        answer_s = len(synthesize(answer_for(q), 24000)) / 24000
        parts.append(np.zeros(int((answer_s + TURN_GAP_S) * rate), np.int16))
    _write_wav(path, np.concatenate(parts), rate)


def demo_settings(base_url: str, api_key: str, work: Path, output: str, speakers: bool) -> object:
    sample = work / "voice-sample.wav"
    voice = synthesize(VOICE_TEXT, 24000)
    _write_wav(sample, np.concatenate([voice, np.zeros(12000, np.int16)]), 24000)
    question = work / "question.wav"
    script_questions(question)
    out = {"backend": "sounddevice"} if speakers else {"backend": "file", "path": output}
    return settings_from_dict(
        {
            "mode": "omni",
            "dashscope": {"http_url": base_url, "api_key": api_key},
            "voice": {"family": "qwen", "name": "demo", "sample": str(sample), "language": "en"},
            "audio": {"input": {"backend": "file", "path": str(question)}, "output": out},
            "state_dir": str(work / "state"),
            "log": {"level": "warning", "transcripts": False},
        },
        "<demo>",
    )


def _print_turn(n: int, turn: Turn) -> None:
    latency = f"{turn.latency_ms:.0f} ms" if turn.latency_ms is not None else "n/a"
    print(f"turn {n}: heard    “{turn.heard}”")
    print(f"        answered “{turn.answered}”")
    print(f"        latency  {latency} (end of speech → first answer sample at the speaker)")
    sys.stdout.flush()


async def run_demo(output: str = "demo-output.wav", speakers: bool = False) -> int:
    setup_logging("warning")
    emulator = Emulator(options=EmulatorOptions(enroll_delay_s=0.3))
    base_url = await emulator.start()
    started = time.monotonic()
    print(f"voice-agent demo: emulator at {base_url}; "
          f"output → {'the sound card' if speakers else output}")
    with tempfile.TemporaryDirectory(prefix="voice-agent-demo-") as tmp:
        settings = demo_settings(base_url, emulator.api_key, Path(tmp), output, speakers)
        turns: asyncio.Queue[Turn] = asyncio.Queue()
        daemon = Daemon(settings, control=False, turn_listener=turns)
        task = asyncio.create_task(daemon.run(), name="daemon")
        got: list[Turn] = []
        try:
            while len(got) < len(QUESTIONS):
                waiter = asyncio.create_task(turns.get())
                done, _ = await asyncio.wait({waiter, task}, timeout=TURN_TIMEOUT_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if waiter not in done:
                    waiter.cancel()
                    why = daemon.status.last_error or "no answer in time"
                    print(f"voice-agent demo: turn {len(got) + 1} failed: {why}", file=sys.stderr)
                    break
                got.append(waiter.result())
                _print_turn(len(got), got[-1])
        finally:
            daemon.request_stop()
            code = await task
            await emulator.stop()
    latencies = [t.latency_ms for t in got if t.latency_ms is not None]
    summary = f"{len(got)}/{len(QUESTIONS)} turns answered in {time.monotonic() - started:.1f} s"
    if latencies:
        summary += f"; latency median {float(np.median(latencies)):.0f} ms"
    if not speakers:
        summary += f"; speaker output written to {output}"
    print(summary)
    return code if len(got) == len(QUESTIONS) else 1


def demo_command(output: str, speakers: bool) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    return asyncio.run(run_demo(output, speakers))
