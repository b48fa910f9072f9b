"""Deterministic, speech-like audio for the emulator.

The emulator must return audio that sounds like speech (demos are listened to) and that is
bit-for-bit repeatable (tests compare what was played with what was sent). espeak-ng gives
intelligible speech when installed; otherwise a small formant synthesizer produces a voice-like
signal (pitched glottal pulses through vowel formants, noisy consonants, pauses between words)
so everything still works on a bare machine.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import zlib

import numpy as np
import soxr

ESPEAK_VOICE = "en-us"
ESPEAK_WPM = 175
PEAK = 0.6 * 32767  # common output peak, so espeak and the fallback voice play equally loud
_CACHE_SIZE = 96
_ESPEAK_TIMEOUT_S = 30.0


def espeak_path() -> str | None:
    """Path of espeak-ng (or espeak) if installed."""
    return shutil.which("espeak-ng") or shutil.which("espeak")


def backend() -> str:
    """Which voice `synthesize` uses on this machine: "espeak-ng" or "synthetic"."""
    return "espeak-ng" if espeak_path() else "synthetic"


def synthesize(text: str, rate: int = 24000) -> np.ndarray:
    """Speak `text` as mono int16 PCM at `rate` Hz; same text and rate → same samples."""
    return np.frombuffer(_synthesize_cached(text, int(rate)), dtype=np.int16).copy()


def user_utterance(
    text: str, rate: int = 16000, lead_ms: int = 300, trail_ms: int = 1000
) -> np.ndarray:
    """A "user speaking" clip (16 kHz by default) framed by silence, as a microphone hears it."""
    speech = synthesize(text, rate)
    lead = np.zeros(rate * lead_ms // 1000, dtype=np.int16)
    trail = np.zeros(rate * trail_ms // 1000, dtype=np.int16)
    return np.concatenate([lead, speech, trail])


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample int16 PCM with soxr (high quality, deterministic)."""
    if src_rate == dst_rate or pcm.size == 0:
        return pcm.astype(np.int16, copy=True)
    out = soxr.resample(pcm.astype(np.float32), src_rate, dst_rate, quality="HQ")
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _synthesize_cached(text: str, rate: int) -> bytes:
    """Cached core of `synthesize` (bytes are immutable, so cache entries cannot be altered)."""
    pcm = None
    if espeak_path() and text.strip():
        pcm = _espeak(text, rate)
    if pcm is None:
        pcm = synthetic_voice(text, rate)
    return pcm.tobytes()


def _espeak(text: str, rate: int) -> np.ndarray | None:
    """Run espeak-ng and return its speech resampled to `rate`; None if it failed."""
    exe = espeak_path()
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "--stdout", "-v", ESPEAK_VOICE, "-s", str(ESPEAK_WPM), "--stdin"],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=_ESPEAK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parsed = _parse_wav(proc.stdout) if proc.returncode == 0 else None
    if parsed is None:
        return None
    src_rate, samples = parsed
    samples = _trim_silence(samples)
    return _normalize(resample(samples, src_rate, rate))


def _parse_wav(data: bytes) -> tuple[int, np.ndarray] | None:
    """Parse espeak's streamed WAV (its RIFF/data sizes are placeholders, so `wave` can't)."""
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, rate = 12, 0
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"fmt ":
            rate = int.from_bytes(data[pos + 12 : pos + 16], "little")
        elif cid == b"data":
            body = data[pos + 8 :]
            body = body[: len(body) // 2 * 2]
            return (rate, np.frombuffer(body, dtype="<i2").astype(np.int16)) if rate else None
        pos += 8 + size + (size & 1)
    return None


def _trim_silence(pcm: np.ndarray, level: int = 64) -> np.ndarray:
    """Drop leading/trailing near-silence so clips start with the voice."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > level)
    return pcm[loud[0] : loud[-1] + 1] if loud.size else pcm[:0]


def _normalize(pcm: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(pcm.astype(np.float64)))) if pcm.size else 0.0
    if peak <= 0:
        return pcm.astype(np.int16)
    return np.clip(np.round(pcm * (PEAK / peak)), -32768, 32767).astype(np.int16)


# --- synthetic fallback voice -----------------------------------------------------------------

# (F1, F2, F3) in Hz for the vowel letters, roughly an adult speaker's formants.
_VOWELS: dict[str, tuple[float, float, float]] = {
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (300, 2200, 2950),
    "o": (570, 840, 2410),
    "u": (440, 1020, 2240),
    "y": (400, 1900, 2600),
}
_FRICATIVES = set("fhsvxzcjq")
_PLOSIVES = set("bdgkpt")


def synthetic_voice(text: str, rate: int = 24000) -> np.ndarray:
    """Formant-synthesized speech-like audio, deterministic from `text` alone.

    Each letter group becomes a syllable: a consonant onset (noise burst or hiss) and a voiced
    vowel nucleus (glottal pulse train with falling intonation through three formant
    resonators). Words are separated by short pauses and sentences by longer ones.
    """
    rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
    words = "".join(c.lower() if c.isalnum() else f" {c} " for c in text).split()
    pieces: list[np.ndarray] = []
    n_words = max(1, sum(1 for w in words if w[0].isalnum()))
    w_index = 0
    for word in words:
        if not word[0].isalnum():
            if word in ".!?;:":
                pieces.append(np.zeros(int(0.25 * rate)))
            elif word == ",":
                pieces.append(np.zeros(int(0.12 * rate)))
            continue
        progress = w_index / n_words
        f0 = 150.0 - 40.0 * progress  # declination across the utterance
        for onset, nucleus in _syllables(word):
            if onset:
                pieces.append(_consonant(onset, rate, rng))
            if nucleus:
                pieces.append(_vowel(nucleus, f0 + rng.uniform(-8, 8), rate, rng))
        pieces.append(np.zeros(int(rng.uniform(0.05, 0.09) * rate)))
        w_index += 1
    if not pieces:
        return np.zeros(0, dtype=np.int16)
    audio = np.concatenate(pieces)
    return _normalize(audio)


def _syllables(word: str) -> list[tuple[str, str]]:
    """Split a word into (consonant onset, vowel nucleus) pairs; digits read as one vowel each."""
    out: list[tuple[str, str]] = []
    onset, nucleus = "", ""
    for ch in word:
        if ch in "0123456789":
            ch = "aeiou"[int(ch) % 5]
        if ch in _VOWELS:
            nucleus += ch
        elif nucleus:
            out.append((onset, nucleus))
            onset, nucleus = ch, ""
        else:
            onset += ch
    if nucleus:
        out.append((onset, nucleus))
    elif onset:
        # trailing consonants become a coda; a vowel-less word ("hmm") still gets a vowel
        out.append((onset, "" if out else "e"))
    return out


def _consonant(onset: str, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A consonant cluster, letter by letter: band-limited hiss (fricatives), a short burst
    (plosives) or a low voiced murmur (nasals, liquids); each letter has its own spectrum so
    different words stay acoustically different."""
    parts = []
    for ch in onset:
        if ch in _PLOSIVES:
            dur, gain = 0.03, 0.5
        elif ch in _FRICATIVES:
            dur, gain = 0.07, 0.3
        else:
            dur, gain = 0.05, 0.2
        n = max(8, int(dur * rate))
        centre = 700.0 + (ord(ch) * 389) % 4800  # letter-specific spectral centre, 0.7–5.5 kHz
        if ch in _PLOSIVES or ch in _FRICATIVES:
            spec = np.fft.rfft(rng.standard_normal(n))
            freqs = np.fft.rfftfreq(n, 1.0 / rate)
            spec *= np.exp(-(((freqs - centre) / (0.25 * centre + 300.0)) ** 2))
            sound = np.fft.irfft(spec, n)
            sound /= max(1e-9, float(np.max(np.abs(sound))))
        else:
            t = np.arange(n) / rate
            sound = np.sin(2 * np.pi * 220.0 * t) + 0.4 * np.sin(2 * np.pi * centre / 2 * t)
        parts.append(gain * sound * np.hanning(n))
    return np.concatenate(parts)


def _vowel(nucleus: str, f0: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Voiced nucleus: glottal pulses filtered by the vowel's formants, smooth envelope."""
    dur = 0.08 + 0.04 * len(nucleus) + rng.uniform(0.0, 0.03)
    n = int(dur * rate)
    t = np.arange(n) / rate
    pitch = f0 * (1.0 + 0.06 * np.sin(2 * np.pi * 3.0 * t))  # gentle vibrato-like movement
    phase = np.cumsum(pitch / rate)
    pulses = np.zeros(n)
    pulses[np.flatnonzero(np.diff(np.floor(phase), prepend=0.0) > 0)] = 1.0
    f1, f2, f3 = _VOWELS[nucleus[0]]
    ir_t = np.arange(int(0.025 * rate)) / rate
    ir = np.zeros_like(ir_t)
    for freq, bw, amp in ((f1, 90, 1.0), (f2, 110, 0.6), (f3, 160, 0.3)):
        ir += amp * np.exp(-np.pi * bw * ir_t) * np.sin(2 * np.pi * freq * ir_t)
    voiced = np.convolve(pulses, ir)[:n]
    attack = min(n, int(0.02 * rate))
    env = np.ones(n)
    env[:attack] = np.linspace(0.0, 1.0, attack)
    env[n - attack :] = np.minimum(env[n - attack :], np.linspace(1.0, 0.0, attack))
    return voiced * env
