"""Plain data records the audio engine publishes (per response, and for the player as a whole)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PlayState(enum.IntEnum):
    """Where the output callback is in a response's life (kept as an int in the callback).

    IDLE       no response queued: the stream plays digital silence.
    PREBUFFER  a response has begun; holding silence until the buffer reaches the target or the
               response is complete (short replies never wait for the target).
    PLAYING    handing buffered audio of an open response to the device.
    REBUFFER   starved mid-response: silence until the buffer is back at the target (never resume
               at the first byte — that stutters).
    DRAINING   the response is complete (all its audio is buffered); playing out the rest.
    """

    IDLE = 0
    PREBUFFER = 1
    PLAYING = 2
    REBUFFER = 3
    DRAINING = 4


@dataclass
class ResponseStats:
    """What happened to one response at the output. Times are `time.monotonic()` seconds.

    `first_output` is when the response's first sample reaches the output (handed to the device
    plus the device latency PortAudio reports); `first_audible` the same for its first
    non-silent sample (the latency measurement point); `output_end` when its last handed sample
    finishes playing.
    """

    response_id: str
    received_ms: float = 0.0
    played_ms: float = 0.0
    gaps: int = 0
    gap_ms: float = 0.0
    first_arrival: float | None = None
    first_output: float | None = None
    first_audible: float | None = None
    output_end: float | None = None
    lateness_ms: float = 0.0  # D* of this response (see jitter.py)
    q_star_ms: float = 0.0  # the prebuffer that would have been exactly enough
    interrupted: bool = False
    finished: bool = False

    @property
    def added_latency_ms(self) -> float | None:
        """First audio received → first sample at the output (SPEC §5.5)."""
        if self.first_arrival is None or self.first_output is None:
            return None
        return (self.first_output - self.first_arrival) * 1000.0

    def heard_ms(self, now: float) -> float:
        """Audio of this response that has actually come out of the device by `now`.

        Frames handed to the device minus what is still inside the device buffer: everything
        handed over is heard once `output_end` has passed (also after a flush — the fade and
        the device's own buffer still play).
        """
        if self.output_end is None:
            return 0.0
        pending_ms = max(0.0, (self.output_end - now) * 1000.0)
        return max(0.0, self.played_ms - pending_ms)


@dataclass
class PlayerStats:
    """Counters for the status (SPEC §5.5, §6)."""

    state: str
    target_ms: float
    buffered_ms: float
    underruns: int  # mid-response gaps (our jitter buffer ran dry)
    underrun_ms: float
    host_underflows: int  # the driver's output_underflow flags (the callback came too late)
    responses: int
    dropped_ms: float  # audio refused because the ring was full (newest dropped)
    discarded_ms: float  # audio of cancelled / non-current responses thrown away
    callback_errors: int
    heartbeat: int
    device_rate: int
    latency_ms: float  # device output latency last reported by the backend
    added_latency_ms_p50: float | None
    added_latency_ms_p95: float | None
