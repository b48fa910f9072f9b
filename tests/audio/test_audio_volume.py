"""Volume (SPEC §12): the curve, its persistence, and the player's gain on a virtual clock."""

from __future__ import annotations

import json
import logging
import os
import stat
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from agent.audio.playout import Player
from agent.audio.virtual import VirtualClock, VirtualOutput
from agent.audio.volume import (
    FILE_NAME,
    Volume,
    VolumeStore,
    level_to_db,
    level_to_gain,
    validate_level,
)
from agent.config import JitterSettings

pytestmark = pytest.mark.unit

RATE = 24000
BLOCK = 240
PERIOD = BLOCK / RATE


# ---------------------------------------------------------------------------- the curve


def test_curve_is_strictly_monotonic_from_mute_to_unity() -> None:
    gains = [level_to_gain(level) for level in range(101)]
    assert gains[0] == 0.0
    assert gains[100] == 1.0
    assert all(a < b for a, b in zip(gains, gains[1:], strict=False))


def test_curve_never_amplifies_and_is_db_linear() -> None:
    assert max(level_to_gain(level) for level in range(101)) <= 1.0
    assert level_to_db(1) == pytest.approx(-50.0)
    steps = [level_to_db(level + 1) - level_to_db(level) for level in range(1, 100)]
    assert max(steps) == pytest.approx(min(steps))  # equal level steps are equal dB steps
    assert level_to_gain(50) == pytest.approx(10 ** (-50 * 50 / 99 / 20))


@pytest.mark.parametrize("bad", [-1, 101, 50.0, "50", None, True, [50]])
def test_levels_outside_0_to_100_or_not_integers_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="0-100"):
        validate_level(bad)


# ---------------------------------------------------------------------------- persistence


def test_level_survives_a_restart_in_a_private_file(tmp_path: Path) -> None:
    gains: list[float] = []
    Volume(VolumeStore(tmp_path), gains.append).set(35)
    path = tmp_path / FILE_NAME
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {"level": 35}
    again: list[float] = []
    restarted = Volume(VolumeStore(tmp_path), again.append)
    assert restarted.get() == 35
    assert again == [level_to_gain(35)]  # the gain is applied at start, before any audio


def test_no_file_means_full_volume(tmp_path: Path) -> None:
    gains: list[float] = []
    assert Volume(VolumeStore(tmp_path), gains.append).get() == 100
    assert gains == [1.0]


@pytest.mark.parametrize("content", ["{not json", '{"level": 250}', "[1, 2]", '{"level": "loud"}', ""])
def test_a_corrupt_file_is_set_aside_not_fatal(tmp_path: Path, content: str, caplog) -> None:
    (tmp_path / FILE_NAME).write_text(content)
    with caplog.at_level(logging.WARNING, "voice-agent.volume"):
        vol = Volume(VolumeStore(tmp_path), lambda g: None)
    assert vol.get() == 100
    assert not (tmp_path / FILE_NAME).exists()
    aside = list(tmp_path.glob(FILE_NAME + ".corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == content
    assert "moved to" in caplog.text
    vol.set(20)  # and the next save works
    assert VolumeStore(tmp_path).load() == 20


def test_set_applies_persists_and_announces_only_changes(tmp_path: Path) -> None:
    gains: list[float] = []
    announced: list[int] = []
    vol = Volume(VolumeStore(tmp_path), gains.append, announced.append)
    assert vol.control(None) == 100
    assert vol.control(60) == 60
    assert vol.control(60) == 60
    assert gains == [1.0, level_to_gain(60), level_to_gain(60)]
    assert announced == [60]
    with pytest.raises(ValueError):
        vol.control(101)
    assert vol.get() == 60


# ---------------------------------------------------------------------------- the player


def player() -> tuple[Player, VirtualOutput]:
    clk = VirtualClock(0.0)
    p = Player(JitterSettings(40, 40, 400), clock=clk)
    return p, VirtualOutput(p, clk, block=BLOCK, latency=0.0, phase=0.0)


def full_scale(ms: float) -> np.ndarray:
    """Alternating ±full scale: the worst case for clipping."""
    n = int(ms * RATE / 1000)
    x = np.full(n, 32767, dtype=np.int16)
    x[1::2] = -32768
    return x


def test_unity_gain_is_bit_exact() -> None:
    p, dev = player()
    sig = full_scale(200)
    p.begin("r")
    p.feed("r", sig)
    p.end("r")
    dev.run_until(0.5)
    played = dev.tape[np.flatnonzero(dev.tape)[0]:][: sig.shape[0]]
    assert np.array_equal(played, sig)


def test_gain_attenuates_full_scale_without_clipping_and_ramps_over_one_block() -> None:
    p, dev = player()
    g = level_to_gain(50)
    sig = full_scale(500)
    p.begin("r")
    p.feed("r", sig)
    p.end("r")
    dev.run_until(0.1)  # playing at unity
    start = np.flatnonzero(dev.tape)[0]
    at = dev.tape.shape[0]
    p.set_gain(g)
    dev.run_until(0.6)
    tape = dev.tape.astype(np.int32)
    src = sig.astype(np.int32)
    before = tape[start:at]
    assert np.array_equal(before, src[: at - start])
    ramp_block = tape[at : at + BLOCK]
    ramp_ratio = np.abs(ramp_block) / np.abs(src[at - start : at - start + BLOCK])
    assert np.all(np.diff(ramp_ratio) <= 1e-4), "the ramp only goes down"
    assert ramp_ratio[0] < 1.0 and ramp_ratio[-1] == pytest.approx(g, abs=1e-4)
    after = tape[at + BLOCK : start + src.shape[0]]
    expected = src[at + BLOCK - start :] * g
    assert np.all(np.abs(after - expected) <= 1.0)  # truncation: less than one LSB off
    played = tape[start : start + src.shape[0]]
    assert np.all(np.abs(played) <= np.abs(src)), "never louder than the source: no clipping"


def test_mute_silences_and_the_tap_hears_what_was_played() -> None:
    p, dev = player()
    p.set_gain(0.0)
    p.begin("r")
    p.feed("r", full_scale(300))
    p.end("r")
    dev.run_until(0.5)
    assert not dev.tape[BLOCK:].any()  # the first block ramps down from unity
    assert not p.tap.last(100).any()  # the echo reference is the attenuated output


def test_gain_out_of_range_is_refused() -> None:
    p, _ = player()
    with pytest.raises(ValueError):
        p.set_gain(1.5)
    with pytest.raises(ValueError):
        p.set_gain(-0.1)


def test_gain_does_not_allocate_in_the_callback() -> None:
    p, _ = player()
    p.begin("r")
    p.feed("r", full_scale(5000))
    out = np.zeros(BLOCK, np.int16)
    for k in range(20):
        p.render(out, k * PERIOD, 0.0)
    tracemalloc.start()
    for k in range(20, 420):
        p.set_gain(level_to_gain(100 - k % 100))  # a ramp on every block
        p.render(out, k * PERIOD, 0.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4096, f"render with gain allocated {peak} bytes at peak"
