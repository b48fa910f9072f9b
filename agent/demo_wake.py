"""`voice-agent demo --wake-word`: the listening front end offline (SPEC §10).

The scripted room: someone talks in the background (espeak-ng's voice when it is installed, else
the emulator's), and even asks "Tell me a joke." without the wake word — nothing of it may leave
the device. Then the user says "okay nabu" and the question without a pause: the wake word is
detected locally by the real engine, the turn opens with the pre-roll, and the answer plays. The
demo prints what went upstream, so the difference to `listen.mode: always` is visible.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from agent.audio.wav import read_wav_mono, write_wav
from agent.emulator.speech import synthesize

RATE = 16000
BACKGROUND = ("The council met on Tuesday to discuss the budget for the new library. "
              "Several members asked about the cost of the roof.")
IGNORED_QUESTION = "Tell me a joke."
WAKE = "okay nabu"
QUESTION = "What's the weather like today?"


def _espeak(text: str) -> np.ndarray | None:
    """`text` in espeak-ng's voice at 16 kHz, or None without espeak-ng."""
    if shutil.which("espeak-ng") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bg.wav"
        try:
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(out), text], check=True,
                           capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return None
        return read_wav_mono(out, RATE)


def script_wake_word(path: Path, answer_s: float) -> tuple[float, str]:
    """Write the room's 16 kHz WAV; returns (seconds of background talk, whose voice)."""
    background = _espeak(BACKGROUND)
    voice = "espeak-ng"
    if background is None:
        background, voice = synthesize(BACKGROUND, RATE), "the emulator's voice"
    silence = np.zeros(RATE // 2, np.int16)
    talk = np.concatenate([background, silence, synthesize(IGNORED_QUESTION, RATE)])
    parts = [np.zeros(int(0.8 * RATE), np.int16), talk, np.zeros(int(1.5 * RATE), np.int16),
             synthesize(WAKE, RATE), synthesize(QUESTION, RATE),
             np.zeros(int((answer_s + 2.5) * RATE), np.int16)]
    write_wav(path, np.concatenate(parts), RATE)
    return len(talk) / RATE, voice
