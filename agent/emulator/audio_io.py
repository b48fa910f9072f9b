"""Audio in and out of the customization APIs: resolving samples, checking them, WAV previews.

The real service downloads the clone sample and rejects bad audio with specific codes
(`Audio.DecoderError`, `Audio.AudioRateError`, ...). The emulator runs offline, so it checks what
it can see: data URIs and `oss://` uploads are decoded and measured; http(s) URLs are accepted
without download (see docs/emulator.md for the marker words that simulate failures).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import wave
from dataclasses import dataclass

import numpy as np
from aiohttp import web

from agent.emulator.context import EmulatorContext
from agent.emulator.errors import ApiError, invalid

OSS_RESOLVE_HEADER = "X-DashScope-OssResourceResolve"
MAX_SAMPLE_BYTES = 10 * 1024 * 1024
MAX_DURATION_S = 60.0
DOWNLOAD_FAIL_MARKER = "download_failed"

_DATA_URI_RE = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,", re.IGNORECASE
)


@dataclass
class AudioSample:
    """A clone sample as the service sees it: bytes when it could get them, else just the link."""

    link: str  # what the voice record shows as resource_link
    data: bytes | None
    mime: str | None
    upload_model: str | None = None  # for oss:// samples: the model the upload was bound to


@dataclass
class WavInfo:
    rate: int
    channels: int
    duration_s: float
    longest_speech_s: float


def parse_data_uri(uri: str) -> tuple[str, bytes]:
    m = _DATA_URI_RE.match(uri)
    if not m:
        raise invalid("Audio data URI must look like 'data:<mime>;base64,<data>'.")
    try:
        data = base64.b64decode(uri[m.end() :], validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Audio data URI does not contain valid base64.") from None
    return (m.group("mime") or "").lower(), data


def resolve_sample(request: web.Request, ctx: EmulatorContext, ref: str, field: str) -> AudioSample:
    """Turn a `url` / `audio.data` value into an AudioSample, or raise the documented error."""
    if ref.startswith("data:"):
        mime, data = parse_data_uri(ref)
        if len(data) > MAX_SAMPLE_BYTES:
            raise invalid(f"{field}: audio exceeds the 10 MB limit.")
        return AudioSample(link=f"data:{mime};base64,...", data=data, mime=mime)
    if ref.startswith("oss://"):
        if request.headers.get(OSS_RESOLVE_HEADER, "").lower() != "enable":
            raise invalid(
                f"{field}: oss:// temporary URLs are only resolved when the request carries "
                f"the header '{OSS_RESOLVE_HEADER}: enable'."
            )
        stored = ctx.stores.uploads.get(ref[len("oss://") :])
        if stored is None:
            raise ApiError(
                400,
                "BadRequest.InputDownloadFailed",
                f"Failed to download the input file {ref}: no such temporary file "
                "(uploads live in memory and expire after 48 h).",
            )
        return AudioSample(
            link=ref, data=stored.data, mime=stored.content_type, upload_model=stored.model
        )
    if re.match(r"^https?://[^/\s]+", ref, re.IGNORECASE):
        if DOWNLOAD_FAIL_MARKER in ref:
            raise ApiError(
                400, "BadRequest.InputDownloadFailed", f"Failed to download the input file {ref}."
            )
        return AudioSample(link=ref, data=None, mime=None)
    raise invalid(f"{field}: must be a public http(s) URL, a base64 data URI or an oss:// URL.")


def sniff(data: bytes) -> str | None:
    """Container format by magic bytes: "wav", "mp3", "mp4" or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0):
        return "mp3"
    if data[4:8] == b"ftyp":
        return "mp4"
    return None


def analyze_wav(data: bytes) -> WavInfo:
    """Rate, duration and longest stretch of speech of a 16-bit PCM WAV; ValueError if undecodable."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError, ValueError) as e:
        raise ValueError(str(e)) from None
    if width != 2 or channels < 1 or rate <= 0:
        raise ValueError(f"unsupported WAV: {width * 8}-bit, {channels} channel(s)")
    pcm = np.frombuffer(frames[: len(frames) // (2 * channels) * 2 * channels], dtype="<i2")
    pcm = pcm.reshape(-1, channels)[:, 0]  # the service uses the first channel only
    return WavInfo(rate, channels, pcm.size / rate, longest_speech_s(pcm, rate))


def longest_speech_s(pcm: np.ndarray, rate: int, max_gap_s: float = 0.5) -> float:
    """Longest run of voiced 20 ms frames, bridging pauses up to `max_gap_s` (energy based)."""
    frame = max(1, rate // 50)
    n = pcm.size // frame
    if n == 0:
        return 0.0
    x = pcm[: n * frame].astype(np.float64).reshape(n, frame)
    rms = np.sqrt(np.mean(x * x, axis=1))
    floor, loud = (float(v) for v in np.percentile(rms, [10, 90]))
    # above -40 dBFS and above the noise floor (capped, so steady voicing still counts)
    voiced = rms > max(330.0, min(3.0 * floor, 0.3 * loud))
    best = run = gap = 0
    max_gap = int(max_gap_s * 50)
    for v in voiced:
        if v:
            run += gap + 1 if run else 1
            gap = 0
        elif run:
            gap += 1
            if gap > max_gap:
                run, gap = 0, 0
        best = max(best, run)
    return best / 50.0


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


def speech_pcm(text: str, rate: int) -> np.ndarray:
    """Speech for previews from the shared synthesizer; a gliding tone if it is unavailable."""
    try:
        from agent.emulator.speech import synthesize

        return synthesize(text, rate)
    except ImportError:
        seconds = max(1.0, 0.06 * len(text))
        t = np.arange(int(rate * seconds)) / rate
        tone = 0.3 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 3 * t)) * t)
        return (tone * 32767).astype(np.int16)
