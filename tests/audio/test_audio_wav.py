"""WAV reading (any layout → 16 kHz mono) and the crash-tolerant writer."""

from __future__ import annotations

import struct
import tracemalloc
import wave

import numpy as np
import pytest

from agent.audio.resample import resample_once
from agent.audio.wav import (
    WavError,
    WavWriter,
    encode_wav,
    parse_wav,
    read_wav,
    read_wav_mono,
    wav_info,
)

pytestmark = pytest.mark.unit


def riff(path, tag, channels, rate, bits, payload: bytes, extensible=False):
    block = channels * bits // 8
    if extensible:
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 4) + b"INFO"  # a chunk to skip
    body += b"data" + struct.pack("<I", len(payload)) + payload
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def tone(rate, secs=0.5, freq=440.0, amp=0.5):
    t = np.arange(int(rate * secs)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def check_tone(pcm: np.ndarray, secs=0.5):
    assert abs(pcm.shape[0] - int(16000 * secs)) <= 2
    ref = 0.5 * 32767 * np.sin(2 * np.pi * 440 * np.arange(pcm.shape[0]) / 16000)
    core = slice(200, pcm.shape[0] - 200)
    assert np.corrcoef(pcm[core].astype(float), ref[core])[0, 1] > 0.999
    assert np.max(np.abs(pcm)) == pytest.approx(16384, rel=0.03)


def test_reads_16bit_stereo_44k(tmp_path):
    x = tone(44100)
    st = np.stack([x, x], axis=1)
    riff(tmp_path / "a.wav", 1, 2, 44100, 16, (st * 32767).astype("<i2").tobytes())
    check_tone(read_wav_mono(tmp_path / "a.wav", 16000))


def test_reads_float32_extensible_48k(tmp_path):
    riff(tmp_path / "f.wav", 3, 1, 48000, 32, tone(48000).astype("<f4").tobytes(), extensible=True)
    check_tone(read_wav_mono(tmp_path / "f.wav", 16000))


def test_reads_24bit_and_8bit(tmp_path):
    v = (tone(22050) * (1 << 23)).astype(np.int32)
    b24 = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    riff(tmp_path / "b.wav", 1, 1, 22050, 24, b24)
    check_tone(read_wav_mono(tmp_path / "b.wav", 16000))
    u8 = (tone(16000) * 127 + 128).astype(np.uint8).tobytes()
    riff(tmp_path / "c.wav", 1, 1, 16000, 8, u8)
    pcm = read_wav_mono(tmp_path / "c.wav", 16000)
    assert pcm.shape[0] == 8000 and np.max(np.abs(pcm)) > 15000


def test_rejects_non_wav_with_a_reason(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"ID3\x04not a wav at all")
    with pytest.raises(WavError, match="not a WAV"):
        read_wav_mono(tmp_path / "x.wav", 16000)
    riff(tmp_path / "y.wav", 2, 1, 8000, 16, b"\x00" * 100)  # format tag 2 = MS ADPCM
    with pytest.raises(WavError, match="unsupported"):
        read_wav_mono(tmp_path / "y.wav", 16000)
    with pytest.raises(WavError, match="cannot read"):
        read_wav_mono(tmp_path / "missing.wav", 16000)


def test_writer_header_valid_while_open_and_after_close(tmp_path):
    p = tmp_path / "out.wav"
    w = WavWriter(p, 24000, header_every_s=0.0)  # patch on every write
    w.write(np.arange(1000, dtype=np.int16))
    with wave.open(str(p)) as r:  # readable while still being written
        assert (r.getframerate(), r.getnchannels(), r.getsampwidth(), r.getnframes()) == (24000, 1, 2, 1000)
    w.write(np.arange(500, dtype=np.int16))
    w.close()
    with wave.open(str(p)) as r:
        assert r.getnframes() == 1500
        data = np.frombuffer(r.readframes(1500), "<i2")
    assert np.array_equal(data[1000:], np.arange(500))


# --- one RIFF/RF64 policy: the daemon, `voice-agent check` and enrollment agree -------------------


def rf64(path, pcm: np.ndarray, rate: int, unknown_size: bool = True) -> None:
    """An RF64 WAV: sizes 0xFFFFFFFF in the RIFF fields, the real ones in a `ds64` chunk."""
    payload = pcm.astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    ds64 = struct.pack("<QQQI", 4 + 36 + 8 + len(fmt) + 8 + len(payload), len(payload), len(pcm), 0)
    size = 0xFFFFFFFF if unknown_size else len(payload)
    body = b"WAVE" + b"ds64" + struct.pack("<I", len(ds64)) + ds64
    body += b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + payload
    path.write_bytes(b"RF64" + struct.pack("<I", 0xFFFFFFFF) + body)


def verdicts(path) -> tuple[bool, bool, bool]:
    """(daemon file backend, `check`, enrollment): does each accept the file?"""
    from agent.check.local import _check_file_input
    from agent.config import StreamSettings
    from agent.voices import audioformats

    try:
        read_wav_mono(path, 16000)
        daemon = True
    except WavError:
        daemon = False
    check = _check_file_input(StreamSettings(backend="file", path=str(path))).ok
    try:
        audioformats.read_wav(path.read_bytes())
        enrollment = True
    except audioformats.AudioFormatError:
        enrollment = False
    return daemon, check, enrollment


@pytest.mark.unit
def test_an_rf64_file_is_read_by_the_daemon_check_and_enrollment_alike(tmp_path):
    pcm = (tone(16000) * 32767).astype(np.int16)
    rf64(tmp_path / "long.wav", pcm, 16000)
    assert verdicts(tmp_path / "long.wav") == (True, True, True)
    check_tone(read_wav_mono(tmp_path / "long.wav", 16000))
    info = wav_info(tmp_path / "long.wav")
    assert (info.container, info.rate, info.channels, info.frames) == ("RF64", 16000, 1, len(pcm))
    from agent.check.local import _check_file_input
    from agent.config import StreamSettings

    result = _check_file_input(StreamSettings(backend="file", path=str(tmp_path / "long.wav")))
    assert "WAV 16000 Hz, 1 ch, 0.5 s" in result.detail


@pytest.mark.unit
def test_the_data_size_in_ds64_bounds_the_samples(tmp_path):
    pcm = (tone(16000) * 32767).astype(np.int16)
    rf64(tmp_path / "a.wav", pcm, 16000)
    raw = (tmp_path / "a.wav").read_bytes() + b"\x01\x02" * 100  # trailing junk after the data
    (tmp_path / "a.wav").write_bytes(raw)
    # 0xFFFFFFFF in the data chunk, the real size in ds64: the junk is not audio
    assert wav_info(tmp_path / "a.wav").frames == len(pcm)


@pytest.mark.unit
def test_every_reader_gives_the_same_verdict_on_odd_files(tmp_path):
    good = (tone(24000) * 32767).astype("<i2").tobytes()
    files = {
        "riff": (lambda p: riff(p, 1, 1, 24000, 16, good), True),
        "extensible float": (lambda p: riff(p, 3, 1, 24000, 32, tone(24000).astype("<f4").tobytes(), True), True),
        "rf64": (lambda p: rf64(p, np.frombuffer(good, "<i2"), 24000), True),
        "ms adpcm": (lambda p: riff(p, 2, 1, 8000, 16, b"\x00" * 100), False),
        "rifx": (lambda p: p.write_bytes(b"RIFX" + (tmp_path / "riff.wav").read_bytes()[4:]), False),
        "text": (lambda p: p.write_bytes(b"hello, this is not audio at all"), False),
        "no data": (lambda p: p.write_bytes((tmp_path / "riff.wav").read_bytes()[:36]), False),
    }
    for name, (write, accepted) in files.items():
        path = tmp_path / f"{name.replace(' ', '_')}.wav"
        write(path)
        assert verdicts(path) == (accepted,) * 3, name


@pytest.mark.unit
def test_a_recorder_killed_mid_write_leaves_a_readable_file(tmp_path):
    """Data size 0 (never patched): every reader takes the samples that are there."""
    payload = (tone(16000) * 32767).astype("<i2").tobytes()
    riff(tmp_path / "k.wav", 1, 1, 16000, 16, payload)
    raw = bytearray((tmp_path / "k.wav").read_bytes())
    at = raw.index(b"data") + 4
    raw[at : at + 4] = b"\x00\x00\x00\x00"
    (tmp_path / "k.wav").write_bytes(bytes(raw))
    assert verdicts(tmp_path / "k.wav") == (True, True, True)
    check_tone(read_wav_mono(tmp_path / "k.wav", 16000))


@pytest.mark.unit
def test_encode_wav_round_trips_through_the_reader() -> None:
    x = tone(24000)
    layout, samples = parse_wav(encode_wav(x, 24000))
    assert (layout.container, layout.encoding, layout.rate, layout.channels) == ("RIFF", "pcm16", 24000, 1)
    assert np.max(np.abs(samples[:, 0] - x)) < 1e-4


def whole_file_mono(path, rate: int) -> np.ndarray:
    """The conversion as it was done before: the whole file decoded, mixed, then resampled."""
    x, src = read_wav(path)
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    return resample_once(np.clip(np.round(mono * 32767.0), -32768, 32767).astype(np.int16), src, rate)


@pytest.mark.parametrize("src_rate", [44100, 48000, 16000])
def test_block_by_block_reading_matches_the_whole_file_across_block_edges(tmp_path, src_rate):
    rng = np.random.default_rng(7)
    x = np.stack([tone(src_rate, 1.3, 440.0, 0.4), tone(src_rate, 1.3, 1234.0, 0.3)], axis=1)
    x += rng.normal(0.0, 0.05, x.shape)  # broadband: every filter tap matters at the block edges
    riff(tmp_path / "s.wav", 1, 2, src_rate, 16, (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    whole = whole_file_mono(tmp_path / "s.wav", 16000)
    for block in (997, 4096, 1 << 16):  # odd, small, and larger than the file
        got = read_wav_mono(tmp_path / "s.wav", 16000, block_frames=block)
        assert got.shape == whole.shape
        assert np.max(np.abs(got.astype(np.int32) - whole)) <= 1, f"block {block}"
        if src_rate == 16000:
            assert np.array_equal(got, whole)


def test_a_long_input_costs_its_result_not_float32_copies_of_the_file(tmp_path):
    path, secs, rate = tmp_path / "long48k.wav", 60, 48000
    frames = secs * rate
    payload = frames * 2 * 2  # stereo 16-bit: 11.5 MB
    with path.open("wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + payload) + b"WAVE")
        f.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, 2, rate, rate * 4, 4, 16))
        f.write(b"data" + struct.pack("<I", payload))
        second = (np.stack([tone(rate, 1.0)] * 2, axis=1) * 32767).astype("<i2").tobytes()
        for _ in range(secs):
            f.write(second)
    tracemalloc.start()
    try:
        pcm = read_wav_mono(path, 16000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pcm.shape[0] == pytest.approx(secs * 16000, abs=2)
    # Loading it whole peaked at the file plus float32 copies (> 5x the file); block by block it
    # is the 1.9 MB result (held twice while joined) plus one block of temporaries.
    assert peak < 2 * pcm.nbytes + 4 * 2**20, f"peak {peak / 2**20:.1f} MB"
    assert peak < payload / 2
