"""The echo gate's decisions on synthetic, already aligned signals (no player, no clock)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.echo.gate import EchoGate
from agent.emulator.answers import answer_for
from agent.emulator.speech import synthesize

pytestmark = pytest.mark.unit

RATE = 16000
CHUNK = 640  # 40 ms


@pytest.fixture(scope="module")
def answer() -> np.ndarray:
    return synthesize(answer_for("weather"), RATE).astype(np.float64)  # ~9.8 s, the assistant


@pytest.fixture(scope="module")
def user() -> np.ndarray:
    return synthesize("stop please, what time is it", RATE).astype(np.float64)


def echo_of(ref: np.ndarray, delay_s: float, gain: float, seed: int = 3) -> np.ndarray:
    """What the microphone hears of `ref`: late, scaled, with a short reverberation tail."""
    rng = np.random.default_rng(seed)
    n = int(0.15 * RATE)
    h = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.03 * RATE)) * 0.1
    h[0] = 1.0
    d = int(delay_s * RATE)
    out = np.zeros(ref.shape[0])
    out[d:] = np.convolve(ref, h)[: ref.shape[0] - d]
    return out * gain


def run(gate: EchoGate, mic: np.ndarray, ref: np.ndarray, *, warm_s: float = 1.5, noise: float = 10.0,
        warming_all: bool = False) -> np.ndarray:
    """Feed the signals chunk by chunk; returns the pass decision of every chunk."""
    rng = np.random.default_rng(11)
    mic = np.clip(mic + rng.standard_normal(mic.shape[0]) * noise, -32768, 32767).astype(np.int16)
    ref = np.clip(ref, -32768, 32767).astype(np.int16)
    n = mic.shape[0] // CHUNK
    out = np.zeros(n, dtype=bool)
    for i in range(n):
        s = slice(i * CHUNK, (i + 1) * CHUNK)
        warming = warming_all or i * CHUNK < warm_s * RATE
        out[i] = gate.process(mic[s], ref[s], playing=True, warming=warming)
    return out


@pytest.mark.parametrize("gain", [0.5, 1.0, 3.0])  # echo at -6, 0, +10 dB
def test_echo_alone_is_held(answer: np.ndarray, gain: float) -> None:
    gate = EchoGate(CHUNK)
    passed = run(gate, echo_of(answer, 0.05, gain), answer)
    assert not passed.any(), f"{passed.sum()} echo chunks passed"
    assert gate.trained and gate.lag_known


@pytest.mark.parametrize("t_user", [2.5, 3.3, 4.0, 5.1, 6.0, 7.2])
def test_a_user_at_the_echo_s_level_passes_while_still_speaking(
    answer: np.ndarray, user: np.ndarray, t_user: float
) -> None:
    # Wherever in the answer the user starts, the gate lets them through before they are done
    # (often within 100-200 ms: in a pause of the answer, or in bands the assistant is not using).
    gate = EchoGate(CHUNK)
    mic = echo_of(answer, 0.05, 1.0)
    t0 = int(t_user * RATE)
    mic[t0 : t0 + user.shape[0]] += user  # the user as loud as the assistant at the microphone
    passed = run(gate, mic, answer)
    assert not passed[: t0 // CHUNK].any(), "let through before the user spoke"
    after = passed[t0 // CHUNK :]
    assert after.any(), "the user was never let through"
    delay = int(np.argmax(after)) * CHUNK / RATE
    assert delay < 0.7 * user.shape[0] / RATE, f"let through only {delay:.2f} s into the utterance"


def test_warm_up_holds_even_a_loud_user(answer: np.ndarray, user: np.ndarray) -> None:
    gate = EchoGate(CHUNK)
    mic = echo_of(answer, 0.05, 1.0)
    mic[RATE : RATE + user.shape[0]] += user * 3
    assert not run(gate, mic, answer, warming_all=True).any()


def test_without_playback_everything_passes(user: np.ndarray) -> None:
    gate = EchoGate(CHUNK)
    mic = np.zeros(3 * RATE)
    mic[RATE : RATE + user.shape[0]] += user[: 2 * RATE]
    silent = np.zeros_like(mic)
    rng = np.random.default_rng(0)
    for i in range(mic.shape[0] // CHUNK):
        s = slice(i * CHUNK, (i + 1) * CHUNK)
        noisy = (mic[s] + rng.standard_normal(CHUNK) * 10).astype(np.int16)
        assert gate.process(noisy, silent[s].astype(np.int16), playing=False, warming=False)


def test_the_delay_and_the_echo_path_gain_are_learned(answer: np.ndarray) -> None:
    gate = EchoGate(CHUNK)
    run(gate, echo_of(answer, 0.15, 0.1), answer)  # 150 ms late, -20 dB
    assert gate.lag_known and abs(gate.lag * gate.frame_ms - 150) <= 20
    assert -30 < gate.gain_db < -10


def test_a_user_quieter_than_a_loud_echo_does_not_make_it_pass(answer: np.ndarray, user: np.ndarray) -> None:
    # The limit of an energy gate, stated as a test: 20 dB under the echo the user is not heard
    # (that is what `aec` or hardware echo cancellation is for), and nothing leaks either.
    gate = EchoGate(CHUNK)
    mic = echo_of(answer, 0.05, 3.0)
    t0 = int(4.0 * RATE)
    mic[t0 : t0 + user.shape[0]] += user * 0.3
    passed = run(gate, mic, answer)
    assert not passed[: t0 // CHUNK].any()


def test_a_user_known_to_be_talking_is_not_cut_when_the_wake_guard_ends(
    answer: np.ndarray, user: np.ndarray
) -> None:
    # Right after the wake word the uplink sends the raw microphone (its guard) while the gate
    # holds (the earcon's tail). When the guard ends mid-question, a gate that had to gather
    # fresh evidence would drop the next chunks; told the user is there, it lets them through.
    def first_chunk_after_the_guard(told: bool) -> bool:
        gate = EchoGate(CHUNK)
        mic = echo_of(answer, 0.05, 1.0)
        t0, guard_end = 3 * RATE, 3 * RATE + int(0.4 * RATE)
        mic[t0 : t0 + user.shape[0]] += user
        rng = np.random.default_rng(11)
        mic = np.clip(mic + rng.standard_normal(mic.shape[0]) * 10, -32768, 32767).astype(np.int16)
        ref = np.clip(answer, -32768, 32767).astype(np.int16)
        for i in range(guard_end // CHUNK):
            s = slice(i * CHUNK, (i + 1) * CHUNK)
            in_guard = i * CHUNK >= t0
            gate.process(mic[s], ref[s], playing=True, warming=i * CHUNK < 1.5 * RATE, hold=in_guard)
            if in_guard and told:
                gate.assume_user()
        s = slice(guard_end // CHUNK * CHUNK, guard_end // CHUNK * CHUNK + CHUNK)
        return gate.process(mic[s], ref[s], playing=True, warming=False)

    assert first_chunk_after_the_guard(told=True)
    assert not first_chunk_after_the_guard(told=False)  # what cut the question's middle
