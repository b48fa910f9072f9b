"""Shared reconnect backoff (agent.backoff)."""

from __future__ import annotations

import asyncio
import random

import pytest

from agent.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.unit
def test_first_retry_is_quick_and_growth_is_capped() -> None:
    b = Backoff(first=1.0, cap=30.0, rng=lambda: 1.0)  # upper edge of the jitter
    assert [b.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]
    assert b.attempt == 8


@pytest.mark.unit
def test_jitter_keeps_a_floor_so_there_is_no_tight_loop() -> None:
    b = Backoff(first=1.0, cap=30.0, rng=lambda: 0.0)  # lower edge of the jitter
    assert [b.next_delay() for _ in range(7)] == [0.5, 1, 2, 4, 8, 15, 15]


@pytest.mark.unit
def test_real_random_delays_stay_in_range() -> None:
    b = Backoff(first=0.5, cap=8.0, rng=random.Random(3).random)
    for n in range(20):
        ceiling = min(8.0, 0.5 * 2**n)
        assert ceiling / 2 <= b.next_delay() <= ceiling


@pytest.mark.unit
def test_reset_starts_over() -> None:
    b = Backoff(rng=lambda: 1.0)
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.attempt == 0 and b.next_delay() == 1.0


@pytest.mark.unit
def test_reset_after_a_stable_period_only() -> None:
    clock = Clock()
    b = Backoff(stable_s=30.0, clock=clock, rng=lambda: 1.0)
    for _ in range(4):
        b.next_delay()  # 1, 2, 4, 8
    b.connected()
    clock.t += 5  # flapped after 5 s: keeps growing
    assert b.next_delay() == 16
    b.connected()
    clock.t += 31  # stayed up long enough: back to the start
    assert b.next_delay() == 1
    assert b.next_delay() == 2  # and counting again from there


@pytest.mark.unit
def test_invalid_configuration_is_rejected() -> None:
    with pytest.raises(ValueError):
        Backoff(first=0)
    with pytest.raises(ValueError):
        Backoff(first=5, cap=1)


async def test_sleep_waits_the_delay() -> None:
    b = Backoff(first=0.04, cap=1.0, rng=lambda: 1.0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await b.sleep() == 0.04
    assert loop.time() - t0 >= 0.035
