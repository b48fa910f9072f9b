"""Echo gate: pass microphone audio during playback only where it is clearly louder than the echo.

Works on 10 ms frames, split into `BAND_EDGES_HZ` frequency bands (20 ms Hann windows), of the
microphone and of the aligned reference (reference.py):

* **Expected echo** in a band = that band's echo path gain × the reference's energy in the band
  at the estimated delay. The reference energy is first "reverb-smoothed" (it may decay by at
  most `DECAY_DB_PER_FRAME`, as a room's echo does after the speaker goes quiet) and then the
  maximum is taken from `SPREAD_FRAMES` later to `EARLY_FRAMES` earlier than the delay, which
  absorbs the delay estimate's error (reverberation biases it late). Resolution in time *and* frequency is what lets a user through: in the short pauses of
  the answer, and in the bands where the assistant's voice has little energy at that moment
  (another vowel, another pitch), the expected echo collapses. A broadband per-chunk comparison
  holds the gate shut through the whole answer unless the user is much louder than the speaker.
* **Delay**: the residual acoustic delay (speaker → air → microphone, plus what the device
  latencies did not account for) is found by correlating the broadband log-energy envelopes over
  the last seconds of playback, 0–`MAX_LAG_MS`, and accepted only when the correlation is clear.
* **Echo path gains** (one per band): tracked in dB as a high quantile (`GAIN_QUANTILE`) of the
  per-frame ratio microphone / expected echo, on frames where the speaker is active and the gate
  did not see the user. A quantile rather than a mean because a user talking over the answer
  only ever *adds* energy; the gate then requires `MARGIN_DB` above that quantile. The gains
  start at 0 dB (the microphone hears the speaker as loud as it was played: the worst common
  case), adapt fast during warm-ups and slowly afterwards, and are kept across answers.
* **Decision**: a frame is the user's when at least `MIN_USER_BANDS` bands are louder than their
  expected echo + margin and their noise floor; a chunk carries user evidence when at least half
  its frames do; the gate opens after `EVIDENCE_MS` of evidence in a row (one chunk of a
  misestimated echo must not reach the server's VAD, which itself needs ~60 ms of speech) and
  stays open `HANGOVER_MS` after the last evidence.
* **Veto**: before opening, the last 300 ms of the microphone's envelope are correlated with the
  reference's at every delay. If they follow it closely (`VETO_CORR`) at a delay other than the
  estimated one and the chunk's frames are *not* louder than the echo expected at that delay,
  the "user" is the echo arriving later or earlier than estimated — the latency of the audio
  path jumps after an underrun — and the gate stays shut while the delay is re-estimated.
Pure computation on numpy arrays, no I/O: unit-testable on synthetic signals. Memory is a few
fixed-size arrays (`HISTORY_FRAMES` × bands).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FRAME_MS = 10
BAND_EDGES_HZ = (100, 250, 400, 630, 1000, 1600, 2500, 4000, 6300, 8000)
HISTORY_FRAMES = 300  # 3 s of envelopes: delay estimation window and reverb memory
MAX_LAG_MS = 400  # residual delay searched (the reference already leads by REF_LEAD_S)
DEFAULT_LAG_MS = 60  # until estimated: REF_LEAD_S + a typical small acoustic/system delay
SPREAD_FRAMES = 2  # ± frames around the delay (±20 ms), more while the delay is a guess
EARLY_FRAMES = 4  # ... and up to 40 ms earlier: reverberation drags the envelope correlation's
# peak late, so onsets after a pause arrive before the estimated delay
GUESS_SPREAD_FRAMES = 8
DECAY_DB_PER_FRAME = 0.75  # reverberation tail: 60 dB in 800 ms (a lively living room)
MARGIN_DB = 6.0  # the user must be this much louder than the expected echo, in a band
MIN_USER_BANDS = 2  # ... in at least this many bands of a frame
NOISE_MARGIN_DB = 9.0  # ... and this much above the band's noise floor
# Levels in dBFS (a full-scale sine is -3 dBFS; frame_energy_db and BandAnalyzer agree).
ABS_MIN_DB = -80.0  # quieter frames (broadband) are never user speech
ACTIVE_REF_DB = -75.0  # reference frames louder than this are "the speaker is playing"
ACTIVE_BAND_DB = -90.0  # bands of the expected echo below this teach nothing about the gain
GAIN_INIT_DB = 0.0
GAIN_QUANTILE = 0.9
GAIN_STEP_WARM_DB = 2.0  # quantile-tracker step while warming up (converges in < 1 s)
GAIN_STEP_DB = 0.02  # ... and afterwards: ≤ 1.8 dB/s up, so a user talking over the answer
# barely moves it
TRAINED_FRAMES = 150  # active-reference frames seen before the gains count as learned (1.5 s)
DELAY_MIN_CORR = 0.6
DELAY_MIN_ACTIVE = 100  # active-reference frames in the window needed to estimate the delay
EVIDENCE_MS = 80
VETO_FRAMES = 30  # 300 ms of envelope compared with the reference before the gate opens
VETO_CORR = 0.8
HANGOVER_MS = 80
FLOOR_WINDOW = 300  # minimum-statistics noise floor over 3 s
SILENT_DB = -100.0
_TINY = 10 ** (SILENT_DB / 10)


def frame_energy_db(x: np.ndarray, frames: int) -> np.ndarray:
    """Mean-square energy in dBFS of `frames` equal parts of `x` (int16 or float)."""
    n = x.shape[0] // frames * frames
    f = x[:n].astype(np.float64).reshape(frames, -1) / 32768.0
    ms = np.mean(f * f, axis=1)
    return 10.0 * np.log10(np.maximum(ms, _TINY))


def to_db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, _TINY))


class BandAnalyzer:
    """Band energies (linear power, dBFS-scaled) of consecutive `hop`-sample frames.

    Each frame is a `2 × hop` Hann window ending at the frame's last sample (the previous
    chunk's tail is kept), so band energies of consecutive chunks join without a seam. Scaled so
    that the bands of a frame sum to about its mean square (Parseval over the window), i.e. the
    same dBFS as `frame_energy_db`.
    """

    def __init__(self, hop: int, rate: int = 16000) -> None:
        self.hop = hop
        n = 2 * hop
        self.window = np.hanning(n + 2)[1:-1]
        freqs = np.fft.rfftfreq(n, 1.0 / rate)
        edges = [e for e in BAND_EDGES_HZ if e <= rate / 2]
        self.bands = len(edges) - 1
        m = np.zeros((freqs.shape[0], self.bands))
        for b in range(self.bands):
            m[(freqs >= edges[b]) & (freqs < edges[b + 1]), b] = 1.0
        self._map = m
        self._scale = 2.0 / (n * float(np.sum(self.window**2)) * 32768.0**2)
        self._tail = np.zeros(hop)

    def reset(self) -> None:
        self._tail[:] = 0.0

    def analyze(self, x: np.ndarray, frames: int) -> np.ndarray:
        """(frames × bands) band powers of `x` (frames × hop samples)."""
        hop = self.hop
        sig = np.concatenate([self._tail, x[: frames * hop].astype(np.float64)])
        self._tail = sig[-hop:].copy()
        idx = np.arange(frames)[:, None] * hop + np.arange(2 * hop)[None, :]
        spec = np.fft.rfft(sig[idx] * self.window, axis=1)
        power = (spec.real**2 + spec.imag**2) * self._scale
        return power @ self._map


@dataclass
class GateStats:
    chunks: int = 0
    active_chunks: int = 0  # chunks during playback (where the gate decides)
    passed_chunks: int = 0  # of those, let through
    warm_chunks: int = 0  # of those, held by the warm-up
    openings: int = 0  # closed → open transitions
    vetoes: int = 0  # openings refused because the "user" looked like echo at another delay


class QuantileGain:
    """Gains in dB (one per band) tracked as the `quantile` of per-frame ratios, by fixed steps.

    A quantile tracker needs no memory of past frames and is robust to a minority of frames
    from another distribution (a user talking over the answer only ever adds energy).
    """

    def __init__(self, bands: int, init_db: float, quantile: float) -> None:
        self.db = np.full(bands, init_db)
        self.quantile = quantile

    def update(self, ratio_db: np.ndarray, valid: np.ndarray, step_db: float) -> None:
        up = valid & (ratio_db > self.db)
        down = valid & ~up
        self.db[up] += step_db * self.quantile
        self.db[down] -= step_db * (1.0 - self.quantile)


class NoiseFloor:
    """Minimum statistics over the last `FLOOR_WINDOW` frames, per band (a fan, a hum)."""

    def __init__(self, bands: int) -> None:
        self._hist = np.zeros((FLOOR_WINDOW, bands))
        self._n = 0

    def push(self, frames_db: np.ndarray) -> None:
        for row in frames_db:
            self._hist[self._n % FLOOR_WINDOW] = row
            self._n += 1

    @property
    def db(self) -> np.ndarray:
        n = min(self._n, FLOOR_WINDOW)
        return self._hist[:n].min(axis=0) if n else np.full(self._hist.shape[1], SILENT_DB)


class EchoGate:
    """Per-chunk pass/hold decisions on aligned 16 kHz microphone and reference chunks."""

    def __init__(
        self, chunk_samples: int, *, rate: int = 16000, quantile: float = GAIN_QUANTILE,
        trained_frames: int = TRAINED_FRAMES, margin_db: float = MARGIN_DB,
    ) -> None:
        self.frames_per_chunk = max(1, chunk_samples // (rate * FRAME_MS // 1000))
        hop = chunk_samples // self.frames_per_chunk
        self.frame_ms = hop * 1000.0 / rate
        chunk_ms = chunk_samples * 1000.0 / rate
        self.evidence_chunks = max(1, math.ceil(EVIDENCE_MS / chunk_ms - 1e-9))
        self.hangover_chunks = max(1, math.ceil(HANGOVER_MS / chunk_ms - 1e-9))
        self.trained_after = trained_frames
        self.margin_db = margin_db
        self._mic_bands = BandAnalyzer(hop, rate)
        self._ref_bands = BandAnalyzer(hop, rate)
        b = self.bands = self._mic_bands.bands
        h = HISTORY_FRAMES
        self._mic = np.full(h, SILENT_DB)  # broadband dB of the microphone, newest last
        self._ref = np.full(h, SILENT_DB)  # broadband dB of the reference
        self._ref_s = np.full((h, b), SILENT_DB)  # reverb-smoothed reference bands (dB)
        self.floor = NoiseFloor(b)
        self.max_lag = int(MAX_LAG_MS / self.frame_ms)
        self.lag = int(round(DEFAULT_LAG_MS / self.frame_ms))
        self.lag_known = False
        self._lag_votes: list[int] = []
        self.gain = QuantileGain(b, GAIN_INIT_DB, quantile)  # microphone / reference, per band
        self.trained_frames = 0
        self.open = False
        self._evidence_run = 0
        self._hang = 0
        self._since_delay = 0
        self._idle_frames = 0
        self.stats = GateStats()

    # ------------------------------------------------------------------ state

    @property
    def trained(self) -> bool:
        """The echo path gains have been learned from enough playback."""
        return self.trained_frames >= self.trained_after

    @property
    def gain_db(self) -> float:
        """The echo path gain, averaged over the bands (for summaries)."""
        return float(np.mean(self.gain.db))

    @property
    def noise_floor_db(self) -> float:
        """Broadband noise floor of the microphone over the last 3 s."""
        return float(self._mic.min())

    def _push(self, mic_db: np.ndarray, ref_db: np.ndarray, ref_bands_db: np.ndarray) -> None:
        k = mic_db.shape[0]
        for arr, new in ((self._mic, mic_db), (self._ref, ref_db)):
            arr[:-k] = arr[k:]
            arr[-k:] = new
        s = self._ref_s
        s[:-k] = s[k:]
        prev = s[-k - 1].copy()
        for i in range(k):
            prev = np.maximum(ref_bands_db[i], prev - DECAY_DB_PER_FRAME)
            s[-k + i] = prev

    def expected_echo_db(self, k: int, lag: int | None = None) -> np.ndarray:
        """Expected echo per band (dB, before the path gains) of the newest `k` frames, at the
        estimated delay or at `lag` (frames)."""
        spread = SPREAD_FRAMES if self.lag_known or lag is not None else GUESS_SPREAD_FRAMES
        lag = self.lag if lag is None else lag
        h = HISTORY_FRAMES
        out = np.empty((k, self.bands))
        for i in range(k):
            f = h - k + i  # index of the frame in the history
            lo = max(0, f - lag - spread)
            hi = max(lo + 1, min(h, f - lag + max(spread, EARLY_FRAMES) + 1))
            out[i] = self._ref_s[lo:hi].max(axis=0)
        return out

    # ------------------------------------------------------------------ decisions

    def process(
        self, mic: np.ndarray, ref: np.ndarray, *, playing: bool, warming: bool, hold: bool = False
    ) -> bool:
        """Decide one chunk. `playing`: the speaker is (or just was) playing; `warming`: barge-in
        is not allowed yet (start of a playback: learn fast); `hold`: do not let this chunk
        through either, but learn as usual. True: let the chunk through."""
        k = self.frames_per_chunk
        self.stats.chunks += 1
        if playing or ref.any():
            self._idle_frames = 0
        elif self._idle_frames >= HISTORY_FRAMES:
            return True  # long silent and idle: skip the analysis (no echo can be on its way)
        else:
            self._idle_frames += k
        ref_p = self._ref_bands.analyze(ref, k)
        mic_p = self._mic_bands.analyze(mic, k)
        mic_b = to_db(mic_p)
        mic_db = to_db(mic_p.sum(axis=1))
        self._push(mic_db, to_db(ref_p.sum(axis=1)), to_db(ref_p))
        self.floor.push(mic_b)
        exp_b = self.expected_echo_db(k)
        echo_active = to_db((10.0 ** (exp_b / 10.0)).sum(axis=1)) > ACTIVE_REF_DB
        if not playing and not echo_active.any():
            self._reset_decision()
            return True  # nothing is playing and no echo can be on its way: not our business
        self.stats.active_chunks += 1
        self._since_delay += 1
        if self._since_delay * k * self.frame_ms >= 1000.0:  # re-estimate about once a second
            self._since_delay = 0
            self._estimate_delay()
        user = self._user_frames(mic_b, mic_db, exp_b)
        self._adapt(mic_b, exp_b, echo_active, user, warming)
        if warming or hold:
            self.stats.warm_chunks += 1
            self._reset_decision()
            return False
        evidence = int(user.sum()) * 2 >= k
        if evidence and not self.open and self._evidence_run + 1 >= self.evidence_chunks:
            alt = self._echo_lag()
            if alt is not None and abs(alt - self.lag) > SPREAD_FRAMES:
                again = self._user_frames(mic_b, mic_db, self.expected_echo_db(k, alt))
                if int(again.sum()) * 2 < k:
                    # The "user" is the echo arriving at another delay than estimated (the audio
                    # path's latency jumped after an underrun, say): hold, re-estimate now.
                    self.stats.vetoes += 1
                    self._since_delay = 10**6
                    evidence = False
        return self._decide(evidence)

    def _user_frames(self, mic_b: np.ndarray, mic_db: np.ndarray, exp_b: np.ndarray) -> np.ndarray:
        """Frames with `MIN_USER_BANDS` bands clearly louder than the echo expected in them."""
        loud = mic_b > np.maximum(exp_b + self.gain.db + self.margin_db, self.floor.db + NOISE_MARGIN_DB)
        return (loud.sum(axis=1) >= MIN_USER_BANDS) & (mic_db > ABS_MIN_DB)

    def _decide(self, evidence: bool) -> bool:
        if evidence:
            self._evidence_run += 1
            if self._evidence_run >= self.evidence_chunks:
                if not self.open:
                    self.stats.openings += 1
                self.open = True
                self._hang = self.hangover_chunks
        else:
            self._evidence_run = 0
            if self.open:
                self._hang -= 1
                if self._hang < 0:
                    self.open = False
        if self.open:
            self.stats.passed_chunks += 1
        return self.open

    def assume_user(self) -> None:
        """The user is known to be talking (the uplink's guard after the wake sound): open now,
        as after `EVIDENCE_MS` of evidence, and stay open for the hangover. Without it the gate
        would be shut when the guard ends mid-question and cut `EVIDENCE_MS` or more of it while
        fresh evidence builds up (the wake earcon's expected echo decays slowly)."""
        self.open = True
        self._evidence_run = self.evidence_chunks
        self._hang = self.hangover_chunks

    def _reset_decision(self) -> None:
        self.open = False
        self._evidence_run = 0
        self._hang = 0

    def _adapt(
        self, mic_b: np.ndarray, exp_b: np.ndarray, active: np.ndarray, user: np.ndarray, warming: bool
    ) -> None:
        """Quantile-track the path gains on echo-only frames (see the module docstring)."""
        learning = warming or not self.trained
        step = GAIN_STEP_WARM_DB if learning else GAIN_STEP_DB
        use = active if learning else active & ~user
        band_ok = exp_b > ACTIVE_BAND_DB
        floor = self.floor.db + 3.0
        for i in np.flatnonzero(use):
            self.trained_frames += 1  # a speaker too quiet to be heard is learned as well
            # Noise-dominated bands say nothing about the echo path.
            self.gain.update(mic_b[i] - exp_b[i], band_ok[i] & (mic_b[i] > floor), step)

    def _echo_lag(self) -> int | None:
        """The delay at which the microphone's recent envelope best follows the reference's,
        if it clearly does (correlation of the last `VETO_FRAMES` log-energies > `VETO_CORR`)."""
        h, w = HISTORY_FRAMES, VETO_FRAMES
        floor = max(self.noise_floor_db, ABS_MIN_DB - 10)
        mic = np.maximum(self._mic[h - w :], floor)
        mic = mic - mic.mean()
        mic_norm = math.sqrt(float(mic @ mic))
        if mic_norm == 0.0:
            return None
        refc = np.maximum(self._ref, ACTIVE_REF_DB - 20)
        best, best_lag = VETO_CORR, None
        for lag in range(self.max_lag + 1):
            r = refc[h - w - lag : h - lag]
            r = r - r.mean()
            denom = mic_norm * math.sqrt(float(r @ r))
            if denom > 0.0 and float(mic @ r) / denom > best:
                best, best_lag = float(mic @ r) / denom, lag
        return best_lag

    def _estimate_delay(self) -> None:
        """Correlate the log-energy envelopes over the history; accept only a clear peak."""
        ref = self._ref
        active = ref > ACTIVE_REF_DB
        if int(active.sum()) < DELAY_MIN_ACTIVE:
            return
        h = HISTORY_FRAMES
        n = h - self.max_lag
        floor = max(self.noise_floor_db, ABS_MIN_DB - 10)
        mic = np.maximum(self._mic[h - n :], floor)
        mic = mic - mic.mean()
        mic_norm = math.sqrt(float(mic @ mic))
        if mic_norm == 0.0:
            return
        refc = np.maximum(ref, ACTIVE_REF_DB - 20)
        best, best_lag = -1.0, self.lag
        for lag in range(self.max_lag + 1):
            r = refc[h - n - lag : h - lag]
            r = r - r.mean()
            denom = mic_norm * math.sqrt(float(r @ r))
            if denom == 0.0:
                continue
            c = float(mic @ r) / denom
            if c > best:
                best, best_lag = c, lag
        if best < DELAY_MIN_CORR:
            return
        votes = self._lag_votes
        votes.append(best_lag)
        del votes[:-5]
        med = sorted(votes)[len(votes) // 2]
        if len(votes) >= 2 and sum(1 for v in votes if abs(v - med) <= 1) * 2 > len(votes):
            self.lag = med
            self.lag_known = True
