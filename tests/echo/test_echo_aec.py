"""The AEC wrapper (WebRTC AEC3 via the optional `pywebrtc-audio`) and its install story."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from agent.config import ConfigError, settings_from_dict
from agent.daemon import preflight
from agent.echo import aec_problem
from agent.echo.aec import Canceller
from agent.emulator.answers import answer_for
from agent.emulator.speech import synthesize

RATE = 16000


@pytest.fixture(scope="module")
def installed() -> None:
    """The canceller tests need the extra; in CI it must be there (.ci/run installs it)."""
    if aec_problem() is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install the aec extra: {aec_problem()}")
        pytest.skip(f"audio.echo aec unavailable: {aec_problem()}")


def echo_scene(delay_s: float, seconds: float = 12.0):
    far = synthesize(answer_for("weather") + " " + answer_for("joke"), RATE)[: int(seconds * RATE)]
    rng = np.random.default_rng(4)
    h = rng.standard_normal(1600) * np.exp(-np.arange(1600) / 400.0) * 0.1
    h[0] = 0.9
    d = int(delay_s * RATE)
    echo = np.zeros(far.shape[0])
    echo[d:] = np.convolve(far.astype(np.float64), h)[: far.shape[0] - d]
    near = np.clip(echo + rng.standard_normal(far.shape[0]) * 20, -32768, 32767).astype(np.int16)
    return near, far


def run(c: Canceller, near: np.ndarray, far: np.ndarray, chunk: int) -> np.ndarray:
    n = near.shape[0] // chunk * chunk
    parts = [c.process(near[i : i + chunk], far[i : i + chunk]) for i in range(0, n, chunk)]
    assert all(p.shape[0] == chunk for p in parts)
    return np.concatenate(parts)


def erle_db(near: np.ndarray, out: np.ndarray, start_s: float) -> float:
    a = int(start_s * RATE)
    e_in = float(np.mean(near[a : out.shape[0]].astype(np.float64) ** 2))
    e_out = float(np.mean(out[a:].astype(np.float64) ** 2))
    return 10 * np.log10(e_in / max(e_out, 1e-9))


@pytest.mark.parametrize("delay_s", [0.01, 0.06, 0.25])
@pytest.mark.parametrize("chunk_ms", [40, 25])  # 25 ms: not a multiple of AEC3's 10 ms frames
def test_the_canceller_removes_a_delayed_echo(installed, delay_s: float, chunk_ms: int) -> None:
    near, far = echo_scene(delay_s)
    c = Canceller(RATE * chunk_ms // 1000)
    out = run(c, near, far, RATE * chunk_ms // 1000)
    assert erle_db(near, out, 3.0) > 25  # after the first seconds of convergence
    assert c.cpu_ms_per_s is not None and c.cpu_ms_per_s > 0


def test_the_near_end_passes_when_nothing_plays(installed) -> None:
    voice = synthesize("stop please, what time is it", RATE)
    near = np.concatenate([np.zeros(RATE, np.int16), voice, np.zeros(RATE, np.int16)])
    out = run(Canceller(640), near, np.zeros_like(near), 640)
    # Same energy (AEC3's high-pass filter and a few ms of delay aside).
    ratio = float(np.sum(out.astype(np.float64) ** 2) / np.sum(near[: out.shape[0]].astype(np.float64) ** 2))
    assert 0.7 < ratio < 1.2


@pytest.mark.unit
def test_erle_accounting(installed) -> None:
    c = Canceller(640)
    assert c.erle_db is None
    x = np.full(640, 1000, np.int16)
    c.account_echo(x, (x // 10).astype(np.int16))
    assert c.erle_db == pytest.approx(20.0, abs=0.01)


@pytest.mark.unit
def test_aec_without_the_extra_is_a_configuration_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pywebrtc_audio", None)  # import fails as if not installed
    settings = settings_from_dict({"audio": {"echo": "aec"}}, "/etc/voice-agent/config.yaml")
    with pytest.raises(ConfigError) as e:
        preflight(settings)
    msg = str(e.value)
    assert "audio.echo" in msg and "pip install 'voice-agent[aec]'" in msg and "config.yaml" in msg
    preflight(settings_from_dict({"audio": {"echo": "gate"}}, "<test>"))  # gate needs nothing


@pytest.mark.unit
def test_check_reports_whether_aec_can_run(monkeypatch) -> None:
    from agent.check import check_echo

    aec = settings_from_dict({"audio": {"echo": "aec"}}, "<test>")
    if aec_problem() is None:
        assert check_echo(aec).ok
    monkeypatch.setitem(sys.modules, "pywebrtc_audio", None)
    r = check_echo(aec)
    assert not r.ok and r.fix is not None and "voice-agent[aec]" in r.fix
    assert check_echo(settings_from_dict({"audio": {"echo": "gate"}}, "<test>")).ok
