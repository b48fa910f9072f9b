"""Echo handling for a speaker next to the microphone (SPEC §5.7, docs/echo.md).

    filt = make_echo_filter(settings.audio.echo, engine.player, settings.audio.chunk_ms)
    async for chunk, t_end in engine.mic.frames():
        upstream = await filt.process(chunk, t_end)

The filters read the playout side's published output activity (`player.activity`: speaking /
tail / quiet) and its tap of what was played (`player.tap`), never the Player itself.

Modules: `reference` (the played signal aligned with the microphone's timeline), `gate` (the
echo gate's decisions), `aec` (the optional WebRTC AEC3 canceller), `filters` (the four modes as
uplink filters).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.audio.activity import PlayedOutput
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
    mode: str, output: PlayedOutput, chunk_ms: int, *, clock: Callable[[], float] = time.monotonic
) -> EchoFilter:
    """The filter for `audio.echo` = `mode`, reading `output.activity` and `output.tap` (the
    Player). Raises AecUnavailable for `aec` without the extra."""
    if mode == "none":
        return PassThrough()
    if mode == "half_duplex":
        return HalfDuplex(output.activity, chunk_ms, clock=clock)
    if mode == "gate":
        return GateFilter(output.activity, output.tap, chunk_ms, clock=clock)
    if mode == "aec":
        return AecFilter(output.activity, output.tap, chunk_ms, clock=clock)
    raise ValueError(f"unknown echo mode {mode!r}")
