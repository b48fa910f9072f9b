"""The start forecast (agent/audio/forecast.py), pure, on made-up arrival times (ms)."""

from __future__ import annotations

import math

import pytest

from agent.audio.forecast import StartForecast

pytestmark = pytest.mark.unit

Q = 10.0  # device block (ms)


def lateness(arrivals: list[tuple[float, float]]) -> float:
    """D* of a response, block-quantised as the forecast sees it."""
    worst, s = 0.0, 0.0
    for t, z in arrivals:
        worst = max(worst, t - (s // Q) * Q)
        s += z
    return worst


def play(f: StartForecast, arrivals: list[tuple[float, float]], rid: str = "r") -> list[float | None]:
    """Feed one response; return the need after each chunk."""
    f.begin(rid)
    needs = [f.arrival(t, z, Q) for t, z in arrivals]
    f.close()
    return needs


def fast(n: int, z: float = 100.0, speed: float = 4.0, t0: float = 0.0) -> list[tuple[float, float]]:
    return [(t0 + j * z / speed, z) for j in range(n)]


def with_stall(after: int, stall: float, n: int = 20, z: float = 100.0, speed: float = 4.0):
    return [(j * z / speed + (stall if j > after else 0.0), z) for j in range(n)]


def test_without_history_the_prior_decides():
    assert play(StartForecast(), fast(5)) == [None] * 5


def test_a_response_that_repeats_itself_is_held_exactly_its_lateness():
    f = StartForecast()
    arr = with_stall(after=2, stall=300.0)
    play(f, arr)
    needs = play(f, arr)
    d_star = lateness(arr)
    assert d_star == pytest.approx(75.0)  # chunk 3 at 375 ms, 300 ms of audio before it
    # From the chunk before the stall on it asks for exactly D*. Earlier chunks ask for more
    # (the first: the slowest recent rate is assumed; the second: a stall seen once may come
    # earlier, see below), but each such need expires only after the next chunk has come and
    # lowered it, so the start is D*.
    assert needs[2:] == [pytest.approx(d_star, abs=0.5)] * (len(arr) - 2)
    for j in (0, 1):
        assert needs[j] >= d_star and arr[j + 1][0] < needs[j]


def test_a_fast_response_is_not_held_for_the_ordinary_gaps_of_a_slower_one():
    f = StartForecast()
    play(f, fast(20, z=120.0, speed=1.5))  # 80 ms between chunks
    needs = play(f, fast(40, z=40.0, speed=3.0))  # 13 ms between chunks
    assert max(n for n in needs if n is not None) <= 1.0  # starts at once


def test_stall_sizes_are_extrapolated_beyond_the_longest_seen():
    f = StartForecast()
    for stall in (150.0, 200.0, 250.0):
        play(f, with_stall(after=1, stall=stall))
    # A longer stall at the same place than any before: 250 + the spread (50) is covered.
    arr = with_stall(after=1, stall=300.0)
    needs = play(f, arr)
    assert lateness(arr) > lateness(with_stall(after=1, stall=250.0)) > 0
    assert needs[1] >= lateness(arr) - 0.5


def test_stall_places_are_widened_by_their_spread():
    f = StartForecast()
    for after in (3, 4, 5):  # stalls after 400, 500 and 600 ms of audio
        play(f, with_stall(after=after, stall=300.0))
    arr = with_stall(after=2, stall=300.0)  # earlier than any: after 300 ms
    needs = play(f, arr)
    assert needs[2] >= lateness(arr) - 0.5


def test_a_long_stall_behind_a_deep_backlog_does_not_hold_the_start():
    """A 1 s stall after 3 s of audio (delivered at 4x: 2.2 s buffered) never threatens a
    start; it must not be taken for an early stall either."""
    f = StartForecast()
    for _ in range(3):
        play(f, with_stall(after=30, stall=1000.0, n=40))
    needs = play(f, with_stall(after=30, stall=1000.0, n=40))
    assert max(n for n in needs[:5] if n is not None) <= 1.0


def test_a_slow_source_is_held_for_the_length_hint():
    """At 0.9x a 3 s answer needs 3000 × (1/0.9 − 1) ≈ 333 ms of hold; the hint says 3 s."""
    f = StartForecast()
    f.expect("a", 3.0, current=None)  # before the answer begins (pipeline: text first)
    f.begin("a")
    gap = 100.0 / 0.9
    needs = [f.arrival(j * gap, 100.0, Q) for j in range(5)]
    assert needs[0] == math.inf  # one chunk cannot tell slow from fast: wait for the second
    # Never short; long only by the slack on a rate measured over four intervals.
    d_star = lateness([(j * gap, 100.0) for j in range(30)])
    assert d_star - 0.5 <= needs[4] <= 1.25 * d_star
    f.close()


def test_a_hint_for_another_response_is_ignored_and_hints_only_grow():
    f = StartForecast()
    f.expect("b", 3.0, current=None)
    f.begin("a")
    assert f.hint_ms == 0.0
    f.expect("a", 2.0, current="a")
    f.expect("a", 1.0, current="a")
    assert f.hint_ms == 2000.0


def test_memory_is_fixed_however_long_the_response():
    f = StartForecast(log_capacity=64)
    play(f, fast(5000, z=40.0))
    assert f._t.shape == (64,) and f._profiles.shape[0] == f.window
    assert play(f, fast(3))[0] is not None


def test_a_stall_after_the_first_delta_is_expected_after_a_longer_first_delta_too():
    """Places are positions; "after the first delta" lands later when that delta is longer."""
    f = StartForecast()
    play(f, [(0.0, 40.0)] + [(300.0 + 10.0 * j, 40.0) for j in range(20)])
    arr = [(0.0, 80.0)] + [(300.0 + 20.0 * j, 80.0) for j in range(10)]
    needs = play(f, arr)
    assert needs[0] >= lateness(arr) - 0.5


def test_a_stall_seen_once_may_come_half_as_far_in_next_time():
    """One answer stalled after 500 ms of audio; the next stalls after 300 ms. With one place
    seen there is no spread to widen by, so the scale prior (half as far) covers it."""
    f = StartForecast()
    play(f, with_stall(after=4, stall=300.0))
    arr = with_stall(after=2, stall=300.0)
    needs = play(f, arr)
    assert lateness(arr) > 0
    assert needs[2] >= lateness(arr) - 0.5


def test_the_place_prior_gives_way_to_the_measured_spread():
    """A 600 ms stall after 1 s of audio at 4x: were it to come after 500 ms it would need a
    225 ms hold. Seen once, it is expected there (half as far in); seen in eight answers at the
    same place, only 1/9 earlier, where the backlog covers it: no hold. (From the second chunk
    on: the first one's need assumes the slowest recent rate and expires when the second comes.)"""
    f = StartForecast()
    play(f, with_stall(after=9, stall=600.0))
    assert max(play(f, fast(20))[1:]) >= 200.0
    for _ in range(7):
        play(f, with_stall(after=9, stall=600.0))
    assert max(play(f, fast(20))[1:]) <= 1.0


def test_after_one_answer_that_stalled_the_prior_is_a_floor():
    """One stall gives no spread (the next may be longer and earlier): the second answer may
    raise the first-answer prior, never go below it. From the third answer on the history is
    trusted; and after a first answer without a stall at once."""
    f = StartForecast(prior_ms=80.0)
    play(f, with_stall(after=9, stall=300.0))
    assert min(play(f, fast(20))) == pytest.approx(80.0)
    assert max(play(f, fast(20))[1:]) <= 1.0
    g = StartForecast(prior_ms=80.0)
    play(g, fast(20))
    assert max(play(g, fast(20))) <= 1.0


def test_a_stall_is_expected_with_the_calm_jitter_on_top():
    """Stall sizes are measured over the chunk's pace, so the jitter of that chunk rides on the
    next one: 300 ms stalls with ±10 ms of calm jitter make a 310 ms stall expected."""
    f = StartForecast()
    rng = [0.0, 10.0, -10.0, 5.0]
    for k in range(4):
        arr = with_stall(after=2, stall=300.0)
        play(f, [(t + (rng[(j + k) % 4] if 0 < j < 3 else 0.0), z) for j, (t, z) in enumerate(arr)])
    arr = with_stall(after=2, stall=310.0)
    needs = play(f, arr)
    assert needs[2] >= lateness(arr) - 0.5


def test_a_short_hiccup_between_two_stall_places_does_not_bring_the_long_stall_forward():
    """Answers stall 200 ms after 400 ms of audio and 1 s after 3 s (the backlog absorbs that);
    one of them also has a 40 ms hiccup after 1.6 s, which chains the places into one group.
    The 1 s stall is still expected only where 1 s stalls were seen, not from 1.6 s on."""

    def answer(hiccup: bool) -> list[tuple[float, float]]:
        out, t = [], 0.0
        for j in range(40):
            out.append((t, 100.0))
            t += 25.0 + (200.0 if j == 3 else 0.0) + (1000.0 if j == 29 else 0.0)
            t += 40.0 if hiccup and j == 15 else 0.0
        return out

    plain, chained = StartForecast(), StartForecast()
    for k in range(8):
        play(plain, answer(False))
        play(chained, answer(k == 7))
    probe = answer(False)
    assert max(play(chained, probe)[1:]) == pytest.approx(max(play(plain, probe)[1:]), abs=1.0)
