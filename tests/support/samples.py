"""Sample builders: speech, WAVs in every encoding the readers accept (and some they refuse),
MP3/M4A headers, data URIs.

Samples are generated here (espeak-ng through the emulator's synthesizer when installed, else its
formant voice), never read from checked-in files. `wav_bytes` is an encoder *with variants*
(24-bit, float, WAVE_FORMAT_EXTENSIBLE, a lying data size), so the product's one reader,
`agent.audio.wav`, is tested against files it did not write itself. MP3 and M4A are built
structurally (valid frame headers / MP4 boxes around empty payloads): the local checks only read
headers.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import numpy as np

from agent.emulator.speech import synthesize

TEXTS = (
    "The quick brown fox jumps over the lazy dog while the kiosk greets every visitor "
    "with a warm and friendly voice that sounds natural and clear in every room.",
    "Please remember that the library closes at eight tonight and opens again at nine "
    "tomorrow morning, so bring your books back before the doors are locked.",
)


def speech(seconds: float = 12.0, rate: int = 24000, variant: int = 0) -> np.ndarray:
    """Float mono speech of about `seconds` (espeak-ng or the synthetic voice), peak ~0.6."""
    parts: list[np.ndarray] = []
    total = 0
    i = variant
    while total < seconds * rate:
        pcm = synthesize(TEXTS[i % len(TEXTS)], rate).astype(np.float32) / 32768.0
        parts.append(pcm)
        parts.append(np.zeros(int(0.3 * rate), dtype=np.float32))
        total += len(pcm) + int(0.3 * rate)
        i += 1
    return np.concatenate(parts)[: int(seconds * rate)]


def wav_bytes(samples: np.ndarray, rate: int, *, bits: int = 16, fmt: str = "pcm",
              extensible: bool = False, data_size: int | None = None) -> bytes:
    """WAV of samples (frames,) or (frames, channels): float in [-1, 1], or int16 written as is.

    PCM 16/24 or float32, plain or WAVE_FORMAT_EXTENSIBLE; `data_size` overrides the data
    chunk's size field."""
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    channels = x.shape[1]
    if x.dtype == np.int16 and bits == 16 and fmt == "pcm":
        body, tag = x.astype("<i2").tobytes(), 1
    elif fmt == "float":
        body = x.astype("<f4").tobytes()
        bits, tag = 32, 3
    elif bits == 16:
        body = np.clip(np.round(x.astype(np.float64) * 32767), -32768, 32767).astype("<i2").tobytes()
        tag = 1
    elif bits == 24:
        v = np.clip(np.round(x.astype(np.float64) * 8388607), -8388608, 8388607)
        b = v.astype(np.int32).reshape(-1).astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        body = b.tobytes()
        tag = 1
    else:
        raise ValueError(bits)
    align = channels * bits // 8
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt_chunk = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * align, align, bits)
        fmt_chunk += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + guid_tail
    else:
        fmt_chunk = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    size_field = len(body) if data_size is None else data_size
    chunks = b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk
    chunks += b"data" + struct.pack("<I", size_field) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def write_sample(path: Path, samples: np.ndarray, rate: int, **kw: Any) -> Path:
    """`wav_bytes` written to `path` (the variants included)."""
    path.write_bytes(wav_bytes(samples, rate, **kw))
    return path


def speech_wav(seconds: float = 6.0, rate: int = 24000, amplitude: float = 0.3) -> bytes:
    """A WAV of a voiced, syllable-modulated tone: 'speech' to the emulator's energy checks."""
    t = np.arange(int(rate * seconds)) / rate
    envelope = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    signal = amplitude * envelope * np.sin(2 * np.pi * 160 * t)
    return wav_bytes((signal * 32767).astype(np.int16), rate)


def silence_wav(seconds: float = 6.0, rate: int = 24000) -> bytes:
    return wav_bytes(np.zeros(int(rate * seconds), dtype=np.int16), rate)


def data_uri(data: bytes, mime: str = "audio/wav") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


SAMPLE_TEXT = TEXTS[0]


def write_voice_sample(path: Path, seconds: float = 12.0, rate: int = 24000) -> Path:
    """A speech WAV the emulator accepts for cloning (continuous speech, 24 kHz, 16-bit mono)."""
    pcm = synthesize(SAMPLE_TEXT, rate)
    reps = int(np.ceil(seconds * rate / len(pcm)))
    return write_sample(path, np.tile(pcm, reps)[: int(seconds * rate)].astype(np.int16), rate)


def mp3_bytes(seconds: float, rate: int = 44100, channels: int = 1, bitrate_kbps: int = 64,
              id3: bool = True) -> bytes:
    """Layer III frames with valid headers and zero payloads (enough for header scanning)."""
    table = {44100: (3, 0), 48000: (3, 1), 32000: (3, 2), 22050: (2, 0), 24000: (2, 1),
             16000: (2, 2), 11025: (0, 0), 12000: (0, 1), 8000: (0, 2)}
    version, rate_i = table[rate]
    mpeg1 = version == 3
    rates = ([0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320] if mpeg1
             else [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160])
    br_i = rates.index(bitrate_kbps)
    mode = 3 if channels == 1 else 0
    header = (0x7FF << 21) | (version << 19) | (1 << 17) | (1 << 16) | (br_i << 12) | (rate_i << 10) | (mode << 6)
    length = (144 if mpeg1 else 72) * bitrate_kbps * 1000 // rate
    spf = 1152 if mpeg1 else 576
    frames = int(round(seconds * rate / spf))
    frame = header.to_bytes(4, "big") + b"\x00" * (length - 4)
    out = frame * frames
    if id3:
        out = b"ID3\x04\x00\x00" + bytes([0, 0, 0, 10]) + b"\x00" * 10 + out
    return out


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def m4a_bytes(seconds: float, rate: int = 44100, channels: int = 1, codec: bytes = b"mp4a") -> bytes:
    """ftyp + moov/trak/mdia(mdhd, hdlr soun, minf/stbl/stsd(mp4a)) + an empty mdat."""
    mdhd = _box(b"mdhd", struct.pack(">B3xIIII", 0, 0, 0, rate, int(seconds * rate)) + b"\x00" * 4)
    hdlr = _box(b"hdlr", b"\x00" * 4 + b"\x00" * 4 + b"soun" + b"\x00" * 12 + b"SoundHandler\x00")
    entry_payload = b"\x00" * 6 + struct.pack(">H", 1) + b"\x00" * 8
    entry_payload += struct.pack(">HHHHI", channels, 16, 0, 0, rate << 16)
    stsd = _box(b"stsd", struct.pack(">II", 0, 1) + _box(codec, entry_payload))
    stbl = _box(b"stbl", stsd)
    minf = _box(b"minf", stbl)
    mdia = _box(b"mdia", mdhd + hdlr + minf)
    trak = _box(b"trak", mdia)
    mvhd = _box(b"mvhd", b"\x00" * 100)
    moov = _box(b"moov", mvhd + trak)
    ftyp = _box(b"ftyp", b"M4A " + b"\x00\x00\x00\x00" + b"M4A isom")
    return ftyp + moov + _box(b"mdat", b"\x00" * 64)
