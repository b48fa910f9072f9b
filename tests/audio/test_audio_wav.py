"""WAV reading (any layout → 16 kHz mono) and the crash-tolerant writer."""

from __future__ import annotations

import struct
import wave

import numpy as np
import pytest

from agent.audio.wav import WavError, WavWriter, read_wav_mono

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
