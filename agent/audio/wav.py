"""The one WAV module: one RIFF/RF64 reading policy for the daemon, `check`, enrollment and the
demo, plus a crash-tolerant writer.

Why our own RIFF reader: the stdlib `wave` module (3.10/3.11) rejects WAVE_FORMAT_EXTENSIBLE and
IEEE-float files, which are what many recorders and editors write. The file backend promises to
read "any rate or channel count", so we parse the few chunk types that matter ourselves. Every
reader here shares `_layout`, so `voice-agent check`, the daemon's file backend and enrollment
accept exactly the same files:

* `RIFF` and `RF64` containers (RF64's 64-bit data size comes from its `ds64` chunk); big-endian
  `RIFX` is refused;
* PCM 8/16/24/32/64-bit and IEEE float 32/64, plain or WAVE_FORMAT_EXTENSIBLE; compressed
  encodings are refused by name;
* the `fmt ` chunk may come before or after `data`; unknown chunks are skipped;
* a data size of 0 or 0xFFFFFFFF (a recorder killed mid-write) means "to the end of the file";
  a file shorter than its declared size yields the frames that are there; a wrong block_align
  is ignored (the sample size rules).

Why the writer patches its header periodically: the output file stands in for a speaker, and a
test or demo reads it after the process ends. A clean stop writes the final sizes; a crash
(SIGKILL, power loss) leaves a header at most `header_every_s` stale, so the file still opens
(readers stop at the declared size) instead of claiming zero or garbage length.
"""

from __future__ import annotations

import io
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soxr

_PCM = 1
_FLOAT = 3
_EXTENSIBLE = 0xFFFE
_OTHER_TAGS = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "µ-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}
_UNKNOWN_SIZE = (0, 0xFFFFFFFF)


class WavError(ValueError):
    """The file is not a WAV we can read; the message says why."""


@dataclass(frozen=True)
class WavLayout:
    """Where a WAV's samples are and how they are encoded (what the header says, checked)."""

    container: str  # RIFF | RF64
    float: bool
    channels: int
    rate: int
    bits: int
    data_offset: int
    data_bytes: int  # whole frames only

    @property
    def frames(self) -> int:
        return self.data_bytes // (self.channels * self.bits // 8)

    @property
    def seconds(self) -> float:
        return self.frames / self.rate

    @property
    def encoding(self) -> str:
        return ("float" if self.float else "pcm") + str(self.bits)


def _layout(f: BinaryIO, size: int) -> WavLayout:
    """Walk the chunks of a WAV of `size` bytes (the policy in the module docstring)."""
    head = f.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RF64"):
        if head[:4] == b"RIFX" and head[8:12] == b"WAVE":
            raise WavError("unsupported WAV container: big-endian RIFX; convert it to a RIFF WAV")
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    fmt: tuple[int, int, int, int] | None = None  # tag, channels, rate, bits
    data: tuple[int, int] | None = None  # offset, bytes present
    ds64_data: int | None = None
    pos = 12
    while pos + 8 <= size and not (fmt and data):
        f.seek(pos)
        cid, declared = f.read(4), struct.unpack("<I", f.read(4))[0]
        body = pos + 8
        if cid == b"ds64" and declared >= 16:
            ds64_data = struct.unpack_from("<Q", f.read(16), 8)[0]
        elif cid == b"fmt ":
            raw = f.read(min(declared, 64))
            if declared < 16 or len(raw) < 16:
                raise WavError("truncated 'fmt ' chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", raw)
            if tag == _EXTENSIBLE:
                if len(raw) < 26:
                    raise WavError("truncated WAVE_FORMAT_EXTENSIBLE header")
                tag = struct.unpack_from("<H", raw, 24)[0]  # first two bytes of the SubFormat
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if declared == 0xFFFFFFFF and ds64_data is not None:
                declared = ds64_data
            present = size - body
            n = present if declared in _UNKNOWN_SIZE else min(declared, present)
            data = (body, n)
        pos = body + declared + (declared & 1)
    if fmt is None:
        raise WavError("missing 'fmt ' chunk")
    if data is None:
        raise WavError("missing 'data' chunk")
    tag, channels, rate, bits = fmt
    if tag not in (_PCM, _FLOAT):
        name = _OTHER_TAGS.get(tag, f"format tag 0x{tag:04x}")
        raise WavError(f"unsupported WAV encoding ({name}); convert it to PCM")
    if channels < 1 or rate < 1:
        raise WavError(f"invalid WAV format ({channels} channels, {rate} Hz)")
    width = bits // 8
    if bits % 8 or width not in (1, 2, 3, 4, 8) or (tag == _FLOAT and width not in (4, 8)):
        raise WavError(f"unsupported sample size of {bits} bits")
    align = width * channels
    offset, n = data
    return WavLayout(head[:4].decode("ascii"), tag == _FLOAT, channels, rate, bits, offset, n - n % align)


def _decode(raw: bytes, layout: WavLayout) -> np.ndarray:
    """Samples as float32 in [-1, 1], shape (frames, channels)."""
    width = layout.bits // 8
    if layout.float:
        x = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    elif width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = (np.frombuffer(raw, "<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    else:
        x = (np.frombuffer(raw, "<i8").astype(np.float64) / 2.0**63).astype(np.float32)
    return x.reshape(-1, layout.channels)


def parse_wav(data: bytes) -> tuple[WavLayout, np.ndarray]:
    """A WAV held in memory → its layout and float32 samples (frames, channels)."""
    layout = _layout(io.BytesIO(data), len(data))
    raw = data[layout.data_offset : layout.data_offset + layout.data_bytes]
    return layout, _decode(raw, layout)


def wav_info(path: str | os.PathLike[str]) -> WavLayout:
    """The layout of a WAV file, reading only its headers (OSError if unreadable)."""
    with Path(path).open("rb") as f:
        return _layout(f, os.fstat(f.fileno()).st_size)


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a WAV file as float32 samples in [-1, 1], shape (frames, channels), and its rate."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise WavError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        layout, x = parse_wav(raw)
    except WavError as e:
        raise WavError(f"{p}: {e}") from None
    return x, layout.rate


def encode_wav(mono: np.ndarray, rate: int) -> bytes:
    """Float mono in [-1, 1] → 16-bit PCM mono WAV bytes (the format every service accepts)."""
    pcm = np.clip(np.round(np.asarray(mono, dtype=np.float64) * 32767.0), -32768, 32767)
    body = pcm.astype("<i2").tobytes()
    return (
        b"RIFF" + struct.pack("<I", 36 + len(body)) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, _PCM, 1, rate, rate * 2, 2, 16)
        + b"data" + struct.pack("<I", len(body)) + body
    )


def read_wav_mono(path: str | os.PathLike[str], rate: int, block_frames: int = 1 << 16) -> np.ndarray:
    """Read any WAV as mono int16 at `rate` (channels averaged, soxr resampling).

    Block by block: only `block_frames` of the file are decoded at a time and the resampler keeps
    its filter state across blocks, so a long input costs its int16 result plus one block of
    temporaries (loading it whole cost ~4 bytes of float32 per input sample on top of the file).
    The result equals the whole-file conversion (`agent.audio.resample.resample_once` of the
    whole mono signal) within 1 LSB.
    """
    p = Path(path)
    try:
        f = p.open("rb")
    except OSError as e:
        raise WavError(f"{p}: cannot read: {e.strerror or e}") from None
    with f:
        try:
            layout = _layout(f, os.fstat(f.fileno()).st_size)
        except WavError as e:
            raise WavError(f"{p}: {e}") from None
        stream = None if layout.rate == rate else soxr.ResampleStream(layout.rate, rate, 1, dtype="float32", quality="HQ")
        align = layout.channels * layout.bits // 8
        left = layout.data_bytes
        f.seek(layout.data_offset)
        out: list[np.ndarray] = []
        while True:
            raw = f.read(min(left, block_frames * align)) if left > 0 else b""
            raw = raw[: len(raw) - len(raw) % align]  # a file shorter than its header: whole frames
            left = left - len(raw) if raw else 0
            x = _decode(raw, layout)
            mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
            pcm = np.clip(np.round(mono * 32767.0), -32768, 32767).astype(np.int16)
            if stream is None:
                out.append(pcm)
            else:
                y = stream.resample_chunk(pcm.astype(np.float32), last=left == 0)
                out.append(np.clip(np.round(y), -32768, 32767).astype(np.int16))
            if left == 0:
                break
    return np.concatenate(out) if out else np.zeros(0, np.int16)


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
