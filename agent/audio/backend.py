"""The small interface every audio backend implements (sounddevice, file, null).

A backend does one thing: call a *render* callback for output blocks and a *capture* callback
for input blocks, at the device's pace, on its own thread. The Player and Microphone never know
which backend drives them — the file and null backends call exactly the same callbacks with
fixed-size blocks on a real-time pacing thread, so tests and demos exercise the production code
paths.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agent.config import ConfigError

# render(out, now, latency, underflow): fill `out` (1-D int16) — `now` is the monotonic time of
# the call, `latency` the seconds until out[0] is heard, `underflow` the driver's flag.
RenderFn = Callable[[np.ndarray, float, float, bool], None]
# capture(block, t_end, overflow): `block` (1-D int16) was captured up to monotonic time t_end.
CaptureFn = Callable[[np.ndarray, float, bool], None]


class AudioError(Exception):
    """An audio problem at run time (device gone, stream failed)."""


class AudioConfigError(ConfigError):
    """The audio configuration cannot work (no such device, unreadable WAV, no PortAudio).

    A ConfigError, so the CLI exits 78 with this one-line message.
    """


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device as `voice-agent devices` lists it."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_input: bool = False
    default_output: bool = False

    def channels(self, kind: str) -> int:
        return self.max_output_channels if kind == "output" else self.max_input_channels


class Stream(abc.ABC):
    """One running input or output stream."""

    kind: str  # "output" | "input"
    samplerate: int
    blocksize: int  # frames per callback (0: variable, chosen by the host)
    latency: float  # seconds, as reported by the backend
    description: str  # human-readable device / file name for the status and logs

    def __init__(self) -> None:
        self.failed: str | None = None  # set (by any thread) when the stream died unexpectedly

    @abc.abstractmethod
    def start(self) -> None:
        """Begin calling the callback."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop calling the callback and release the device/file. Idempotent."""
