"""Acoustic echo cancellation with WebRTC's AEC3 (the `pywebrtc-audio` package, optional).

Why this library (docs/echo.md has the comparison): it is the canceller Chrome uses (AEC3, with
its own delay estimator and residual-echo suppressor), it ships binary wheels for Linux x86_64
*and* aarch64 (Raspberry Pi OS 64-bit), so `pip install voice-agent[aec]` needs no compiler,
swig or -dev packages, and it releases the GIL while it works. The speexdsp and
webrtc-audio-processing bindings in the reference table are source-only and need a toolchain
on the device.

The canceller works on 10 ms frames. `Canceller.process()` takes chunks of any length (the
uplink's `chunk_ms` need not be a multiple of 10) and returns exactly as many samples: whole
frames are processed and a fixed pre-roll of zeros keeps the output length constant. AEC3
itself delays its output by a few milliseconds; both are a constant shift of the microphone
timeline, which the server's VAD does not notice.

Measured on every call: CPU time (thread time, so it is this work only) per second of audio,
and the echo-return-loss enhancement (ERLE) over frames where only echo was present.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

RATE = 16000
FRAME = RATE // 100  # 10 ms
INSTALL_HINT = "pip install 'voice-agent[aec]'  (installs pywebrtc-audio: WebRTC AEC3)"


class AecUnavailable(Exception):
    """The optional AEC dependency is not installed (or does not load on this machine)."""


def load_backend() -> Any:
    """The `pywebrtc_audio` module, or AecUnavailable saying how to install it."""
    try:
        import pywebrtc_audio
    except ImportError as e:  # not installed, or a wheel for another platform
        raise AecUnavailable(f"the echo canceller is not installed ({e}); {INSTALL_HINT}") from None
    return pywebrtc_audio


def problem() -> str | None:
    """Why `audio.echo: aec` cannot run here (None: it can)."""
    try:
        load_backend()
    except AecUnavailable as e:
        return str(e)
    return None


class Canceller:
    """AEC3 over a continuous microphone stream and its aligned reference (16 kHz int16)."""

    def __init__(self, chunk_samples: int, *, backend: Any | None = None) -> None:
        mod = backend or load_backend()
        self._aec = mod.EchoCanceller(RATE)
        prime = (FRAME - math.gcd(chunk_samples, FRAME)) % FRAME
        self._near = np.zeros(0, dtype=np.int16)
        self._far = np.zeros(0, dtype=np.int16)
        self._out = np.zeros(prime, dtype=np.int16)
        self.cpu_s = 0.0
        self.audio_s = 0.0
        self._echo_in = 0.0  # energy sums over echo-only chunks, for ERLE
        self._echo_out = 0.0
        self.echo_s = 0.0

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """Cancel the echo of `far` from `near` (same length); returns as many samples."""
        n = near.shape[0]
        t0 = time.thread_time()
        nb = np.concatenate([self._near, near]) if self._near.shape[0] else near
        fb = np.concatenate([self._far, far]) if self._far.shape[0] else far
        whole = nb.shape[0] // FRAME * FRAME
        if whole:
            done = self._aec.process(
                np.ascontiguousarray(nb[:whole], dtype=np.int16),
                np.ascontiguousarray(fb[:whole], dtype=np.int16),
            )
            self._out = np.concatenate([self._out, done]) if self._out.shape[0] else done
        self._near, self._far = nb[whole:], fb[whole:]
        out = self._out[:n]
        self._out = self._out[n:]
        if out.shape[0] < n:  # cannot happen with the priming above; never return short
            out = np.concatenate([np.zeros(n - out.shape[0], dtype=np.int16), out])
        self.cpu_s += time.thread_time() - t0
        self.audio_s += n / RATE
        return out

    def account_echo(self, near: np.ndarray, out: np.ndarray) -> None:
        """Count a chunk in which only echo was present (nobody spoke) towards the ERLE."""
        self._echo_in += float(np.dot(near.astype(np.float64), near))
        self._echo_out += float(np.dot(out.astype(np.float64), out))
        self.echo_s += near.shape[0] / RATE

    @property
    def erle_db(self) -> float | None:
        """Echo-return-loss enhancement over the echo-only chunks so far (None: none yet)."""
        if self._echo_in <= 0.0:
            return None
        return 10.0 * math.log10(self._echo_in / max(self._echo_out, 1.0))

    @property
    def cpu_ms_per_s(self) -> float | None:
        """CPU milliseconds spent per second of audio processed."""
        return None if self.audio_s == 0 else 1000.0 * self.cpu_s / self.audio_s

    def reset(self) -> None:
        self._aec.reset()
