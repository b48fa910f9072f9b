"""The emulator's honest, limited "ASR": a phrasebook matched by dynamic time warping.

Real speech recognition is impossible offline, yet the realtime endpoint must say what the user
said, and demos and tests must be able to check it. So the emulator knows a small phrasebook,
renders each phrase with its own voice (`speech.synthesize`), and matches incoming speech
against those renderings: log-mel cepstra with per-utterance mean normalisation (level changes
cancel out), a spectral floor (a little noise is masked the same way in both), silence trimming,
then DTW. A match must be good on average *and* everywhere along the path, so a different word
in an otherwise similar sentence is rejected rather than misheard. Anything else is reported as
`[unrecognized speech, N.N s]` — never a guess.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.emulator import speech

RATE = 16000
PHRASES: tuple[str, ...] = (
    "What's the weather like today?",
    "Tell me a joke.",
    "What time is it?",
    "Hello there.",
    "Stop right there.",
    "Tell me about the moon.",
    "Thank you very much.",
    "Play some music.",
    "How are you doing?",
    "Set a timer for five minutes.",
    "Goodbye.",
    "What can you do?",
)

MAX_SEGMENT_S = 15.0  # longer segments are not matched at all (bounded CPU per turn)
MAX_LENGTH_RATIO = 2.0  # tempo difference beyond which a template cannot be the phrase
MEAN_LIMIT = 3.0  # accept: mean DTW frame distance at most this ...
LOCAL_LIMIT = 12.0  # ... and no stretch of the path (≈ 0.1 s) worse than this
_WIN, _HOP, _NFFT, _NMELS, _NCEP = 400, 160, 512, 26, 13  # 25 ms / 10 ms frames at 16 kHz
_FLOOR_DB = 25.0  # spectral floor below the utterance's peak (masks mild noise)
_TRIM_DB = 35.0  # frames this far below the loudest frame are silence
_LOCAL_FRAMES = 10  # path steps averaged for the local (per-syllable) distance
_EDGE_STEPS = 8  # path steps at each end left out of the local distance


def phrasebook() -> list[str]:
    """Texts the emulator can recognize; speak one of these to get a real transcript."""
    return list(PHRASES)


@dataclass(frozen=True)
class Match:
    text: str
    distance: float  # mean DTW distance per path step
    local: float  # worst windowed distance along the path


class Recognizer:
    """Matches 16 kHz int16 speech against a phrasebook rendered with `synth`."""

    def __init__(
        self,
        phrases: Sequence[str] = PHRASES,
        synth: Callable[[str, int], np.ndarray] = speech.synthesize,
    ) -> None:
        self._phrases = tuple(phrases)
        self._synth = synth
        self._templates: list[tuple[str, np.ndarray]] | None = None
        self._lock = threading.Lock()

    def phrasebook(self) -> list[str]:
        return list(self._phrases)

    def warm_up(self) -> None:
        """Render the phrasebook now (it is otherwise rendered on the first recognition)."""
        self._get_templates()

    def recognize(self, pcm16k: np.ndarray) -> str:
        """The phrase spoken in `pcm16k`, or `[unrecognized speech, N.N s]`."""
        best = self.best_match(pcm16k)
        if best is not None and best.distance <= MEAN_LIMIT and best.local <= LOCAL_LIMIT:
            return best.text
        return f"[unrecognized speech, {speech_seconds(pcm16k):.1f} s]"

    def best_match(self, pcm16k: np.ndarray) -> Match | None:
        """Closest phrase by mean distance (None for silence or over-long input)."""
        pcm = np.asarray(pcm16k, dtype=np.int16).ravel()
        if pcm.size > MAX_SEGMENT_S * RATE:
            return None
        feats = features(pcm)
        if feats is None:
            return None
        best: Match | None = None
        for text, tmpl in self._get_templates():
            n, m = len(feats), len(tmpl)
            if n > MAX_LENGTH_RATIO * m or m > MAX_LENGTH_RATIO * n:
                continue
            distance, local = dtw(feats, tmpl)
            if best is None or distance < best.distance:
                best = Match(text, distance, local)
        return best

    def _get_templates(self) -> list[tuple[str, np.ndarray]]:
        with self._lock:
            if self._templates is None:
                built = []
                pad = np.zeros(RATE // 4, dtype=np.int16)
                for text in self._phrases:
                    # framed by silence like real input, so both are trimmed the same way
                    f = features(np.concatenate([pad, self._synth(text, RATE), pad]))
                    if f is not None:
                        built.append((text, f))
                self._templates = built
            return self._templates


@functools.lru_cache(maxsize=1)
def default_recognizer() -> Recognizer:
    """The process-wide recognizer over the standard phrasebook (templates built once)."""
    return Recognizer()


def speech_seconds(pcm16k: np.ndarray) -> float:
    """Duration of the voiced part of a segment (silence at both ends not counted)."""
    energies = _frame_energies_db(np.asarray(pcm16k, dtype=np.int16).ravel())
    span = _voiced_span(energies)
    if span is None:
        return 0.0
    return ((span[1] - span[0]) * _HOP + _WIN) / RATE


def features(pcm16k: np.ndarray) -> np.ndarray | None:
    """Mean-normalised mel cepstra (c1..c12) of the voiced span; None if there is none."""
    x = np.asarray(pcm16k, dtype=np.float64).ravel() / 32768.0
    if x.size < _WIN:
        return None
    power = _power_spectrum(x)
    span = _voiced_span(10.0 * np.log10(power.sum(axis=1) + 1e-12))
    if span is None:
        return None
    mel = power[span[0] : span[1]] @ _MEL_FB.T
    mel = np.log(mel + mel.max() * 10 ** (-_FLOOR_DB / 10) + 1e-20)
    mel -= mel.mean(axis=0)
    return (mel @ _DCT)[:, 1:]


def dtw(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Symmetric DTW: (mean step distance, worst `_LOCAL_FRAMES`-step average on the path).

    Rows are vectorised: within a row C[j] = D[j] + min(up_or_diag[j], C[j-1]) is a running
    minimum over prefix sums, so only the row loop is in Python.
    """
    n, m = len(a), len(b)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    d = np.sqrt(np.maximum(sq, 0.0))
    cost = np.empty((n, m))
    cost[0] = np.cumsum(d[0])
    inf = np.array([np.inf])
    for i in range(1, n):
        prev = cost[i - 1]
        v = d[i] + np.minimum(prev, np.concatenate([inf, prev[:-1]]))
        s = np.cumsum(d[i])
        cost[i] = s + np.minimum.accumulate(v - s)
    local = _path_costs(cost, d)
    if local.size > 2 * _EDGE_STEPS + _LOCAL_FRAMES:
        local = local[_EDGE_STEPS:-_EDGE_STEPS]  # edges depend on trimming, not on the words
    w = min(_LOCAL_FRAMES, local.size)
    worst = float(np.convolve(local, np.ones(w) / w, mode="valid").max())
    return float(cost[-1, -1] / (n + m)), worst


def _path_costs(cost: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Local distances along the optimal path (backtracked from the cumulative cost)."""
    i, j = cost.shape[0] - 1, cost.shape[1] - 1
    out = [d[i, j]]
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            diag, up, left = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
            if diag <= up and diag <= left:
                i, j = i - 1, j - 1
            elif up <= left:
                i -= 1
            else:
                j -= 1
        out.append(d[i, j])
    return np.asarray(out)


def _power_spectrum(x: np.ndarray) -> np.ndarray:
    n = 1 + (x.size - _WIN) // _HOP
    idx = np.arange(_WIN)[None, :] + _HOP * np.arange(n)[:, None]
    return np.abs(np.fft.rfft(x[idx] * _WINDOW, _NFFT)) ** 2


def _frame_energies_db(pcm: np.ndarray) -> np.ndarray:
    x = pcm.astype(np.float64) / 32768.0
    if x.size < _WIN:
        return np.zeros(0)
    return 10.0 * np.log10(_power_spectrum(x).sum(axis=1) + 1e-12)


def _voiced_span(energies: np.ndarray) -> tuple[int, int] | None:
    """First and one-past-last frame louder than both the peak-relative and floor thresholds."""
    if energies.size == 0 or energies.max() < -75.0:  # digital silence / dither
        return None
    floor = float(np.percentile(energies, 10))
    threshold = max(energies.max() - _TRIM_DB, min(floor + 10.0, energies.max() - 6.0))
    loud = np.flatnonzero(energies > threshold)
    if loud.size < 3:
        return None
    return int(loud[0]), int(loud[-1]) + 1


def _mel_filterbank() -> np.ndarray:
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = mel_to_hz(
        np.linspace(hz_to_mel(np.array(100.0)), hz_to_mel(np.array(7000.0)), _NMELS + 2)
    )
    bins = np.floor((_NFFT + 1) * edges / RATE).astype(int)
    fb = np.zeros((_NMELS, _NFFT // 2 + 1))
    for i in range(_NMELS):
        lo, mid, hi = bins[i], bins[i + 1], bins[i + 2]
        fb[i, lo:mid] = (np.arange(lo, mid) - lo) / max(1, mid - lo)
        fb[i, mid:hi] = (hi - np.arange(mid, hi)) / max(1, hi - mid)
    return fb


_WINDOW = np.hamming(_WIN)
_MEL_FB = _mel_filterbank()
_DCT = np.cos(np.pi / _NMELS * (np.arange(_NMELS)[:, None] + 0.5) * np.arange(_NCEP)[None, :])
