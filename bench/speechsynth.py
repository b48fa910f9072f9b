"""Speech nobody recorded: espeak-ng, flite and festival (HTS slt) at 16 kHz, plus noise mixing.

Wake-word tests and bench/wakeword.py need many voices saying known phrases at several rates
(reference/listening-frontend.md §3). All three synthesizers are Debian packages (espeak-ng,
flite, festival + festvox-us-slt-hts; sox for the HTS voice's rate). Results are cached by (engine, voice, stretch, text) in a
directory the caller owns (a pytest tmp dir, a bench temp dir), never in the repository.
"""

from __future__ import annotations

import hashlib
import subprocess
import wave
from pathlib import Path

import numpy as np
import soxr

RATE = 16000
ESPEAK_VOICES = ("en-us", "en", "en-gb+m3", "en-us+f3", "en-us+m7", "en-gb-x-rp", "en-029", "en-us+f2")
FLITE_VOICES = ("slt", "kal16", "awb", "rms")
FESTIVAL_VOICES = ("slt_hts",)
ALL_VOICES: tuple[tuple[str, str], ...] = (
    *(("espeak", v) for v in ESPEAK_VOICES),
    *(("flite", v) for v in FLITE_VOICES),
    *(("festival", v) for v in FESTIVAL_VOICES),
)
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
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        tmp.rename(out)
    return read_wav(out)


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
