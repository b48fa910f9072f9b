"""WAV input (any PCM/float layout → mono int16 at a chosen rate) and a crash-tolerant WAV writer.

Why our own RIFF reader: the stdlib `wave` module (3.10/3.11) rejects WAVE_FORMAT_EXTENSIBLE and
IEEE-float files, which are what many recorders and editors write. The file backend promises to
read "any rate or channel count", so we parse the few chunk types that matter ourselves.

Why the writer patches its header periodically: the output file stands in for a speaker, and a
test or demo reads it after the process ends. A clean stop writes the final sizes; a crash
(SIGKILL, power loss) leaves a header at most `header_every_s` stale, so the file still opens
(readers stop at the declared size) instead of claiming zero or garbage length.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import numpy as np

from agent.audio.resample import resample_once

_PCM = 1
_FLOAT = 3
_EXTENSIBLE = 0xFFFE


class WavError(ValueError):
    """The file is not a WAV we can read; the message says why."""


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a WAV file as float32 samples in [-1, 1], shape (frames, channels), and its rate."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise WavError(f"{p}: cannot read: {e.strerror or e}") from None
    if len(raw) < 12 or raw[:4] not in (b"RIFF", b"RF64") or raw[8:12] != b"WAVE":
        raise WavError(f"{p}: not a WAV file (no RIFF/WAVE header)")
    fmt = None
    data = None
    pos = 12
    while pos + 8 <= len(raw):
        cid = raw[pos : pos + 4]
        size = struct.unpack_from("<I", raw, pos + 4)[0]
        body = raw[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            data = body  # a truncated file (crash) simply yields fewer frames
            break
        pos += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise WavError(f"{p}: missing or short 'fmt ' chunk")
    if data is None:
        raise WavError(f"{p}: missing 'data' chunk")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # first two bytes of the sub-format GUID
    if channels < 1 or rate < 1 or block_align < 1:
        raise WavError(f"{p}: invalid format (channels={channels}, rate={rate})")
    width = block_align // channels
    usable = len(data) - len(data) % block_align
    buf = data[:usable]
    if tag == _PCM and width == 1:
        x = (np.frombuffer(buf, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif tag == _PCM and width == 2:
        x = np.frombuffer(buf, "<i2").astype(np.float32) / 32768.0
    elif tag == _PCM and width == 3:
        b = np.frombuffer(buf, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif tag == _PCM and width == 4:
        x = np.frombuffer(buf, "<i4").astype(np.float32) / float(1 << 31)
    elif tag == _FLOAT and width == 4:
        x = np.frombuffer(buf, "<f4").astype(np.float32)
    elif tag == _FLOAT and width == 8:
        x = np.frombuffer(buf, "<f8").astype(np.float32)
    else:
        raise WavError(f"{p}: unsupported WAV encoding (format tag {tag}, {bits} bits)")
    return x.reshape(-1, channels), int(rate)


def read_wav_mono(path: str | os.PathLike[str], rate: int) -> np.ndarray:
    """Read any WAV as mono int16 at `rate` (channels averaged, soxr resampling)."""
    x, src_rate = read_wav(path)
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    pcm = np.clip(np.round(mono * 32767.0), -32768, 32767).astype(np.int16)
    return resample_once(pcm, src_rate, rate)


def write_wav(path: str | os.PathLike[str], pcm: np.ndarray, rate: int) -> None:
    """Write mono int16 samples as a 16-bit PCM WAV in one go."""
    with WavWriter(path, rate) as w:
        w.write(np.ascontiguousarray(pcm, dtype=np.int16))


class WavWriter:
    """Streaming mono 16-bit WAV writer whose header is rewritten every `header_every_s`."""

    def __init__(self, path: str | os.PathLike[str], rate: int, header_every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.rate = int(rate)
        self.frames = 0
        self._every = header_every_s
        self._f = open(self.path, "wb")  # noqa: SIM115 - lives as long as the stream
        self._f.write(self._header(0))
        self._f.flush()
        self._last_patch = time.monotonic()

    def _header(self, frames: int) -> bytes:
        data_bytes = frames * 2
        return (
            b"RIFF"
            + struct.pack("<I", 36 + data_bytes)
            + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, _PCM, 1, self.rate, self.rate * 2, 2, 16)
            + b"data"
            + struct.pack("<I", data_bytes)
        )

    def write(self, block: np.ndarray) -> None:
        """Append int16 samples; patch the header if it is older than `header_every_s`."""
        self._f.write(memoryview(block).cast("B") if block.flags.c_contiguous else block.tobytes())
        self.frames += int(block.shape[0])
        if time.monotonic() - self._last_patch >= self._every:
            self.patch_header()

    def patch_header(self) -> None:
        """Make the header describe every frame written so far and push the data to the OS."""
        f = self._f
        f.flush()
        end = f.tell()
        f.seek(0)
        f.write(self._header(self.frames))
        f.seek(end)
        f.flush()
        self._last_patch = time.monotonic()

    def close(self) -> None:
        if self._f.closed:
            return
        try:
            self.patch_header()
            os.fsync(self._f.fileno())
        finally:
            self._f.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
