"""Speech nobody recorded: espeak-ng, flite, festival (HTS slt) and hibari at 16 kHz, plus noise mixing.

Wake-word tests and bench/wakeword.py need many voices saying known phrases at several rates
(reference/listening-frontend.md §3). All three synthesizers are Debian packages (espeak-ng,
flite, festival + festvox-us-slt-hts; sox for the HTS voice's rate). hibari (PyPI `hibari-tts`,
Apache-2.0, 14 MB wheel, onnxruntime) is a neural voice distilled from Kokoro-82M: closer to what
turn and wake-word models were trained on. Only its bundled voice "heart" is used ("heart-gb" is the
same voice with British spelling-to-sound rules): its other voices download at first use, which a
bench must not do. Bench-only: not in any extra (`pip install hibari-tts` to get these voices; `HIBARI_VOICES`
is empty without it). Results are cached by (engine, voice, stretch, text) in a
directory the caller owns (a pytest tmp dir, a bench temp dir), never in the repository.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import wave
from pathlib import Path
from typing import Any

import numpy as np
import soxr

RATE = 16000
ESPEAK_VOICES = ("en-us", "en", "en-gb+m3", "en-us+f3", "en-us+m7", "en-gb-x-rp", "en-029", "en-us+f2")
FLITE_VOICES = ("slt", "kal16", "awb", "rms")
FESTIVAL_VOICES = ("slt_hts",)
HIBARI_VOICES = ("heart", "heart-gb") if importlib.util.find_spec("hibari") else ()
ALL_VOICES: tuple[tuple[str, str], ...] = (
    *(("espeak", v) for v in ESPEAK_VOICES),
    *(("flite", v) for v in FLITE_VOICES),
    *(("festival", v) for v in FESTIVAL_VOICES),
)  # hibari is left out here: wake-word sets keep their voices; callers add HIBARI_VOICES
_hibari: dict[str, Any] = {}
DEBIAN_PACKAGES = ("espeak-ng", "flite", "festival", "festvox-us-slt-hts", "sox")


def read_wav(path: Path) -> np.ndarray:
    """A WAV file as 16 kHz mono int16 (resampled and down-mixed as needed)."""
    with wave.open(str(path), "rb") as w:
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    x = data.reshape(-1, channels).mean(axis=1).astype(np.float32)
    if rate != RATE:
        x = soxr.resample(x, rate, RATE)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def synth(text: str, engine: str, voice: str, stretch: float, cache_dir: Path) -> np.ndarray:
    """`text` spoken by `engine`/`voice`, `stretch` > 1 slower; 16 kHz mono int16, cached."""
    key = hashlib.sha1(f"{engine}|{voice}|{stretch}|{text}".encode()).hexdigest()[:16]
    out = cache_dir / f"{engine}-{voice}-{key}.wav"
    if not out.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.wav")
        if engine == "espeak":
            cmd = ["espeak-ng", "-v", voice, "-s", str(round(175 / stretch)), "-w", str(tmp), text]
        elif engine == "flite":
            cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}", "-t", text]
            cmd += ["-o", str(tmp)]
        elif engine == "hibari":
            _hibari_wav(text, voice, stretch, tmp)
            cmd = []
        elif engine == "festival":
            txt = out.with_suffix(".txt")
            txt.write_text(text, encoding="utf-8")
            raw = out.with_suffix(".raw.wav")
            cmd = ["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", str(txt), "-o", str(raw)]
            subprocess.run(cmd, check=True, capture_output=True, timeout=120)
            # The HTS voice ignores Duration_Stretch: change the tempo (pitch kept) with sox.
            cmd = ["sox", str(raw), str(tmp), "tempo", "-s", f"{1 / stretch:.4f}"]
        else:
            raise ValueError(f"unknown synthesizer {engine!r}")
        if cmd:
            subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        tmp.rename(out)
    return read_wav(out)


def _hibari_wav(text: str, voice: str, stretch: float, path: Path) -> None:
    """hibari's bundled voice (never a downloaded one) into a 24 kHz WAV at `path`."""
    if voice not in ("heart", "heart-gb"):
        raise ValueError(f"hibari voice {voice!r}: only the bundled 'heart' (and 'heart-gb') run offline")
    if voice not in _hibari:
        from hibari import Hibari
        from hibari.g2p import G2P

        _hibari[voice] = Hibari(voice="heart", g2p=G2P(british=voice == "heart-gb"))
    tts = _hibari[voice]
    x = np.asarray(tts(text, speed=1.0 / stretch, seed=0), dtype=np.float32)
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(tts.sample_rate)
        w.writeframes(pcm.tobytes())


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)) + 1e-9)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float, offset: int = 0) -> np.ndarray:
    """`signal` plus `noise` (looped from `offset`) scaled so speech is `snr_db` above it.

    The SNR is measured over the voiced part of `signal` (samples above 1 % of full scale), so
    padding silence does not change the condition.
    """
    voiced = signal[np.abs(signal) > 327]
    level = rms(voiced if voiced.size else signal)
    idx = (np.arange(signal.size) + offset) % noise.size
    n = noise[idx].astype(np.float64)
    n *= level / rms(n) / 10 ** (snr_db / 20)
    return np.clip(np.round(signal + n), -32768, 32767).astype(np.int16)


def white_noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal(int(seconds * RATE)) * 3000, -32768, 32767).astype(np.int16)
