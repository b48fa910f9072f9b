"""Audio helpers for the daemon tests: the scripted user's WAV and "where is this sound" tools.

The scripted user is a 16 kHz WAV with phrases at chosen times; the speaker is the file backend's
24 kHz WAV, whose timeline is the wall clock since the streams started, so "when" questions are
answered by sample indices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.audio import wav
from agent.emulator.speech import synthesize

OUT_RATE = 24000
IN_RATE = 16000


def read_wav(path: Path) -> np.ndarray:
    """The speaker file as int16 samples; it must be 24 kHz, mono, 16-bit."""
    x, rate = wav.read_wav(path)
    assert rate == OUT_RATE and x.shape[1] == 1, (rate, x.shape)
    scaled = x[:, 0].astype(np.float64) * 32768.0
    assert np.array_equal(scaled, np.round(scaled)), "not 16-bit PCM"
    return scaled.astype(np.int16)


def script(path: Path, phrases: list[tuple[float, str]], total_s: float = 1.0) -> None:
    """A user who says each phrase at the given second of the timeline."""
    end = max([t + len(synthesize(p, IN_RATE)) / IN_RATE for t, p in phrases] + [total_s])
    pcm = np.zeros(int((end + 0.5) * IN_RATE), np.int16)
    for t, phrase in phrases:
        s = synthesize(phrase, IN_RATE)
        i = int(t * IN_RATE)
        pcm[i : i + len(s)] = s
    wav.write_wav(path, pcm, IN_RATE)


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
