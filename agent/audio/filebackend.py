"""File audio backends (SPEC §4, fixed semantics): a WAV stands in for the microphone or speaker.

* Input: any WAV (rate, channels, PCM or float) is converted once, block by block, to 16 kHz
  mono int16 (so a long file costs its result, not float32 copies of it) and delivered
  in real time, block by block, like a microphone; after its end, silence for as long as the
  daemon runs.
* Output: every block the player renders — silence included — is appended to a 24 kHz mono
  16-bit WAV, so sample i of the file is what the "speaker" played at `start + i / 24000`.
  The header is rewritten every second and at close (see `WavWriter`).

Both run on the engine's shared `Pacer`, so they start on the same tick and share one timeline.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from agent.audio.backend import AudioConfigError, CaptureFn, RenderFn
from agent.audio.microphone import MIC_RATE
from agent.audio.pacer import PacedInput, PacedOutput, Pacer
from agent.audio.playout import SOURCE_RATE
from agent.audio.wav import WavError, WavWriter, read_wav_mono


class WavSource:
    """Hands out consecutive blocks of a PCM array, then zeros forever."""

    def __init__(self, pcm: np.ndarray) -> None:
        self.pcm = pcm
        self.pos = 0

    @property
    def finished(self) -> bool:
        return self.pos >= self.pcm.shape[0]

    def __call__(self, block: np.ndarray) -> None:
        n = block.shape[0]
        k = max(0, min(n, self.pcm.shape[0] - self.pos))
        if k:
            np.copyto(block[:k], self.pcm[self.pos : self.pos + k])
        if k < n:
            block[k:].fill(0)
        self.pos += n


def open_file_input(path: str, pacer: Pacer, capture: CaptureFn) -> PacedInput:
    """A microphone that "hears" the WAV at `path` (16 kHz mono after conversion)."""
    try:
        pcm = read_wav_mono(path, MIC_RATE)
    except WavError as e:
        raise AudioConfigError(f"audio.input.path: {e}") from None
    stream = PacedInput(pacer, capture, MIC_RATE, f"file:{path}", source=WavSource(pcm))
    return stream


class FileOutput(PacedOutput):
    """A speaker that records everything it plays into a 24 kHz mono 16-bit WAV."""

    def __init__(self, path: str, pacer: Pacer, render: RenderFn) -> None:
        p = Path(path)
        try:
            if p.parent and not p.parent.exists():
                p.parent.mkdir(parents=True, exist_ok=True)
            self.writer = WavWriter(p, SOURCE_RATE)
        except OSError as e:
            raise AudioConfigError(f"audio.output.path: cannot write {path}: {e.strerror or e}") from None
        super().__init__(pacer, render, SOURCE_RATE, f"file:{os.fspath(path)}", sink=self.writer.write)

    def close(self) -> None:
        super().close()  # after this the pacer no longer touches the writer
        try:
            self.writer.close()
        except OSError as e:
            self.failed = f"{self.description}: close failed: {e.strerror or e}"
