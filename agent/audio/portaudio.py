"""The sounddevice (PortAudio) backend. The only module that imports `sounddevice`.

Import it lazily (`load_portaudio()`): PortAudio is a system library a fresh machine may lack,
and file/null audio, the emulator, the demo and enrollment must work without it (SPEC §2).

Streams are callback streams at int16 mono. We ask for an explicit latency in seconds (not
'low', which is too tight on a Raspberry Pi and dropped audio through PulseAudio in testing) and
let the host choose the block size (`blocksize=0`, the most robust setting per the sounddevice
docs). The output latency reported per callback (`outputBufferDacTime - currentTime`) is what
the player uses to place "first sample at the output" and "heard" in time.
"""

from __future__ import annotations

import abc
import time

import sounddevice as sd

from agent.audio.backend import CaptureFn, DeviceInfo, RenderFn, Stream
from agent.audio.hostclock import HostClock

DEFAULT_LATENCY_S = 0.04

PortAudioError = sd.PortAudioError


def query() -> list[DeviceInfo]:
    """All devices PortAudio currently sees (empty when no sound server/driver is reachable)."""
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
    except sd.PortAudioError:
        return []
    try:
        default_in, default_out = sd.default.device
    except Exception:
        default_in = default_out = -1
    rows = []
    for d in devices:
        api = hostapis[d["hostapi"]]["name"] if d["hostapi"] < len(hostapis) else "?"
        rows.append(
            DeviceInfo(
                index=int(d["index"]),
                name=str(d["name"]),
                hostapi=str(api),
                max_input_channels=int(d["max_input_channels"]),
                max_output_channels=int(d["max_output_channels"]),
                default_samplerate=float(d["default_samplerate"]),
                default_input=int(d["index"]) == default_in,
                default_output=int(d["index"]) == default_out,
            )
        )
    return rows


_open_streams: set[object] = set()  # every stream this process has open (see reinitialize)


def reinitialize() -> bool:
    """Re-enumerate devices: how PortAudio picks up a restarted server or a re-plugged device.

    Terminating PortAudio invalidates every open stream of the process, so this is skipped
    (returns False) while any stream is still open — e.g. another engine in the same process.
    """
    if _open_streams:
        return False
    sd._terminate()
    sd._initialize()
    return True


def negotiate_rate(device: int | None, kind: str, preferred: int) -> int:
    """`preferred` if the device accepts it, else the device's default rate (we resample)."""
    check = sd.check_output_settings if kind == "output" else sd.check_input_settings
    try:
        check(device=device, samplerate=preferred, channels=1, dtype="int16")
        return preferred
    except (sd.PortAudioError, ValueError):
        info = sd.query_devices(device, kind)
        return int(info["default_samplerate"])


def open_problem(device: int | None, kind: str, rate: int) -> str | None:
    """Why a mono int16 stream at `rate` would not open on `device` (None: it would)."""
    check = sd.check_output_settings if kind == "output" else sd.check_input_settings
    try:
        check(device=device, samplerate=rate, channels=1, dtype="int16")
    except (sd.PortAudioError, ValueError) as e:
        return str(e) or type(e).__name__
    return None


class _PortAudioStream(Stream):
    """What input and output streams share: open, describe, start, notice a stop, close."""

    def _open(self, factory: type, device: int | None, rate: int, latency: float) -> None:
        self._closing = False
        self._stream = factory(
            device=device,
            samplerate=rate,
            channels=1,
            dtype="int16",
            blocksize=0,
            latency=latency,
            callback=self._callback,
            finished_callback=self._finished,
        )
        _open_streams.add(self)
        self.samplerate = int(self._stream.samplerate)
        self.blocksize = int(self._stream.blocksize)
        self.latency = float(self._stream.latency)
        idx = self._stream.device
        self.description = f"{idx}: {sd.query_devices(idx)['name']}"

    @abc.abstractmethod
    def _callback(self, data, frames, time_info, status) -> None:  # noqa: ANN001 - cffi types
        """PortAudio's real-time callback: no allocation, no locks, no logging."""

    def _finished(self) -> None:
        if not self._closing:
            self.failed = f"{self.kind} stream on {self.description} stopped unexpectedly"

    def start(self) -> None:
        self._stream.start()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            self._stream.abort()
        except sd.PortAudioError:
            pass
        finally:
            self._stream.close(ignore_errors=True)
            _open_streams.discard(self)


class PortAudioOutput(_PortAudioStream):
    kind = "output"

    def __init__(self, device: int | None, rate: int, render: RenderFn, latency: float = DEFAULT_LATENCY_S) -> None:
        super().__init__()
        self._render = render
        self._clock = HostClock()
        self._open(sd.OutputStream, device, rate, latency)

    def _callback(self, outdata, frames, time_info, status) -> None:  # noqa: ANN001 - cffi types
        # When the host asked for this block, not when Python got to it (the GIL wait): the echo
        # reference places what was played in time by it (hostclock.py).
        now = self._clock.to_monotonic(time.monotonic(), time_info.currentTime)
        lat = time_info.outputBufferDacTime - time_info.currentTime
        if not 0.0 <= lat < 2.0:  # some hosts report zeros; fall back to the nominal latency
            lat = self.latency
        self._render(outdata[:, 0], now, lat, status.output_underflow)


class PortAudioInput(_PortAudioStream):
    kind = "input"

    def __init__(self, device: int | None, rate: int, capture: CaptureFn, latency: float = DEFAULT_LATENCY_S) -> None:
        super().__init__()
        self.callback_errors = 0
        self._capture = capture
        self._clock = HostClock()
        self._open(sd.InputStream, device, rate, latency)

    def _callback(self, indata, frames, time_info, status) -> None:  # noqa: ANN001 - cffi types
        now = time.monotonic()
        # The capture time from the host's timestamps, not from `now`: this call may have waited
        # for the GIL, which would stamp the block late by the wait (hostclock.py).
        try:
            t_end = self._clock.capture_end(
                now, time_info.currentTime, time_info.inputBufferAdcTime, frames, self.samplerate
            )
            self._capture(indata[:, 0], t_end, status.input_overflow)
        except Exception:  # an exception would stop the stream; the watchdog sees the heartbeat
            self.callback_errors += 1
