"""The start hold (agent/audio/hold.py) inside the Player, on a virtual clock."""

from __future__ import annotations

import pytest

from agent.audio.hold import StartHold
from tests.audio.test_audio_player import LAT, PERIOD, feed_at, make, ramp

pytestmark = pytest.mark.unit


def _response(p, dev, clk, rid: str, t0: float, arrivals: list[float], chunk_ms: float = 100.0) -> None:
    for j, dt in enumerate(arrivals):
        feed_at(p, dev, clk, t0 + dt, rid, ramp(chunk_ms, start=j * int(chunk_ms * 24)))
    clk.t = t0 + arrivals[-1] + 0.01
    p.end(rid)


def test_a_bursty_response_after_an_early_stall_plays_without_a_gap_and_without_waiting_for_it():
    """Three 100 ms deltas at 4x, then a ~300 ms stall: D* = 45 ms. After two such responses the
    next ones start ~45 ms after their first delta — not at the post-stall delta (345 ms),
    which is where a quantity prebuffer above 300 ms would start — and none of them gaps. (The
    second one waits for the prior, 80 ms: one answer shows no spread of stalls.)"""
    p, dev, clk = make(target=80)
    stall = [0.0, 0.025, 0.05] + [0.345 + 0.025 * j for j in range(20)]
    for k in range(4):
        t0 = 1.0 + 3.0 * k
        _response(p, dev, clk, f"r{k}", t0, stall)
        dev.run_until(t0 + 3.0)
        st = p.response_stats(f"r{k}")
        assert st.gaps == 0, k
        assert st.lateness_ms == pytest.approx(45.0, abs=0.5)
        start = st.first_output - LAT - t0
        if k == 1:
            assert 0.080 - 1e-9 <= start <= 0.080 + PERIOD + 1e-9, (k, start)
        elif k:
            # The need falls to 45 ms when the third delta lands at 50 ms, just after that
            # callback: the start is at the next one.
            assert 0.045 - 1e-9 <= start <= 0.045 + 2 * PERIOD + 1e-9, (k, start)
    assert p.hold_ms == pytest.approx(45.0, abs=0.5)


def test_one_outlier_stall_ages_out_of_the_hold_after_eight_responses():
    p, dev, clk = make(target=80)
    # An outlier: 100 ms, then a 300 ms stall, then 4x: D* = 200 ms.
    _response(p, dev, clk, "outlier", 1.0, [0.0] + [0.3 + 0.025 * j for j in range(10)])
    dev.run_until(4.0)
    assert p.hold_ms == pytest.approx(200.0, abs=0.5)
    holds = []
    for k in range(10):  # clean responses: 100 ms deltas at 4x, never late
        t0 = 4.0 + 2.0 * k
        _response(p, dev, clk, f"c{k}", t0, [0.025 * j for j in range(10)])
        dev.run_until(t0 + 2.0)
        assert p.response_stats(f"c{k}").gaps == 0
        holds.append(p.hold_ms)
    # Kept while the outlier is among the last 8 responses, gone the response after.
    assert holds[:7] == [pytest.approx(200.0, abs=0.5)] * 7
    assert holds[7] == 0.0 and holds[-1] == 0.0
    # And with no hold, a clean response starts at its first callback.
    st = p.response_stats("c9")
    assert st.first_output - LAT - (4.0 + 2.0 * 9) <= PERIOD + 1e-9


def test_the_hold_is_raised_at_once_and_never_lowered_after_a_gap():
    h = StartHold(80, 400, window=3)
    assert not h.observe(50) and h.value_ms == 80
    assert h.observe(120) and h.value_ms == 120
    assert h.observe(900) and h.value_ms == 400  # clamped to max_ms
    h.response_done(400, had_gap=True)
    h.response_done(0, had_gap=True)
    assert h.value_ms == 400
    h.response_done(0, had_gap=False)
    assert h.value_ms == 400  # the 400 is still one of the last 3
    h.response_done(0, had_gap=False)
    assert h.value_ms == 0


def _slow(p, dev, clk, rid: str, t0: float, n: int = 20, speed: float = 0.9) -> None:
    _response(p, dev, clk, rid, t0, [j * 0.1 / speed for j in range(n)])
    dev.run_until(t0 + n * 0.2)


def test_a_length_hint_holds_a_slow_first_answer_long_enough():
    """A 2 s answer at 0.9x real time needs ~220 ms of hold, more than the 80 ms prior: without
    a hint the first answer gaps; with pipeline mode's hint (2.5 s, it errs long) it waits for
    its second chunk, measures the rate and plays through."""
    p, dev, clk = make(target=80, hi=600)
    _slow(p, dev, clk, "plain", 1.0)
    assert p.response_stats("plain").gaps >= 1
    p, dev, clk = make(target=80, hi=600)
    p.expect("hinted", 2.5)  # before its first audio, as pipeline mode sends text first
    _slow(p, dev, clk, "hinted", 1.0)
    st = p.response_stats("hinted")
    assert st.gaps == 0
    # The hint's hold (2.5 s × (1/0.9 − 1) ≈ 280 ms), a little more for a rate measured over
    # a few chunks (never less), plus the device latency; not the whole max_ms.
    assert st.lateness_ms + LAT * 1000 <= st.added_latency_ms <= 1.3 * 280 + LAT * 1000


def test_after_one_slow_answer_the_next_one_is_held_without_a_hint():
    p, dev, clk = make(target=80, hi=600)
    _slow(p, dev, clk, "first", 1.0)
    _slow(p, dev, clk, "second", 6.0)  # as long and as slow: the forecast covers it
    assert p.response_stats("second").gaps == 0


def test_after_one_slow_answer_a_longer_one_is_held_for_twice_its_length():
    """One 1 s answer at 0.9x says nothing about how long the next may be: without a hint the
    next is held as if up to twice as long (a 2 s answer needs ~220 ms), so it plays through.
    After that the longest recent answer is the guess: the third, as long, waits its D* and
    the slack of a rate measured over a few chunks (never less), far from max_ms."""
    p, dev, clk = make(target=80, hi=600)
    _slow(p, dev, clk, "short", 1.0, n=10)
    _slow(p, dev, clk, "long", 4.0, n=20)
    assert p.response_stats("long").gaps == 0
    _slow(p, dev, clk, "again", 9.0, n=20)
    st = p.response_stats("again")
    assert st.gaps == 0
    assert st.lateness_ms + LAT * 1000 <= st.added_latency_ms <= 1.5 * st.lateness_ms + LAT * 1000


def test_after_slow_answers_a_slower_one_waits_for_its_second_chunk():
    """After a 0.95x answer, a hinted 1.5 s answer at 0.85x needs ~250 ms of hold; its first
    chunk cannot show that it is slower than the last one (whose rate would give ~95 ms of
    hold, over before the second chunk comes at 118 ms), so the start waits for the second
    chunk, measures the rate and plays through."""
    p, dev, clk = make(target=80, hi=600)
    _slow(p, dev, clk, "before", 1.0, speed=0.95)
    p.expect("slower", 1.5 * 1.25)
    _slow(p, dev, clk, "slower", 6.0, n=15, speed=0.85)
    st = p.response_stats("slower")
    assert st.gaps == 0
    assert st.added_latency_ms >= st.lateness_ms + LAT * 1000
