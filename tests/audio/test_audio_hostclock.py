"""Microphone capture times come from the host's timestamps, not from when the callback ran.

Under CPU load the Python input callback waits (mostly for the GIL) before it runs: measured
through PulseAudio with a busy event loop, p50 5.4 ms, max 19 ms late. The echo reference aligns
the speaker with the microphone by these times, so the wait must not end up in them.
"""

from __future__ import annotations

import random

import pytest

from agent.audio.hostclock import STEP_S, WINDOW_S, HostClock

pytestmark = pytest.mark.unit

RATE = 16000
FRAMES = 160  # 10 ms blocks, as PulseAudio delivers them at a 40 ms latency
HOST_EPOCH = 1.7e9  # the host's clock (CLOCK_REALTIME under ALSA) is not the monotonic one
BUFFER_AGE = 0.02  # the first sample of a block is this old when the host prepares the callback


def callbacks(seconds: float, wait, *, host_shift=lambda t: 0.0):
    """(true end of block, monotonic time the callback ran, host now, host adc time) per block."""
    t = 5.0
    while t < 5.0 + seconds:
        t += FRAMES / RATE
        host_now = t + HOST_EPOCH + host_shift(t)
        yield t - BUFFER_AGE + FRAMES / RATE, t + wait(t), host_now, host_now - BUFFER_AGE


def test_a_callback_that_waited_for_the_gil_still_stamps_the_true_capture_time() -> None:
    rng = random.Random(7)
    clock = HostClock()
    worst_after_first_window = 0.0
    for truth, mono, host_now, adc in callbacks(10.0, lambda t: rng.choice((0.0001, 0.005, 0.011, 0.019))):
        got = clock.capture_end(mono, host_now, adc, FRAMES, RATE)
        waited = mono - (host_now - HOST_EPOCH)
        # What the callback's own clock gives: stamped late by exactly its wait.
        naive = mono - (host_now - adc) + FRAMES / RATE
        assert naive - truth == pytest.approx(waited, abs=1e-6)
        assert -1e-6 <= got - truth <= waited + 1e-6  # never worse than the callback's own clock
        if mono > 5.0 + WINDOW_S:
            worst_after_first_window = max(worst_after_first_window, got - truth)
    # Once one prompt callback has been seen, every block is stamped within its shortest wait.
    assert worst_after_first_window == pytest.approx(0.0001, abs=1e-6)


def test_steps_of_the_hosts_clock_are_followed() -> None:
    for step, within in ((+0.3, 0.0), (-(STEP_S + 0.5), 0.0), (-0.05, 2 * WINDOW_S)):
        clock = HostClock()
        errors = []
        for truth, mono, host_now, adc in callbacks(8.0, lambda t: 0.0001,
                                                    host_shift=lambda t, s=step: s if t >= 9.0 else 0.0):
            errors.append((mono, clock.capture_end(mono, host_now, adc, FRAMES, RATE) - truth))
        settled = [e for t, e in errors if t >= 9.0 + within + FRAMES / RATE]
        assert settled and max(abs(e) for e in settled) < 0.001, (step, settled[:3])


def test_hosts_that_report_no_times_fall_back_to_the_callback_time() -> None:
    clock = HostClock()
    assert clock.capture_end(12.5, 0.0, 0.0, FRAMES, RATE) == 12.5  # zeros
    assert clock.capture_end(12.5, 100.0, 103.0, FRAMES, RATE) == 12.5  # an age < 0
    assert clock.capture_end(12.5, 100.0, 90.0, FRAMES, RATE) == 12.5  # an age of 10 s
