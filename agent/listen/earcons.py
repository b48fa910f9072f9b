"""Short generated earcons (SPEC §10): wake, end of listening, error, timer — 24 kHz int16 PCM.

Why they are shaped like this: the wake sound plays while the uplink is already open, so its
echo reaches the service's VAD. An energy VAD (the emulator's, agent/emulator/vad.py) declares
speech after 60 ms of consecutive loud 20 ms frames; a neural one ignores pure tones but a long
one still raises its score. So each earcon is a few 30 ms pure-tone pips, each one a full
raised-cosine (Hann) envelope, separated by 75 ms of silence in which a room's reverberation
decays, at a low level (-34 dBFS peak): no run of loud frames is long enough to be speech, and
every earcon lasts under 250 ms. The pitch contour tells them apart (rising = listening, falling
= stopped listening, low = error, high alternating = timer). Generated, so nothing is shipped.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RATE = 24000
PEAK_DBFS = -34.0
PIP_MS = 30
GAP_MS = 75
KINDS: dict[str, tuple[float, ...]] = {
    "wake": (880.0, 1174.7, 1568.0),
    "end": (1568.0, 1174.7, 880.0),
    "error": (440.0, 330.0),
    "timer": (1760.0, 1318.5, 1760.0),
}


def _pip(freq: float, amplitude: float) -> np.ndarray:
    n = RATE * PIP_MS // 1000
    t = np.arange(n) / RATE
    return np.sin(2 * np.pi * freq * t) * np.hanning(n) * amplitude


@lru_cache(maxsize=len(KINDS))
def _render(kind: str) -> bytes:
    amplitude = 32767 * 10 ** (PEAK_DBFS / 20)
    gap = np.zeros(RATE * GAP_MS // 1000)
    parts: list[np.ndarray] = []
    for i, freq in enumerate(KINDS[kind]):
        if i:
            parts.append(gap)
        parts.append(_pip(freq, amplitude))
    return np.round(np.concatenate(parts)).astype(np.int16).tobytes()


def earcon(kind: str) -> np.ndarray:
    """The earcon `kind` (wake, end, error, timer) as 24 kHz mono int16 samples."""
    if kind not in KINDS:
        raise ValueError(f"unknown earcon {kind!r}; known: {', '.join(KINDS)}")
    return np.frombuffer(_render(kind), dtype=np.int16)
