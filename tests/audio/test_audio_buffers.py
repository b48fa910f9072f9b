"""Ring buffers, the lateness statistic and the adaptive target rule."""

from __future__ import annotations

import numpy as np
import pytest

from agent.audio.jitter import AdaptiveTarget, LatenessTracker
from agent.audio.ring import SampleRing

pytestmark = pytest.mark.unit


def test_ring_bounded_write_and_wraparound_copy():
    r = SampleRing(10)
    assert r.write(np.arange(1, 8, dtype=np.int16)) == 7
    out = np.zeros(10, np.int16)
    r.copy_out(out, r.read_pos, 5)
    r.read_pos += 5
    assert out[:5].tolist() == [1, 2, 3, 4, 5]
    # 2 unread + 8 free: a 9-sample write takes only 8, wrapping around the end.
    assert r.write(np.arange(10, 19, dtype=np.int16)) == 8
    assert r.available() == 10 and r.free() == 0
    r.copy_out(out, r.read_pos, 10)
    assert out.tolist() == [6, 7, 10, 11, 12, 13, 14, 15, 16, 17]


def test_ring_overwrite_keeps_newest_and_timeline():
    r = SampleRing(4)
    r.write_overwrite(np.arange(1, 4, dtype=np.int16))
    r.write_overwrite(np.arange(4, 11, dtype=np.int16))  # longer than the ring
    assert r.write_pos == 10
    out = np.zeros(4, np.int16)
    r.copy_out(out, 6, 4)
    assert out.tolist() == [7, 8, 9, 10]


def brute_force_q_star(arrivals: np.ndarray, sizes: np.ndarray, cap: float) -> tuple[float, float]:
    """D* and the smallest gap-free quantity threshold, straight from the definitions."""
    before = np.r_[0.0, np.cumsum(sizes)[:-1]]
    d_star = max(0.0, float(np.max(arrivals * 1000 - before)))

    def gap_free(q: float) -> bool:
        # A quantity rule q starts at the arrival of the first chunk that brings the total to q.
        j = next((k for k in range(len(sizes)) if before[k] + sizes[k] >= q), len(sizes) - 1)
        return arrivals[j] * 1000 >= d_star - 1e-9

    candidates = sorted({0.0, *(b + 1.0 for b in before)})
    q_star = next((q for q in candidates if gap_free(q)), cap)
    return d_star, min(q_star, cap)


def test_lateness_tracker_matches_offline_definition():
    rng = np.random.default_rng(1)
    for _ in range(50):
        sizes = rng.integers(20, 120, size=30).astype(float)  # chunk ms
        gaps = rng.exponential(0.04, size=30)
        gaps[rng.integers(0, 30)] += rng.uniform(0.1, 0.6)  # one stall somewhere
        arrivals = np.cumsum(np.r_[0.0, gaps[:-1]])
        tr = LatenessTracker(max_ms=400)
        for a, ms in zip(arrivals, sizes, strict=True):
            tr.arrival(10.0 + a, ms)
        d_star, q_star = brute_force_q_star(arrivals, sizes, 400.0)
        assert tr.d_star_ms == pytest.approx(d_star)
        assert tr.q_star_ms == pytest.approx(q_star)


def test_slow_source_detection_ignores_a_single_stall():
    fast = LatenessTracker(400)
    t = 0.0
    for k in range(20):
        fast.arrival(t, 100)
        t += 0.025 + (0.8 if k == 5 else 0.0)  # 4x real time with one long stall
    assert not fast.slow_source
    slow = LatenessTracker(400)
    for k in range(10):
        slow.arrival(k * 0.11, 100)  # 0.9x real time
    assert slow.slow_source


def test_adaptive_target_attack_decay_clamp():
    t = AdaptiveTarget(80, 40, 400)
    assert not t.observe(60)
    assert t.observe(150) and t.value_ms == 150
    assert t.observe(9999) and t.value_ms == 400
    t.response_done(400, had_gap=True)
    assert t.value_ms == 400
    seq = []
    for _ in range(5):
        t.response_done(0, had_gap=False)
        seq.append(t.value_ms)
    # While the window (5 responses) still holds the gappy response's 400 nothing moves;
    # then the target steps down by a quarter of the distance each clean response.
    assert seq == [400, 400, 400, 400, 310]
    for _ in range(30):
        t.response_done(0, had_gap=False)
    assert t.value_ms == 40
