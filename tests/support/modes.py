"""What the emulator says, per mode: answer audio (omni) and sentence audio (CosyVoice).

CosyVoice synthesizes each sentence separately, so a pipeline answer is located in the speaker
WAV sentence by sentence, using the emulator's own sentence splitter and voice.
"""

from __future__ import annotations

import numpy as np

from agent.emulator.answers import answer_for
from agent.emulator.cosyvoice_text import split_sentences
from agent.emulator.server import Emulator
from agent.emulator.speech import synthesize
from tests.support.audio import OUT_RATE
from tests.support.emulator import REALTIME


def answer_audio(question: str) -> np.ndarray:
    """What the emulator speaks for a question (24 kHz)."""
    return synthesize(answer_for(question), OUT_RATE)


def sentences(text: str) -> list[str]:
    """The sentences the emulated CosyVoice speaks one by one for `text`."""
    done, rest = split_sentences(text)
    return [s.strip() for s in [*done, rest] if s.strip()]


def sentence_audio(text: str) -> list[np.ndarray]:
    """What the emulator renders for each sentence of `text` (24 kHz)."""
    return [synthesize(s, OUT_RATE) for s in sentences(text)]


def answer_sentences(question: str) -> list[np.ndarray]:
    return sentence_audio(answer_for(question))


def realtime_connects(emulator: Emulator) -> int:
    log = emulator.context.request_log
    return sum(1 for r in log.records() if r.path.startswith(REALTIME))
