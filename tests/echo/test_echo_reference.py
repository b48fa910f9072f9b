"""The reference tap: the played signal, aligned with the microphone by the device timestamps."""

from __future__ import annotations

import numpy as np
import pytest

from agent.audio.activity import OutputTap
from agent.echo.reference import REF_LEAD_S, ClockMap, ReferenceTap
from agent.emulator.answers import answer_for
from agent.emulator.speech import synthesize
from tests.echo.room import MIC_RATE, Room

pytestmark = pytest.mark.unit


def test_clock_map_finds_the_offset_despite_callback_phase_and_latency_jitter() -> None:
    rng = np.random.default_rng(2)
    cm = ClockMap()
    rate, period, off = 24000, 0.01, 123.456
    for k in range(400):  # 4 s of readings at random moments between callbacks
        t_cb = k * period
        latency = 0.04 + rng.uniform(-0.003, 0.003)  # what the driver says this time
        pos = int(round((t_cb + 0.04 + period + off) * rate))  # written by the callback at t_cb
        cm.observe(pos, rate, t_cb + rng.uniform(0, period), latency)
    assert cm.offset is not None and abs(cm.offset - off) < 0.003


class Recorder:
    """An echo filter that only records the microphone and the tap's reference."""

    def __init__(self, room: Room) -> None:
        self.tap = ReferenceTap(room.player.tap, clock=room.clock)
        self.mic: list[np.ndarray] = []
        self.ref: list[np.ndarray] = []

    async def process(self, chunk: bytes, t_end: float | None) -> bytes:
        mic = np.frombuffer(chunk, dtype="<i2")
        self.mic.append(mic.copy())
        self.ref.append(self.tap.chunk(mic.shape[0], t_end))
        return chunk


def lags(mic: np.ndarray, ref: np.ndarray, start_s: float, end_s: float) -> list[float]:
    """Echo delay (ms) of `mic` behind `ref` in consecutive 1 s windows."""
    out = []
    w, m = MIC_RATE, MIC_RATE // 2
    for s in range(int(start_s * MIC_RATE), int(end_s * MIC_RATE) - w, w):
        a = mic[s : s + w].astype(np.float64)
        b = ref[s - m : s + w + m].astype(np.float64)
        n = 1 << 16
        xc = np.fft.irfft(np.fft.rfft(b, n) * np.conj(np.fft.rfft(a, n)), n)
        k = int(np.argmax(np.abs(xc[: 2 * m])))
        out.append((m - k) * 1000 / MIC_RATE)
    return out


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"out_latency": 0.12, "in_latency": 0.08, "block_s": 0.02},  # Pi-like latencies
        {"out_rate": 48000},
        {"stamp_jitter_s": 0.002},
    ],
    ids=["default", "high-latency", "48k-device", "noisy-timestamps"],
)
async def test_the_reference_leads_the_echo_by_a_stable_small_delay(kw) -> None:
    room = Room(rir=np.array([1.0]), **kw)  # direct sound only: one clear correlation peak
    rec = Recorder(room)
    await room.run(0.3, rec)
    room.play("a", synthesize(answer_for("weather"), 24000))
    await room.run(9.0, rec)
    mic, ref = np.concatenate(rec.mic), np.concatenate(rec.ref)
    found = lags(mic, ref, 2.0, 9.0)
    # The reference runs REF_LEAD_S ahead of the timestamps' estimate of the echo; the echo itself
    # is `acoustic_s` (4 ms) late (the interpolation adds a third of a millisecond).
    expected = (REF_LEAD_S + room.acoustic_s) * 1000
    assert all(abs(d - expected) < 3 for d in found), found
    assert max(found) - min(found) <= 1.0, f"the alignment wanders: {found}"
    assert rec.tap.resyncs <= 3 and rec.tap.late_frames == 0


def test_an_overdue_output_callback_does_not_bias_the_clock_map() -> None:
    """Under CPU load the output callback runs late (it waits for the GIL while the event loop
    works: p50 5.6 ms, max 21 ms measured through PulseAudio). Reading the tap's position from
    the loop then sees a stale position, and the map's offset came out ~4 ms too small (the
    reference read that much behind the echo); the tap's own `heard_offset` (the callback's
    host time and latency) is exact whatever the wait."""
    rng = np.random.default_rng(5)
    rate, block, latency = 24000, 240, 0.04
    period = block / rate
    out = OutputTap(rate)
    now = [0.0]
    tap = ReferenceTap(out, clock=lambda: now[0])
    by_position = ClockMap()
    events = []  # (time, kind, host time of the block)
    for k in range(400):
        t_k = 1.0 + k * period
        events.append((t_k + rng.choice([0.0001, 0.006, 0.012]), "write", t_k))
        events.append((t_k + rng.uniform(0, period), "read", 0.0))
    silence = np.zeros(block, np.int16)
    for t, kind, t_host in sorted(events):
        now[0] = t
        if kind == "write":
            out.write(silence, latency, t_host)
        else:
            tap.observe()
            by_position.observe(out.pos, rate, t, out.latency)
    true_offset = -(1.0 + latency)  # position k × block is heard at 1.0 + k × period + latency
    assert by_position.offset is not None and by_position.offset - true_offset < -0.002
    assert tap.map.offset == pytest.approx(true_offset, abs=1e-4)


def ramp_alignment(*, mic_gap_s: float = 0.0, output_gap_s: float = 0.0) -> tuple[list[float], ReferenceTap]:
    """40 ms microphone chunks against a 24 kHz ramp played with 10 ms callbacks (the ramp's value
    is its position, so a reference sample tells which position it came from). At chunk 40 the
    microphone skips `mic_gap_s` and/or the output pauses `output_gap_s` (an underrun: what
    follows is heard that much later). Returns, per chunk from 20 on, the largest distance in
    frames of the reference from the position heard at each sample's capture time (+ the lead)."""
    rate, block, latency, n = 24000, 240, 0.04, 640
    out = OutputTap(rate)
    now = [0.0]
    tap = ReferenceTap(out, clock=lambda: now[0], window_s=0.5)
    wrap = 40000

    def ramp(pos: np.ndarray) -> np.ndarray:
        return (pos % wrap - wrap // 2).astype(np.float64)

    written, t_cb, t_end, offset = 0, 0.0, 0.5, -latency
    worst = []
    for k in range(60):
        t_end += n / MIC_RATE + (mic_gap_s if k == 40 else 0.0)
        now[0] = t_end + 0.002
        if k == 40 and output_gap_s:
            t_cb += output_gap_s  # the device played silence: later callbacks, same positions
            offset -= output_gap_s
        while t_cb <= now[0]:
            out.write(ramp(np.arange(written, written + block)).astype(np.int16), latency, t_cb)
            written += block
            t_cb += block / rate
        ref = tap.chunk(n, t_end).astype(np.float64)
        # The position heard at each sample's capture time + the lead (heard at pos/rate − offset).
        p = (t_end - n / MIC_RATE + REF_LEAD_S + offset + np.arange(n) / MIC_RATE) * rate
        ok = np.abs((p % wrap) - wrap / 2) < wrap / 2 - 20  # away from the ramp's wrap
        if k >= 20:
            worst.append(float(np.max(np.abs(ref[ok] - ramp(p)[ok]))))
    return worst, tap


def test_a_jump_of_the_microphone_timeline_is_followed_at_once() -> None:
    """A consumer stalled for over a second drops whole microphone chunks (`input_dropped_chunks`;
    21–30 per daemon in a loaded real-audio run). The next chunk is from later than the read
    position continues to: the tap must re-synchronise on it, not drift towards it through the
    smoothing for up to a second with the reference hundreds of ms behind the echo."""
    worst, tap = ramp_alignment(mic_gap_s=0.2)  # 5 chunks dropped before chunk 40
    # From the first chunk after the gap, the same alignment as before it (the interpolation's
    # constant third of a millisecond), not 4800 frames behind.
    assert max(worst) - min(worst) < 1.0, worst[18:23]
    assert max(worst) < 10.0
    assert tap.mic_gaps == 1


def test_an_output_underrun_is_followed_within_three_chunks() -> None:
    """An output underrun delays everything played after it (54 ms in a loaded real-audio run,
    where the reference then ran ahead of the echo until the smoothing caught up, and the gate
    opened on the echo). The output callback's own timestamps show the step at once: the
    reference follows it within three chunks (120 ms), not after a second."""
    worst, tap = ramp_alignment(output_gap_s=0.054)
    steady = worst[:20]  # chunks 20..39
    assert max(steady) < 10.0
    after = worst[23:]  # from chunk 43 on
    assert max(after) - min(steady) < 1.0, worst[19:26]
