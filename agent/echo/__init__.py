"""Echo handling for a speaker next to the microphone (SPEC §5.7, docs/echo.md).

    filt = make_echo_filter(settings.audio.echo, engine.player, settings.audio.chunk_ms)
    upstream = await filt.process(chunk, engine.mic.last_chunk_end_time)

Modules: `reference` (the played signal aligned with the microphone's timeline), `gate` (the
echo gate's decisions), `aec` (the optional WebRTC AEC3 canceller), `filters` (the four modes as
uplink filters).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.echo.aec import INSTALL_HINT, AecUnavailable
from agent.echo.aec import problem as aec_problem
from agent.echo.filters import (
    HALF_DUPLEX_TAIL_S,
    WARMUP_S,
    AecFilter,
    EchoFilter,
    GateFilter,
    HalfDuplex,
    PassThrough,
)

__all__ = [
    "HALF_DUPLEX_TAIL_S",
    "INSTALL_HINT",
    "WARMUP_S",
    "AecUnavailable",
    "EchoFilter",
    "aec_problem",
    "make_echo_filter",
]


def make_echo_filter(
    mode: str, player: Any, chunk_ms: int, *, clock: Callable[[], float] = time.monotonic
) -> EchoFilter:
    """The filter for `audio.echo` = `mode`. Raises AecUnavailable for `aec` without the extra."""
    if mode == "none":
        return PassThrough()
    if mode == "half_duplex":
        return HalfDuplex(player, chunk_ms, clock=clock)
    if mode == "gate":
        return GateFilter(player, chunk_ms, clock=clock)
    if mode == "aec":
        return AecFilter(player, chunk_ms, clock=clock)
    raise ValueError(f"unknown echo mode {mode!r}")
