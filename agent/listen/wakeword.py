"""Wake-word detection over 16 kHz mono int16 PCM (SPEC §10, `listen.wake_word`).

The engine is microWakeWord through `pymicro-wakeword`, which ships its models and its own
TensorFlow Lite library, so nothing is downloaded at run time. The package is imported only
when a detector is loaded, so `listen.mode: always` never pays for it.

Chunking invariance is a contract: the uplink sends 40 ms chunks, tests and the benchmark feed
10 ms, 100 ms or whole files, and the daemon must detect exactly what the engine detects offline
(SPEC §9). So audio is re-cut into the engine's own hop (10 ms) here, and a detection is
reported at the sample offset where the hop that fired ended — the same number whatever the
chunk size. A refractory period, counted in samples, keeps one utterance from firing twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.listen.errors import ListenConfigError

RATE = 16000
BUILTIN_WAKE_WORDS = ("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft")
DEFAULT_REFRACTORY_S = 2.0
_TFLITE_MAGIC = b"TFL3"  # FlatBuffer file identifier of a TensorFlow Lite model (bytes 4..8)
_KEY = "listen.wake_word"


@dataclass(frozen=True)
class WakeDetection:
    """One wake word heard: `end_sample` counts samples since the detector started."""

    word: str
    score: float
    end_sample: int

    @property
    def end_s(self) -> float:
        """Stream time (s) at which the wake word had been heard."""
        return self.end_sample / RATE


class WakeEngine(Protocol):
    """What the detector needs from an engine: scores for fixed-size hops of audio."""

    word: str
    hop_samples: int
    cutoff: float

    def scores(self, hop: bytes) -> list[float]:
        """Probabilities the wake word just ended, one per inference this hop completed."""
        ...

    def close(self) -> None: ...


class WakeWordDetector:
    """Streams PCM of any chunk size through an engine; returns detections with offsets."""

    def __init__(
        self,
        engine: WakeEngine,
        threshold: float | None = None,
        refractory_s: float = DEFAULT_REFRACTORY_S,
    ) -> None:
        self.engine = engine
        self.word = engine.word
        self.threshold = engine.cutoff if threshold is None else float(threshold)
        self._refractory = int(refractory_s * RATE)
        self._hop_bytes = engine.hop_samples * 2
        self._pending = b""
        self._samples = 0  # samples consumed by the engine (whole hops)
        self._quiet_until = 0

    @property
    def samples(self) -> int:
        """Samples the engine has consumed (fed samples minus a partial hop)."""
        return self._samples

    def process(self, pcm: bytes) -> list[WakeDetection]:
        """Feed PCM (16 kHz mono int16 bytes); return the detections it completed."""
        data = self._pending + pcm if self._pending else pcm
        n = len(data) // self._hop_bytes
        found: list[WakeDetection] = []
        for i in range(n):
            hop = data[i * self._hop_bytes : (i + 1) * self._hop_bytes]
            self._samples += self.engine.hop_samples
            for score in self.engine.scores(hop):
                if score > self.threshold and self._samples >= self._quiet_until:
                    found.append(WakeDetection(self.word, float(score), self._samples))
                    self._quiet_until = self._samples + self._refractory
        self._pending = bytes(data[n * self._hop_bytes :])
        return found

    def close(self) -> None:
        """Free the engine's native interpreter."""
        self.engine.close()


class MicroEngine:
    """microWakeWord: 10 ms feature hops, an inference every `stride` features, mean window."""

    hop_samples = 160

    def __init__(self, model: Any) -> None:
        from pymicro_features import MicroFrontend

        self._model = model
        self._frontend = MicroFrontend()
        self.word = str(model.id)
        self.cutoff = float(model.probability_cutoff)

    def scores(self, hop: bytes) -> list[float]:
        result = self._frontend.process_samples(hop)
        if not result.features:
            return []
        features = np.array(result.features).reshape((1, 1, len(result.features)))
        prob = self._model.process_streaming_prob(features)
        return [] if prob is None else [float(prob)]

    def close(self) -> None:
        self._model.close()


def model_config_path(spec: str) -> Path:
    """Resolve `listen.wake_word` to a microWakeWord JSON config (built-in name or a file)."""
    if spec in BUILTIN_WAKE_WORDS:
        try:
            import pymicro_wakeword
        except ImportError as exc:
            raise ListenConfigError(
                _KEY, "needs pymicro-wakeword: pip install 'voice-agent[listen]'"
            ) from exc
        return Path(pymicro_wakeword.__file__).parent / "models" / f"{spec}.json"
    path = Path(spec).expanduser()
    if path.suffix == ".tflite":
        path = path.with_suffix(".json")  # the cut-off and window live in the sibling JSON
    if path.suffix != ".json":
        raise ListenConfigError(
            _KEY,
            f"{spec!r} is neither a built-in wake word ({', '.join(BUILTIN_WAKE_WORDS)}) "
            "nor a microWakeWord model file (.json next to its .tflite)",
        )
    return path


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ListenConfigError(_KEY, f"cannot read model config {path}: {exc}") from exc
    micro = config.get("micro") if isinstance(config, dict) else None
    if not isinstance(micro, dict) or not isinstance(config.get("model"), str):
        raise ListenConfigError(_KEY, f"{path} is not a microWakeWord model config")
    for field in ("probability_cutoff", "sliding_window_size"):
        if not isinstance(micro.get(field), (int, float)):
            raise ListenConfigError(_KEY, f"{path}: micro.{field} missing or not a number")
    tflite = path.parent / config["model"]
    try:
        with tflite.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ListenConfigError(_KEY, f"cannot read model {tflite}: {exc}") from exc
    if head[4:8] != _TFLITE_MAGIC:
        raise ListenConfigError(_KEY, f"{tflite} is not a TensorFlow Lite model")
    return config


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a native call that prints its own errors."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _probe_tflite(tflite: Path) -> None:
    """Parse the model once with the engine's own library before the package does.

    pymicro-wakeword does not check TfLiteModelCreateFromFile's result and crashes the process
    (SIGSEGV) on a corrupt file; a corrupt model must be exit 78 naming the key instead.
    """
    import pymicro_wakeword
    from pymicro_wakeword.wakeword import TfLiteWakeWord

    lib_dir = Path(pymicro_wakeword.__file__).parent / "lib"
    lib_path = next(iter(lib_dir.glob("*tensorflowlite_c.*")), None)
    if lib_path is None:
        raise ListenConfigError(_KEY, f"pymicro-wakeword has no TensorFlow Lite library in {lib_dir}")
    lib = TfLiteWakeWord(lib_path).lib
    with _native_stderr_silenced():  # its "not a valid Flatbuffer" line; our message says it
        handle = lib.TfLiteModelCreateFromFile(str(tflite.resolve()).encode("utf-8"))
    if not handle:
        raise ListenConfigError(_KEY, f"{tflite} is not a valid TensorFlow Lite model")
    lib.TfLiteModelDelete(handle)


def load_wake_word(
    spec: str,
    threshold: float | None = None,
    refractory_s: float = DEFAULT_REFRACTORY_S,
) -> WakeWordDetector:
    """Load a detector for `listen.wake_word` / `listen.wake_threshold`.

    Raises ListenConfigError naming the key for a missing, unreadable or malformed model, or a
    threshold outside (0, 1): the daemon maps it to exit 78 before anything starts.
    """
    if threshold is not None and not 0.0 < float(threshold) < 1.0:
        raise ListenConfigError("listen.wake_threshold", f"{threshold} is not between 0 and 1")
    path = model_config_path(spec)
    try:
        from pymicro_wakeword import MicroWakeWord
    except ImportError as exc:
        raise ListenConfigError(
            _KEY, "needs pymicro-wakeword: pip install 'voice-agent[listen]'"
        ) from exc
    config = _read_config(path)
    _probe_tflite(path.parent / config["model"])
    try:
        model = MicroWakeWord.from_config(path)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ListenConfigError(_KEY, f"cannot load {path}: {exc}") from exc
    return WakeWordDetector(MicroEngine(model), threshold, refractory_s)
