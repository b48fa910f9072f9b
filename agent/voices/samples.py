"""Local checks and conversion of the voice sample, before any network call.

Why local: the services reject bad samples with terse codes (`Audio.AudioRateError`,
`Audio.PreprocessError`) after an upload, and a CosyVoice clone can even sit in review and end
`UNDEPLOYED`. An unattended device should instead fail at start with one message that says what to
fix, naming `voice.sample` (exit 78), and should fix what it can itself (resample, downmix,
re-encode) rather than refuse it.

Rules (documented in docs/voices.md, limits from reference/dashscope-protocol.md §2.2–2.3):

- format by content: WAV (PCM or float, converted to 16-bit), MP3, M4A (AAC)
- size ≤ 10 MB (10 000 000 bytes; for qwen the whole data URI); duration ≥ 3 s and ≤ 60 s (warning outside 10–20 s)
- sample rate: < 16 kHz rejected (upsampling adds no detail); cosyvoice accepts ≥ 16 kHz;
  qwen needs ≥ 24 kHz, so 16–24 kHz is upsampled to 24 kHz with a warning
- channels: more than one → one channel is used (the first, unless it is silent), with a warning
- content (WAV always; MP3/M4A when ffmpeg or sox can decode them): nearly silent, < 3 s of
  audible speech, or > 1 % of samples at full scale (clipping) → rejected
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

from agent.audio.wav import encode_wav
from agent.voices import audioformats as af
from agent.voices.errors import SampleError

MAX_BYTES = 10_000_000  # S000 '≤ 10 MB', S004 '< 10 MB': decimal megabytes (audit R8)
MAX_DURATION_S = 60.0
MIN_DURATION_S = 3.0
RECOMMENDED_S = (10.0, 20.0)
MIN_RATE_HZ = 16000  # below this a sample is rejected for both families
QWEN_MIN_RATE_HZ = 24000
QWEN_MAX_RATE_HZ = 48000  # higher rates are resampled down so the data URI stays small
MIN_VOICED_S = 3.0
COSY_MIN_VOICED_S = 5.0  # CosyVoice asks for ≥ 5 s of continuous speech: below → warning
CLIP_FRACTION = 0.01
SILENT_DBFS = -50.0  # loudest 20 ms frame below this → "nearly silent"
VOICED_FLOOR_DBFS = -45.0
VOICED_BELOW_PEAK_DB = 30.0
FRAME_S = 0.02
DECODE_TIMEOUT_S = 60.0

FIX_HINT = "e.g. `sox INPUT -b 16 -c 1 -r 24000 sample.wav` or `ffmpeg -i INPUT -ac 1 -ar 24000 sample.wav`"


@dataclass
class PreparedSample:
    """The bytes to send and what was done to them."""

    path: Path
    data: bytes
    mime: str
    format: str  # of `data`: wav | mp3 | m4a
    digest: str  # sha256 of the original file's bytes (the cache key)
    original: af.AudioInfo
    sample_rate: int  # of `data`
    converted: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def filename(self) -> str:
        """Upload name: the original stem with the extension of what is actually sent."""
        return (self.path.stem or "sample") + af.EXTENSION[self.format]

    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def file_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def prepare_sample(path: str | Path, family: str, *, log: logging.Logger | None = None) -> PreparedSample:
    """Check `path` for `family` (qwen | cosyvoice) and return compliant bytes; raise SampleError."""
    log = log or logging.getLogger("voice-agent.voices")
    p = Path(path).expanduser()
    name = str(path)

    def fail(why: str) -> SampleError:
        return SampleError(f"voice.sample: {name}: {why}")

    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise fail("file not found") from None
    except IsADirectoryError:
        raise fail("is a directory, not an audio file") from None
    except OSError as e:
        raise fail(f"cannot read the file ({e.strerror or e})") from None
    if not data:
        raise fail("the file is empty: record 10–20 s of clear speech (WAV, 16-bit, mono, ≥ 24 kHz)")
    if len(data) > MAX_BYTES:
        raise fail(
            f"the file is {len(data) / 1e6:.1f} MB; the limit is 10 MB: trim it to 10–20 s of "
            "speech (or use a compressed MP3)"
        )
    fmt = af.detect_format(data)
    if fmt is None:
        raise fail(
            f"not a WAV, MP3 or M4A audio file (judged by content, not by name: it looks like "
            f"{af.describe_unknown(data)}); convert it to a 16-bit mono WAV, {FIX_HINT}"
        )
    warnings: list[str] = []
    checker = _Checker(name, family, warnings)
    try:
        if fmt == af.WAV:
            wav = af.read_wav(data)
            info = wav.info
            checker.container(info)
            mono = checker.pick_channel(wav.samples)
            checker.content(mono, info.sample_rate)
            prepared = _prepare_wav(p, data, wav, mono, family)
        else:
            info = af.scan_mp3(data) if fmt == af.MP3 else af.scan_m4a(data)
            checker.container(info)
            decoded = decode_external(p, info.sample_rate)
            if decoded is not None:
                mono = decoded  # tools downmix; fine for judging the content
                checker.content(mono, info.sample_rate)
            else:
                log.info(
                    "voice.sample: %s: no ffmpeg/sox that decodes %s here; silence and clipping "
                    "are left to the service to judge",
                    name,
                    fmt.upper(),
                )
            prepared = _prepare_compressed(p, data, info, decoded, family, checker)
    except af.AudioFormatError as e:
        what = {af.WAV: "WAV", af.MP3: "MP3", af.M4A: "M4A"}[fmt]
        raise fail(f"unreadable {what} file ({e}); re-export it as a 16-bit PCM WAV, {FIX_HINT}") from None
    if family == "qwen":
        prepared = _fit_data_uri(prepared, checker)
    prepared.warnings = warnings
    for w in warnings:
        log.warning("%s", w)
    return prepared


class _Checker:
    """Applies the rules; collects warnings, raises SampleError with what to fix."""

    def __init__(self, name: str, family: str, warnings: list[str]) -> None:
        self.name, self.family, self.warnings = name, family, warnings

    def fail(self, why: str) -> SampleError:
        return SampleError(f"voice.sample: {self.name}: {why}")

    def warn(self, why: str) -> None:
        self.warnings.append(f"voice.sample: {self.name}: {why}")

    def container(self, info: af.AudioInfo) -> None:
        d = info.duration_s
        if d > MAX_DURATION_S:
            raise self.fail(f"{d:.1f} s long; the limit is 60 s (10–20 s is best): trim it")
        if d < MIN_DURATION_S:
            raise self.fail(
                f"only {d:.1f} s long; the service needs at least 3 s of continuous speech "
                "(10–20 s is best): record a longer sample"
            )
        lo, hi = RECOMMENDED_S
        if not lo <= d <= hi:
            self.warn(f"{d:.1f} s long; 10–20 s of speech clones best")
        rate = info.sample_rate
        if rate < MIN_RATE_HZ:
            need = "24 kHz (qwen)" if self.family == "qwen" else "16 kHz (cosyvoice)"
            raise self.fail(
                f"sampled at {rate} Hz; the service needs at least {need}, and upsampling cannot "
                "add the missing detail: record it again at 24 kHz or more (44.1/48 kHz are fine)"
            )
        if self.family == "qwen" and rate < QWEN_MIN_RATE_HZ:
            self.warn(
                f"sampled at {rate} Hz; qwen cloning needs ≥ 24 kHz, so it is upsampled to 24 kHz, "
                "which adds no detail: for a better clone record at 24 kHz or more"
            )

    def pick_channel(self, samples: np.ndarray) -> np.ndarray:
        """First channel, like the service does; another one only if the first is silent."""
        channels = samples.shape[1]
        if channels == 1:
            return samples[:, 0]
        rms = np.sqrt(np.mean(np.square(samples, dtype=np.float64), axis=0)) if len(samples) else np.zeros(channels)
        pick = 0
        if rms[0] < 0.1 * float(rms.max()):
            pick = int(np.argmax(rms))
        which = "the first" if pick == 0 else f"channel {pick + 1} (the first is nearly silent)"
        self.warn(f"has {channels} channels; using {which}: record in mono to choose yourself")
        return samples[:, pick]

    def content(self, mono: np.ndarray, rate: int) -> None:
        """Silence / too little speech / clipping on the signal that will be sent."""
        n = max(1, int(rate * FRAME_S))
        frames = len(mono) // n
        if frames == 0:
            raise self.fail("contains no audio samples: record 10–20 s of clear speech")
        x = mono[: frames * n].astype(np.float64).reshape(frames, n)
        frame_rms = np.sqrt(np.mean(x * x, axis=1))
        loudest = float(frame_rms.max())
        if _dbfs(loudest) < SILENT_DBFS:
            raise self.fail(
                f"nearly silent (loudest passage {_dbfs(loudest):.0f} dBFS): check the recording "
                "(muted or wrong microphone input?) and record 10–20 s of clear speech"
            )
        ref = float(np.percentile(frame_rms, 95))
        threshold = max(10 ** (VOICED_FLOOR_DBFS / 20), ref * 10 ** (-VOICED_BELOW_PEAK_DB / 20))
        voiced_s = float(np.count_nonzero(frame_rms > threshold)) * n / rate
        if voiced_s < MIN_VOICED_S:
            total = len(mono) / rate
            raise self.fail(
                f"only {voiced_s:.1f} s of audible speech in {total:.1f} s; the service needs at "
                "least 3 s of clear speech: speak closer to the microphone or raise the gain, and "
                "trim long pauses"
            )
        if self.family == "cosyvoice" and voiced_s < COSY_MIN_VOICED_S:
            self.warn(f"only {voiced_s:.1f} s of speech; CosyVoice wants ≥ 5 s of continuous speech")
        clipped = float(np.count_nonzero(np.abs(mono) >= 32766 / 32768)) / len(mono)
        if clipped > CLIP_FRACTION:
            raise self.fail(
                f"clipped: {clipped:.1%} of the samples are at full scale, which distorts the "
                "voice: record it again with lower input gain"
            )


def _dbfs(rms: float) -> float:
    return 20 * np.log10(max(rms, 1e-10))


def _prepare_wav(p: Path, data: bytes, wav: af.WavAudio, mono: np.ndarray, family: str) -> PreparedSample:
    info = wav.info
    rate = info.sample_rate
    target = rate
    if family == "qwen":
        target = min(max(rate, QWEN_MIN_RATE_HZ), QWEN_MAX_RATE_HZ)
    digest = file_digest(data)
    # As it is only when the services can read it as it is (a plain RIFF; RF64 is re-encoded).
    if info.channels == 1 and info.encoding == "pcm16" and target == rate and data[:4] == b"RIFF":
        return PreparedSample(p, data, af.MIME[af.WAV], af.WAV, digest, info, rate, False)
    out = mono
    if target != rate:
        out = soxr.resample(mono.astype(np.float32), rate, target, quality="HQ")
    return PreparedSample(
        p, encode_wav(out, target), af.MIME[af.WAV], af.WAV, digest, info, target, True
    )


def _prepare_compressed(
    p: Path,
    data: bytes,
    info: af.AudioInfo,
    decoded: np.ndarray | None,
    family: str,
    checker: _Checker,
) -> PreparedSample:
    """MP3/M4A go as they are when they already comply; else they are converted to WAV."""
    digest = file_digest(data)
    needs: list[str] = []
    if family == "qwen":
        if info.sample_rate < QWEN_MIN_RATE_HZ:
            needs.append(f"≥ 24 kHz (it is {info.sample_rate} Hz)")
        if info.channels != 1:
            needs.append(f"mono (it has {info.channels} channels)")
    elif info.channels != 1:
        checker.warn(f"has {info.channels} channels; the service uses the first: record in mono")
    if not needs:
        return PreparedSample(p, data, af.MIME[info.format], info.format, digest, info, info.sample_rate, False)
    if decoded is None:
        tool = "ffmpeg (or sox with MP3 support)" if info.format == af.MP3 else "ffmpeg"
        raise checker.fail(
            f"qwen cloning needs {' and '.join(needs)}; converting a {info.format.upper()} file "
            f"needs {tool}, which is not installed: install it, or convert the sample to a "
            f"16-bit mono WAV yourself, {FIX_HINT}"
        )
    target = min(max(info.sample_rate, QWEN_MIN_RATE_HZ), QWEN_MAX_RATE_HZ)
    out = soxr.resample(decoded.astype(np.float32), info.sample_rate, target, quality="HQ")
    return PreparedSample(p, encode_wav(out, target), af.MIME[af.WAV], af.WAV, digest, info, target, True)


def _fit_data_uri(prepared: PreparedSample, checker: _Checker) -> PreparedSample:
    """Qwen takes the sample as a base64 data URI, whose whole length (prefix included) must stay
    under 10 MB (S004: "The encoded data must be less than 10 MB")."""
    if data_uri_size(prepared.mime, len(prepared.data)) < MAX_BYTES:
        return prepared
    if prepared.format == af.WAV and prepared.sample_rate > QWEN_MIN_RATE_HZ:
        mono = af.read_wav(prepared.data).samples[:, 0]
        out = soxr.resample(mono, prepared.sample_rate, QWEN_MIN_RATE_HZ, quality="HQ")
        data = encode_wav(out, QWEN_MIN_RATE_HZ)
        if data_uri_size(af.MIME[af.WAV], len(data)) < MAX_BYTES:
            prepared.data, prepared.sample_rate, prepared.converted = data, QWEN_MIN_RATE_HZ, True
            return prepared
    raise checker.fail(
        f"too large for qwen cloning: the service takes it base64-encoded, "
        f"{data_uri_size(prepared.mime, len(prepared.data)) / 1e6:.1f} MB as a data URI, over the 10 MB "
        "limit: trim it to 10–20 s"
    )


def _b64_len(n: int) -> int:
    return (n + 2) // 3 * 4


def data_uri_size(mime: str, n: int) -> int:
    """Length of `data:<mime>;base64,<n bytes encoded>`, what the 10 MB limit counts."""
    return len(f"data:{mime};base64,") + _b64_len(n)


def decode_external(path: Path, rate: int) -> np.ndarray | None:
    """Decode MP3/M4A to float mono at `rate` with ffmpeg or sox, if one is installed and able.

    Returns None when no tool can do it (sox is often built without MP3 support), so the caller
    can choose between sending the file as it is and asking the user to convert it.
    """
    commands = []
    if shutil.which("ffmpeg"):
        commands.append(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(rate),
             "-f", "s16le", "-"]
        )
    if shutil.which("sox"):
        commands.append(["sox", "-q", str(path), "-t", "raw", "-e", "signed", "-b", "16",
                         "-c", "1", "-r", str(rate), "-L", "-"])
    for cmd in commands:
        try:
            res = subprocess.run(cmd, capture_output=True, timeout=DECODE_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if res.returncode == 0 and len(res.stdout) >= 2:
            pcm = np.frombuffer(res.stdout[: len(res.stdout) // 2 * 2], dtype="<i2")
            return pcm.astype(np.float32) / 32768.0
    return None
