"""Streaming sample-rate conversion (soxr) for devices that do not accept 16/24 kHz.

Why streaming: audio arrives in chunks (network deltas, device blocks). Resampling each chunk on
its own restarts the filter at every boundary, which clicks and changes the length by a sample
here and there. `soxr.ResampleStream` keeps the filter state across chunks; `flush()` at the
end of a continuous signal releases the samples still held in the filter.

Why outside the callback: soxr allocates its output arrays and its cost varies with the chunk
size, both unacceptable in a real-time callback. The player resamples when audio is *fed*
(24 kHz → device rate, into the ring) and the microphone resamples in its asyncio consumer
(device rate → 16 kHz).
"""

from __future__ import annotations

import numpy as np
import soxr

_EMPTY = np.zeros(0, dtype=np.int16)


class StreamResampler:
    """Mono int16 → int16 streaming resampler; a pass-through when the rates are equal."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.passthrough = self.in_rate == self.out_rate
        self._quality = quality
        self._rs: soxr.ResampleStream | None = None
        if not self.passthrough:
            self._rs = soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="int16", quality=quality)
        self._dirty = False  # something went in since the last reset/flush

    def process(self, x: np.ndarray) -> np.ndarray:
        """Resample the next chunk of a continuous signal (may return fewer frames at first)."""
        if self._rs is None:
            return x
        if x.shape[0] == 0:
            return _EMPTY
        self._dirty = True
        return self._rs.resample_chunk(np.ascontiguousarray(x, dtype=np.int16))

    def flush(self) -> np.ndarray:
        """End of a continuous signal: return the filter's tail and get ready for a new one."""
        if self._rs is None or not self._dirty:
            return _EMPTY
        tail = self._rs.resample_chunk(_EMPTY, last=True)
        self._rs.clear()
        self._dirty = False
        return tail

    def reset(self) -> None:
        """Drop the filter state (after a flush/cancel the old signal must not leak in)."""
        if self._rs is not None and self._dirty:
            self._rs.clear()
        self._dirty = False


def resample_once(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Whole-signal conversion (for WAV files), int16 in and out."""
    if in_rate == out_rate:
        return np.ascontiguousarray(x, dtype=np.int16)
    y = soxr.resample(x.astype(np.float32), in_rate, out_rate, quality="HQ")
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)
