"""The published output activity: speaking → tail → quiet, with the player's own timestamps.

The Player runs on a virtual clock, its callback driven with 10 ms blocks and 20 ms of device
latency, so every timestamp below is exact: a callback at `t` hands over samples heard from
`t + LAT` to `t + LAT + PERIOD`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.audio.activity import TAIL_S, Activity, OutputActivity, PlayoutActivity
from agent.audio.playout import Player
from agent.audio.virtual import VirtualClock, VirtualOutput
from agent.config import JitterSettings

pytestmark = pytest.mark.unit

RATE = 24000
BLOCK = 240  # 10 ms device period
PERIOD = BLOCK / RATE
LAT = 0.020
EPS = 1e-9


def make(**kw) -> tuple[Player, VirtualOutput, VirtualClock]:
    """A player that starts on 40 ms of audio at once (no learned start hold)."""
    clk = VirtualClock(0.0)
    p = Player(JitterSettings(80, 40, 400), clock=clk, **kw)
    p.hold.value_ms = 0.0
    p._publish_hold()
    return p, VirtualOutput(p, clk, block=BLOCK, latency=LAT, phase=0.0), clk


def dc(ms: float, value: int = 10000) -> np.ndarray:
    return np.full(int(ms * RATE / 1000), value, dtype=np.int16)


def test_the_player_publishes_an_output_activity() -> None:
    p, _, _ = make()
    act: OutputActivity = p.activity  # readers see only the typed read API
    assert act.tail_s == TAIL_S == 0.3


def test_a_fresh_player_is_quiet_and_has_never_played() -> None:
    act = make()[0].activity
    assert act.state(0.0) is Activity.QUIET
    assert not act.busy(0.0) and not act.speaking(0.0)
    assert act.quiet_since(0.0) is None  # it never went quiet: it never played
    assert act.quiet_for(1000.0, 0.0)


def test_speaking_then_tail_then_quiet_as_a_response_plays_out() -> None:
    p, dev, clk = make()
    act = p.activity
    p.begin("r")
    assert act.busy(0.0) and act.state(0.0) is Activity.QUIET  # queued, nothing audible yet
    dev.run_until(0.0)
    p.feed("r", dc(100))
    p.end("r")
    dev.run_until(0.055)  # callbacks at 0.01 .. 0.05 have handed over 50 ms
    assert act.audible_until == pytest.approx(0.05 + LAT + PERIOD)
    assert act.state(0.055) is Activity.SPEAKING and act.speaking(0.055) and act.busy(0.055)
    assert act.quiet_since(0.055) is None
    dev.run_until(0.5)
    # The last block was handed over by the callback at 0.10 and is heard until 0.13.
    until = 0.10 + LAT + PERIOD
    assert act.audible_until == pytest.approx(until)
    assert act.audible_until == p.response_stats("r").output_end  # one timestamp, one writer
    assert act.state(until - 0.001) is Activity.SPEAKING
    assert act.state(until) is Activity.TAIL
    assert act.state(until + TAIL_S - 0.001) is Activity.TAIL
    assert act.state(until + TAIL_S + EPS) is Activity.QUIET
    assert act.quiet_since(0.5) == act.audible_until
    assert not act.busy(0.5)
    assert not act.quiet_for(0.4, until + 0.39) and act.quiet_for(0.4, until + 0.4 + EPS)


def test_busy_but_not_speaking_through_a_starvation_gap() -> None:
    p, dev, clk = make()
    act = p.activity
    p.begin("r")
    dev.run_until(0.0)
    p.feed("r", dc(100))  # no end(): more audio is expected
    dev.run_until(0.5)
    assert act.audible_until == pytest.approx(0.10 + LAT + PERIOD)
    assert act.state(0.5) is Activity.QUIET and not act.speaking(0.5)
    assert act.busy(0.5)  # rebuffering: the answer is not over
    assert not act.quiet_for(0.1, 0.5)  # silent long enough, but not idle
    p.end("r")
    dev.run_until(0.52)
    assert not act.busy(0.52) and act.quiet_for(0.1, 0.52)


def test_a_flush_ends_speaking_after_the_fade() -> None:
    p, dev, clk = make(fade_ms=10.0)
    act = p.activity
    p.begin("r")
    dev.run_until(0.0)
    p.feed("r", dc(1000))
    dev.run_until(0.205)
    assert act.speaking(0.205)
    assert p.flush() == "r"
    assert act.busy(0.205)  # the callback has not applied the flush yet
    dev.run_until(0.5)
    # The callback at 0.21 fades over one 10 ms block, then stops: heard until 0.21 + LAT + 10 ms.
    until = 0.21 + LAT + PERIOD
    assert act.audible_until == pytest.approx(until)
    assert act.audible_until == p.response_stats("r").output_end
    assert act.state(until + 0.1) is Activity.TAIL
    assert act.state(until + TAIL_S + EPS) is Activity.QUIET and not act.busy(0.5)
    assert act.quiet_since(0.5) == act.audible_until


def test_a_new_device_rate_starts_a_quiet_activity_and_an_empty_tap() -> None:
    p, dev, clk = make()
    p.begin("r")
    dev.run_until(0.0)
    p.feed("r", dc(1000))
    dev.run_until(0.2)
    assert p.tap.pos > 0 and p.activity.busy(0.2)
    activity, tap = p.activity, p.tap
    p.set_device_rate(48000)
    assert p.activity is activity and p.tap is tap  # readers keep their references
    assert tap.rate == 48000 and tap.pos == 0 and tap.latency == 0.0
    assert activity.state(0.2) is Activity.QUIET and not activity.busy(0.2)
    assert activity.quiet_since(0.2) is None


def test_activity_rules_on_their_own() -> None:
    act = PlayoutActivity(tail_s=0.5)
    act.audible_until = 10.0
    assert [act.state(t) for t in (9.9, 10.0, 10.49, 10.5)] == [
        Activity.SPEAKING, Activity.TAIL, Activity.TAIL, Activity.QUIET]
    act.begun = 3
    act.finished = 2
    assert act.busy(11.0) and not act.quiet_for(0.5, 11.0)
    act.finished = 3
    assert not act.busy(11.0) and act.quiet_for(1.0, 11.0) and not act.quiet_for(1.0 + EPS, 11.0)
    act.reset()
    assert act.audible_until == -math.inf and not act.busy(0.0)
