"""The turn-completion model behind `listen.end_of_turn: local`: smart-turn v3.2 on onnxruntime.

Pipecat's smart-turn v3.2 (BSD-2-Clause, about 8.7 MB) ships inside the `pipecat-ai` wheel as
`pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx`. It reads the last <= 8 s of a
user's speech as Whisper log-mel features and returns P(the turn is complete). We only need the
file: it is located with `importlib.util.find_spec`, which does not run pipecat's `__init__`
(that imports loguru and prints a banner), and the features are computed here in numpy (the
Whisper feature extractor's math, as pipecat vendors it from Hugging Face transformers,
Apache-2.0). Both packages are the optional `[turn]` extra and are imported lazily; any failure
to load is a `ListenConfigError` naming `listen.end_of_turn`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from agent.listen.errors import ListenConfigError

RATE = 16000
WINDOW_SAMPLES = 8 * RATE  # the model reads exactly 8 s (left-padded with zeros)
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_SUBDIR = ("audio", "turn", "smart_turn", "data")
KEY = "listen.end_of_turn"
INSTALL_HINT = "pip install 'voice-agent[turn]' (pipecat-ai ships the model, onnxruntime runs it)"

_N_FFT = 400
_HOP = 160
_N_MELS = 80


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (linear below 1 kHz, logarithmic above), as Whisper uses."""
    f = np.asarray(f, dtype=np.float64)
    mel = 3.0 * f / 200.0
    log = f >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) * (27.0 / np.log(6.4)), mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    hz = 200.0 * m / 3.0
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), hz)


def _mel_filters() -> np.ndarray:
    """(n_fft/2+1, 80) Slaney-normalised triangular filters from 0 Hz to 8 kHz."""
    mels = np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(RATE / 2)), _N_MELS + 2)
    edges = _mel_to_hz(mels)
    fft_freqs = np.linspace(0, RATE // 2, _N_FFT // 2 + 1)
    slopes = edges[None, :] - fft_freqs[:, None]
    diff = np.diff(edges)
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]


_WINDOW = np.hanning(_N_FFT + 1)[:-1]  # periodic Hann, like torch.hann_window
_FILTERS_T = _mel_filters().T


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper log-mel features (80 × 800, float32) of exactly 8 s of float audio at 16 kHz.

    Zero-mean unit-variance normalisation of the waveform, centred reflect-padded STFT
    (400-point Hann, hop 160), power spectrum through the mel filters, log10, floor at
    max - 8, then (x + 4) / 4: the transformers `WhisperFeatureExtractor` recipe.
    """
    x = np.asarray(audio, dtype=np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), (_N_FFT // 2, _N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2  # (frames, bins)
    spec = np.log10(np.maximum(1e-10, _FILTERS_T @ power.T))[:, :-1]
    spec = np.maximum(spec, spec.max() - 8.0)
    return ((spec + 4.0) / 4.0).astype(np.float32)


def fit_window(pcm: np.ndarray) -> np.ndarray:
    """int16 (or float) samples → float32 in [-1, 1], the last 8 s, left-padded with zeros."""
    x = np.asarray(pcm)
    x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
    if x.size >= WINDOW_SAMPLES:
        return x[-WINDOW_SAMPLES:]
    return np.concatenate([np.zeros(WINDOW_SAMPLES - x.size, dtype=np.float32), x])


def bundled_model_path() -> Path:
    """Where the installed pipecat-ai wheel keeps smart-turn v3.2, without importing pipecat."""
    try:
        spec = importlib.util.find_spec("pipecat")
    except (ImportError, ValueError):
        spec = None
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root).joinpath(*MODEL_SUBDIR, MODEL_FILE)
        if path.is_file():
            return path
    raise ListenConfigError(KEY, f"the turn model {MODEL_FILE} is not installed: {INSTALL_HINT}")


class SmartTurnModel:
    """P(turn complete) for the user's audio so far; callable, one inference per call.

    One intra-op thread: an inference costs tens of ms of one core and never competes with the
    audio path for more than one core.
    """

    def __init__(self, path: str | Path | None = None, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ListenConfigError(KEY, f"needs onnxruntime: {INSTALL_HINT}") from exc
        model = Path(path) if path is not None else bundled_model_path()
        opts = ort.SessionOptions()
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = max(1, threads)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self._session: Any = ort.InferenceSession(
                str(model), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ListenConfigError(KEY, f"cannot load the turn model {model}: {exc}") from exc
        self.path = model
        self._input = self._session.get_inputs()[0].name

    def __call__(self, pcm: np.ndarray) -> float:
        """P(complete) for 16 kHz audio (int16 or float in [-1, 1]); only the last 8 s count."""
        features = log_mel(fit_window(pcm))[None, :, :]
        out = self._session.run(None, {self._input: features})
        return float(np.asarray(out[0]).reshape(-1)[0])


def load_turn_model(path: str | Path | None = None) -> SmartTurnModel:
    """The bundled smart-turn model (or a compatible ONNX file); ListenConfigError if unusable."""
    return SmartTurnModel(path)
