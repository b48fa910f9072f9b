"""Reading the three sample containers the enrollment services accept: WAV, MP3 and M4A.

Format is decided by content (magic bytes), never by file name: a `.wav` that is really an MP3, or a
renamed text file, must be handled for what it is before anything is uploaded.

WAV is parsed by `agent.audio.wav` (one RIFF/RF64 policy for the daemon, `check` and enrollment)
rather than with the stdlib `wave` module, which rejects WAVE_FORMAT_EXTENSIBLE and IEEE-float
files that ordinary recorders (sox for 24-bit, Audacity, many phones) write; we want to *convert*
those, not reject them. MP3 and M4A are only scanned (frame
headers / MP4 boxes) for duration, sample rate and channels, which is all the local checks need;
decoding them needs an external tool (see `samples.decode_external`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from agent.audio.wav import WavError, parse_wav

WAV, MP3, M4A = "wav", "mp3", "m4a"
MIME = {WAV: "audio/wav", MP3: "audio/mpeg", M4A: "audio/mp4"}
EXTENSION = {WAV: ".wav", MP3: ".mp3", M4A: ".m4a"}


class AudioFormatError(ValueError):
    """The bytes are (or claim to be) one of our formats but cannot be read; says why."""


@dataclass
class AudioInfo:
    """What the local checks need to know about a sample, whatever its container."""

    format: str  # wav | mp3 | m4a
    encoding: str  # pcm16, pcm24, pcm32, pcm8, float32, float64, mp3, aac
    sample_rate: int
    channels: int
    duration_s: float


@dataclass
class WavAudio:
    info: AudioInfo
    samples: np.ndarray  # float32, shape (frames, channels), in [-1, 1]


# --- detection ----------------------------------------------------------------------------------


def detect_format(data: bytes) -> str | None:
    """wav / mp3 / m4a by magic bytes, or None."""
    if len(data) >= 12 and data[:4] in (b"RIFF", b"RIFX", b"RF64") and data[8:12] == b"WAVE":
        return WAV
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return M4A
    if data[:3] == b"ID3":
        return MP3
    if _mp3_frame_at(data, 0) is not None:
        # A bare frame sync is only two bytes; demand a second frame right behind it.
        first = _mp3_frame_at(data, 0)
        assert first is not None
        if _mp3_frame_at(data, first.length) is not None or first.length == len(data):
            return MP3
    return None


def describe_unknown(data: bytes) -> str:
    """A short guess at what a non-audio file is, for the error message."""
    head = data[:16]
    known = {
        b"fLaC": "a FLAC file",
        b"OggS": "an Ogg (Vorbis/Opus) file",
        b"%PDF": "a PDF document",
        b"\x89PNG": "a PNG image",
        b"\xff\xd8\xff": "a JPEG image",
        b"PK\x03\x04": "a ZIP archive",
        b"\x1aE\xdf\xa3": "a WebM/Matroska file",
        b"#!AMR": "an AMR file",
        b"FORM": "an AIFF file",
    }
    for magic, what in known.items():
        if head.startswith(magic):
            return what
    if data[:4] in (b"RIFF", b"RIFX") and data[8:12] != b"WAVE":
        return f"a RIFF file of type {data[8:12]!r} (not WAVE)"
    try:
        text = data[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return "a JSON/text file"
    if stripped.startswith("<"):
        return "an HTML/XML file"
    return "a text file"


# --- WAV ----------------------------------------------------------------------------------------
# One RIFF/RF64 policy for the whole program: `agent.audio.wav` (see its docstring).


def read_wav(data: bytes) -> WavAudio:
    """Decode a WAV held in memory (the policy of `agent.audio.wav`); AudioFormatError if not."""
    try:
        layout, samples = parse_wav(data)
    except WavError as e:
        raise AudioFormatError(str(e)) from None
    info = AudioInfo(WAV, layout.encoding, layout.rate, layout.channels, layout.seconds)
    return WavAudio(info, samples)


# --- MP3 ----------------------------------------------------------------------------------------

_MP3_BITRATES = {  # kbit/s by (MPEG-1?, index) for Layer III
    True: [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0],
    False: [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0],
}
_MP3_RATES = {3: [44100, 48000, 32000], 2: [22050, 24000, 16000], 0: [11025, 12000, 8000]}


@dataclass
class _Mp3Frame:
    length: int
    sample_rate: int
    channels: int
    samples: int


def _mp3_frame_at(data: bytes, pos: int) -> _Mp3Frame | None:
    """Parse an MPEG audio Layer III frame header at `pos`; None if there is none."""
    if pos + 4 > len(data):
        return None
    h = int.from_bytes(data[pos : pos + 4], "big")
    if (h >> 21) & 0x7FF != 0x7FF:
        return None
    version = (h >> 19) & 3  # 3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5, 1 reserved
    layer = (h >> 17) & 3  # 1 = Layer III
    bitrate_i, rate_i = (h >> 12) & 0xF, (h >> 10) & 3
    if version == 1 or layer != 1 or bitrate_i in (0, 15) or rate_i == 3:
        return None
    mpeg1 = version == 3
    bitrate = _MP3_BITRATES[mpeg1][bitrate_i] * 1000
    rate = _MP3_RATES[version][rate_i]
    padding = (h >> 9) & 1
    channels = 1 if (h >> 6) & 3 == 3 else 2
    samples = 1152 if mpeg1 else 576
    length = (144 if mpeg1 else 72) * bitrate // rate + padding
    return _Mp3Frame(length, rate, channels, samples)


def scan_mp3(data: bytes) -> AudioInfo:
    """Walk the frame headers: exact duration without decoding (works for CBR and VBR)."""
    pos = 0
    if data[:3] == b"ID3" and len(data) >= 10:
        size = 0
        for b in data[6:10]:
            size = (size << 7) | (b & 0x7F)
        pos = 10 + size + (10 if data[5] & 0x10 else 0)
    end = len(data)
    if end >= 128 and data[end - 128 : end - 125] == b"TAG":
        end -= 128
    total, frames, first = 0, 0, None
    while pos < end:
        f = _mp3_frame_at(data, pos)
        if f is None:
            # Lost sync (junk, an embedded tag): jump to the next candidate sync byte.
            nxt = data.find(b"\xff", pos + 1, end)
            if nxt < 0:
                break
            pos = nxt
            continue
        if first is None:
            first = f
        if f.sample_rate == first.sample_rate:
            total += f.samples
            frames += 1
        pos += f.length
    if first is None or frames < 1:
        raise AudioFormatError("no MPEG Layer III audio frames found")
    return AudioInfo(MP3, "mp3", first.sample_rate, first.channels, total / first.sample_rate)


# --- M4A (MP4 audio) ----------------------------------------------------------------------------

_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl"}


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in [start, end)."""
    out = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                break
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            # A truncated last box (e.g. mdat cut short) still lets us read what came before.
            out.append((kind, pos + header, end))
            break
        out.append((kind, pos + header, pos + size))
        pos += size
    return out


@dataclass
class _Track:
    handler: bytes = b""
    codec: bytes = b""
    channels: int = 0
    rate: int = 0
    timescale: int = 0
    duration: int = 0


def scan_m4a(data: bytes) -> AudioInfo:
    """Find the first sound track: codec, channels and rate from `stsd`, duration from `mdhd`."""
    found: list[AudioInfo] = []
    saw_moov = False

    def walk(start: int, end: int, track: _Track) -> None:
        nonlocal saw_moov
        for kind, s, e in _boxes(data, start, end):
            if kind == b"moov":
                saw_moov = True
            if kind == b"trak":
                t = _Track()
                walk(s, e, t)
                if t.handler == b"soun" and t.codec:
                    found.append(_track_info(t))
            elif kind in _CONTAINERS:
                walk(s, e, track)
            elif kind == b"mdhd" and e - s >= 24:
                if data[s] == 1 and e - s >= 36:
                    track.timescale, track.duration = struct.unpack_from(">IQ", data, s + 20)
                else:
                    track.timescale, track.duration = struct.unpack_from(">II", data, s + 12)
            elif kind == b"hdlr" and e - s >= 12:
                track.handler = data[s + 8 : s + 12]
            elif kind == b"stsd" and e - s >= 8 + 36:
                entry = s + 8  # version/flags + entry_count, then the first sample entry
                track.codec = data[entry + 4 : entry + 8]
                # SampleEntry: 6 reserved + 2 data_ref_index; AudioSampleEntry: 8 reserved,
                # channelcount(2), samplesize(2), 4 reserved, samplerate (16.16 fixed point).
                track.channels = struct.unpack_from(">H", data, entry + 8 + 16)[0]
                track.rate = struct.unpack_from(">I", data, entry + 8 + 24)[0] >> 16

    walk(0, len(data), _Track())
    if not saw_moov:
        raise AudioFormatError("MP4 file without a 'moov' box (incomplete or streaming-only file)")
    if not found:
        raise AudioFormatError("MP4 file without an audio track")
    return found[0]


def _track_info(t: _Track) -> AudioInfo:
    if t.codec != b"mp4a":
        codec = t.codec.decode("latin-1")
        raise AudioFormatError(f"M4A audio codec {codec!r} is not supported (use AAC)")
    rate = t.rate or t.timescale
    if not t.timescale or not rate:
        raise AudioFormatError("M4A audio track without a time scale / sample rate")
    return AudioInfo(M4A, "aac", rate, t.channels or 1, t.duration / t.timescale)
