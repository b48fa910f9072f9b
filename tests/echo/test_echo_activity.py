"""The echo filters read the published output activity and a tap of what was played, nothing else.

Driven here by a hand-set `PlayoutActivity` (the fields the playout callback would write) and a
tap that reports silence, on a clock stepped one 40 ms chunk at a time: the chunk ending at `now`
is captured from `now - 0.04` to `now`.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.audio.activity import TAIL_S, PlayoutActivity
from agent.audio.virtual import VirtualClock
from agent.echo import make_echo_filter
from agent.echo.filters import GateFilter, HalfDuplex

pytestmark = pytest.mark.unit

CHUNK_MS = 40
CHUNK_S = CHUNK_MS / 1000
N = 16 * CHUNK_MS


class SilentTap:
    """What a 24 kHz output that plays only silence would publish (the `PlayedAudio` API)."""

    rate = 24000
    latency = 0.02
    heard_offset = None  # no callback timestamps: the tap reads position and time itself

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock

    @property
    def pos(self) -> int:
        return int(self.clock() * self.rate)

    def read(self, pos: int, out: np.ndarray) -> int:
        out[:] = 0
        return out.shape[0]


class Output:
    """The playout side as `make_echo_filter` sees it."""

    def __init__(self, clock: VirtualClock) -> None:
        self.activity = PlayoutActivity()
        self.tap = SilentTap(clock)


def speech(k: int) -> bytes:
    rng = np.random.default_rng(k)
    return (3000 * rng.standard_normal(N)).astype(np.int16).tobytes()


async def run(filt, clock: VirtualClock, chunks: range) -> dict[int, bool]:
    """Chunk number k ends at k × 40 ms; True where the filter passed the microphone through."""
    passed = {}
    for k in chunks:
        clock.t = k * CHUNK_S
        chunk = speech(k)
        out = await filt.process(chunk, clock.t)
        assert out == chunk or out == bytes(len(chunk))  # the chunk itself, or silence
        passed[k] = out == chunk
    return passed


async def test_half_duplex_silences_while_speaking_and_for_the_tail_then_passes() -> None:
    clock = VirtualClock(0.0)
    out = Output(clock)
    filt = make_echo_filter("half_duplex", out, CHUNK_MS, clock=clock)
    assert isinstance(filt, HalfDuplex)
    out.activity.audible_until = 1.0  # the callback has handed over audio heard until 1.0 s
    passed = await run(filt, clock, range(1, 50))
    # Speaking is last seen by the chunk ending at 0.96 s; a chunk whose capture starts less
    # than the tail after that still holds echo: the last one ends at 1.28 s (starts at 1.24).
    assert pytest.approx(0.3) == TAIL_S  # the numbers below assume the 300 ms tail
    assert [k for k, ok in passed.items() if not ok] == list(range(1, 33))
    assert all(passed[k] for k in range(33, 50))
    assert filt.summary() == {"mode": "half_duplex", "held_s": pytest.approx(32 * CHUNK_S)}


async def test_half_duplex_passes_while_a_response_is_only_queued() -> None:
    clock = VirtualClock(0.0)
    out = Output(clock)
    out.activity.begun = 1  # prebuffering: busy, but nothing audible
    filt = make_echo_filter("half_duplex", out, CHUNK_MS, clock=clock)
    passed = await run(filt, clock, range(1, 20))
    assert all(passed.values())
    out.activity.audible_until = 2.0  # now it plays
    passed = await run(filt, clock, range(20, 45))
    assert not any(passed.values())


async def test_gate_passes_when_quiet_and_holds_during_warmup_and_tail() -> None:
    clock = VirtualClock(0.0)
    out = Output(clock)
    filt = make_echo_filter("gate", out, CHUNK_MS, clock=clock)
    assert isinstance(filt, GateFilter)
    quiet = await run(filt, clock, range(1, 10))
    assert all(quiet.values())  # nothing played, nothing to cancel: the user is heard
    out.activity.audible_until = 0.8  # speaking from 0.36 s to 0.8 s: inside the 1 s warm-up
    out.activity.begun = out.activity.finished = 1
    playing = await run(filt, clock, range(10, 27))  # up to 1.04 s: speaking, then the tail
    assert not any(playing.values())
    assert filt.tracker.sessions == 1
    later = await run(filt, clock, range(40, 50))  # 1.56 s on: quiet again
    assert all(later.values())
    assert not filt.tracker.in_session
