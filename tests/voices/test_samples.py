"""Local sample checks and conversion (no network): each rule, each family, each container."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from agent.config import ConfigError
from agent.voices import audioformats as af
from agent.voices import samples
from agent.voices.errors import SampleError
from tests.support.samples import m4a_bytes, mp3_bytes, speech, wav_bytes
from tests.support.samples import write_sample as write_wav


def _decode(data: bytes) -> af.WavAudio:
    return af.read_wav(data)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def test_compliant_wav_is_sent_unchanged(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "ok.wav", speech(12.0, 24000), 24000)
    for family in ("qwen", "cosyvoice"):
        p = samples.prepare_sample(path, family)
        assert p.data == path.read_bytes()
        assert (p.mime, p.format, p.converted, p.warnings) == ("audio/wav", "wav", False, [])
        assert p.digest == samples.file_digest(path.read_bytes())
        assert p.data_uri().startswith("data:audio/wav;base64,")
        assert base64.b64decode(p.data_uri().split(",", 1)[1]) == p.data


def test_16khz_is_upsampled_for_qwen_with_a_warning_but_kept_for_cosyvoice(tmp_path: Path) -> None:
    src = speech(12.0, 16000)
    path = write_wav(tmp_path / "s16k.wav", src, 16000)
    q = samples.prepare_sample(path, "qwen")
    assert q.converted and q.sample_rate == 24000
    out = _decode(q.data)
    assert out.info.sample_rate == 24000 and out.info.channels == 1 and out.info.encoding == "pcm16"
    assert abs(out.info.duration_s - 12.0) < 0.01
    assert any("upsampled to 24 kHz" in w and "adds no detail" in w for w in q.warnings)
    c = samples.prepare_sample(path, "cosyvoice")
    assert not c.converted and c.sample_rate == 16000 and c.warnings == []


def test_high_rate_is_brought_down_to_48k_for_qwen(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "s96k.wav", speech(12.0, 96000), 96000)
    q = samples.prepare_sample(path, "qwen")
    assert q.sample_rate == 48000 and _decode(q.data).info.sample_rate == 48000


@pytest.mark.parametrize("rate", [8000, 11025])
def test_low_rate_is_rejected_for_both_families(tmp_path: Path, rate: int) -> None:
    path = write_wav(tmp_path / "low.wav", speech(12.0, rate), rate)
    for family in ("qwen", "cosyvoice"):
        with pytest.raises(SampleError) as e:
            samples.prepare_sample(path, family)
        msg = str(e.value)
        assert msg.startswith("voice.sample: ") and f"{rate} Hz" in msg and "record it again" in msg
        assert isinstance(e.value, ConfigError)


def test_too_long(tmp_path: Path) -> None:
    x = np.tile(speech(13.0, 16000), 5)  # 65 s
    path = write_wav(tmp_path / "long.wav", x, 16000)
    with pytest.raises(SampleError, match=r"65\.0 s long; the limit is 60 s.*trim it"):
        samples.prepare_sample(path, "cosyvoice")


def test_too_short(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "short.wav", speech(2.0, 24000), 24000)
    with pytest.raises(SampleError, match=r"only 2\.0 s long.*at least 3 s"):
        samples.prepare_sample(path, "qwen")


def test_duration_outside_10_to_20_s_warns(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "six.wav", speech(6.0, 24000), 24000)
    p = samples.prepare_sample(path, "qwen")
    assert any("6.0 s long; 10–20 s" in w for w in p.warnings)


def test_too_large(tmp_path: Path) -> None:
    # 30 s of 48 kHz stereo float32: 11.5 MB, over the 10 MB limit although short enough.
    x = np.stack([speech(30.0, 48000)] * 2, axis=1)
    path = write_wav(tmp_path / "big.wav", x, 48000, fmt="float")
    assert path.stat().st_size > 10 * 2**20
    with pytest.raises(SampleError, match=r"MB; the limit is 10 MB"):
        samples.prepare_sample(path, "qwen")


@pytest.mark.unit
def test_the_size_limit_is_ten_million_bytes_not_ten_mebibytes(tmp_path: Path) -> None:
    # S000 "≤ 10 MB", S004 "< 10 MB" (audit R8): 10.2 MB is under 10 MiB yet over the limit.
    path = tmp_path / "between.wav"
    path.write_bytes(b"\0" * 10_200_000)
    with pytest.raises(SampleError, match=r"10.2 MB; the limit is 10 MB"):
        samples.prepare_sample(path, "cosyvoice")


@pytest.mark.unit
def test_the_data_uri_limit_counts_the_prefix() -> None:
    n = 7_499_997  # base64 alone: 9 999 996 characters, just under 10 MB
    assert (n + 2) // 3 * 4 < samples.MAX_BYTES
    assert samples.data_uri_size("audio/wav", n) == len("data:audio/wav;base64,") + 9_999_996
    assert samples.data_uri_size("audio/wav", n) > samples.MAX_BYTES


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"hello, this is not audio\n" * 10, "a text file"),
        (b'{"voice": "kiosk"}', "JSON"),
        (b"fLaC\x00\x00\x00\x22" + b"\x00" * 64, "FLAC"),
        (b"OggS" + b"\x00" * 64, "Ogg"),
        (bytes(range(256)) * 4, "unrecognised binary"),
    ],
)
def test_not_audio_is_rejected_by_content(tmp_path: Path, content: bytes, looks_like: str) -> None:
    path = tmp_path / "sample.wav"  # the name lies; the content decides
    path.write_bytes(content)
    with pytest.raises(SampleError) as e:
        samples.prepare_sample(path, "qwen")
    assert "not a WAV, MP3 or M4A" in str(e.value) and looks_like in str(e.value)
    assert "sox" in str(e.value)  # says how to convert


@pytest.mark.unit
def test_empty_and_missing(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(SampleError, match="the file is empty"):
        samples.prepare_sample(tmp_path / "empty.wav", "qwen")
    with pytest.raises(SampleError, match="file not found"):
        samples.prepare_sample(tmp_path / "nope.wav", "qwen")
    with pytest.raises(SampleError, match="is a directory"):
        samples.prepare_sample(tmp_path, "qwen")


def test_broken_wav_header(tmp_path: Path) -> None:
    data = wav_bytes(speech(12.0, 24000), 24000)
    path = tmp_path / "cut.wav"
    path.write_bytes(data[:30])  # inside the fmt chunk
    with pytest.raises(SampleError, match="unreadable WAV file.*re-export"):
        samples.prepare_sample(path, "qwen")


def test_stereo_uses_first_channel_with_a_warning(tmp_path: Path) -> None:
    left = speech(12.0, 24000, variant=0)
    right = speech(12.0, 24000, variant=1) * 0.5
    path = write_wav(tmp_path / "st.wav", np.stack([left, right], axis=1), 24000)
    p = samples.prepare_sample(path, "cosyvoice")
    assert p.converted
    out = _decode(p.data).samples[:, 0]
    assert _corr(out, left) > 0.99
    assert any("2 channels; using the first" in w for w in p.warnings)


def test_stereo_with_a_silent_first_channel_uses_the_other(tmp_path: Path) -> None:
    voice = speech(12.0, 24000)
    path = write_wav(tmp_path / "st.wav", np.stack([np.zeros_like(voice), voice], axis=1), 24000)
    p = samples.prepare_sample(path, "qwen")
    assert _corr(_decode(p.data).samples[:, 0], voice) > 0.99
    assert any("channel 2 (the first is nearly silent)" in w for w in p.warnings)


@pytest.mark.parametrize(
    "kw", [{"bits": 24}, {"fmt": "float"}, {"bits": 24, "extensible": True}, {"fmt": "float", "extensible": True}]
)
def test_other_wav_encodings_are_converted_to_pcm16(tmp_path: Path, kw: dict) -> None:
    voice = speech(12.0, 24000)
    path = write_wav(tmp_path / "enc.wav", voice, 24000, **kw)
    p = samples.prepare_sample(path, "cosyvoice")
    out = _decode(p.data)
    assert p.converted and out.info.encoding == "pcm16" and out.info.sample_rate == 24000
    assert np.max(np.abs(out.samples[:, 0] - voice)) < 2e-4


def test_streamed_wav_with_unknown_data_size(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "rec.wav", speech(12.0, 24000), 24000, data_size=0xFFFFFFFF)
    p = samples.prepare_sample(path, "qwen")
    assert abs(p.original.duration_s - 12.0) < 0.01


@pytest.mark.unit
def test_silence_is_rejected(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "silence.wav", np.zeros(24000 * 12), 24000)
    with pytest.raises(SampleError, match="nearly silent.*muted or wrong microphone"):
        samples.prepare_sample(path, "qwen")


def test_mostly_silence_is_rejected(tmp_path: Path) -> None:
    x = np.zeros(24000 * 12, dtype=np.float32)
    x[24000:24000 + 36000] = speech(1.5, 24000)
    path = write_wav(tmp_path / "mostly.wav", x, 24000)
    with pytest.raises(SampleError, match=r"s of audible speech in 12\.0 s.*at least 3 s"):
        samples.prepare_sample(path, "cosyvoice")


def test_clipping_is_rejected(tmp_path: Path) -> None:
    x = np.clip(speech(12.0, 24000) * 8.0, -1.0, 1.0)
    path = write_wav(tmp_path / "hot.wav", x, 24000)
    with pytest.raises(SampleError, match=r"clipped: .*% of the samples.*lower input gain"):
        samples.prepare_sample(path, "qwen")


def test_mp3_is_detected_by_content_and_measured(tmp_path: Path) -> None:
    path = tmp_path / "voice.wav"  # an MP3 with the wrong extension
    path.write_bytes(mp3_bytes(12.0, 44100, 1))
    info = af.scan_mp3(path.read_bytes())
    assert (info.sample_rate, info.channels) == (44100, 1) and abs(info.duration_s - 12.0) < 0.05
    p = samples.prepare_sample(path, "qwen")
    assert (p.format, p.mime, p.converted, p.data) == ("mp3", "audio/mpeg", False, path.read_bytes())
    assert p.filename == "voice.mp3"
    assert af.detect_format(mp3_bytes(12.0, id3=False)) == "mp3"


@pytest.mark.unit
def test_mp3_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samples, "decode_external", lambda path, rate: None)
    path = tmp_path / "a.mp3"
    path.write_bytes(mp3_bytes(70.0, 44100))
    with pytest.raises(SampleError, match=r"70\.\d s long; the limit is 60 s"):
        samples.prepare_sample(path, "cosyvoice")
    path.write_bytes(mp3_bytes(12.0, 8000, bitrate_kbps=16))
    with pytest.raises(SampleError, match="8000 Hz"):
        samples.prepare_sample(path, "cosyvoice")
    # stereo MP3: fine for cosyvoice (first channel), but qwen needs mono and we cannot decode
    path.write_bytes(mp3_bytes(12.0, 44100, 2))
    c = samples.prepare_sample(path, "cosyvoice")
    assert c.format == "mp3" and any("2 channels" in w for w in c.warnings)
    with pytest.raises(SampleError, match=r"mono \(it has 2 channels\).*ffmpeg.*16-bit mono WAV"):
        samples.prepare_sample(path, "qwen")


def test_mp3_is_converted_when_a_decoder_is_available(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    voice = speech(12.0, 22050)
    monkeypatch.setattr(samples, "decode_external", lambda path, rate: voice if rate == 22050 else None)
    path = tmp_path / "a.mp3"
    path.write_bytes(mp3_bytes(12.0, 22050, 2))
    p = samples.prepare_sample(path, "qwen")
    assert p.format == "wav" and p.converted and p.sample_rate == 24000
    assert _decode(p.data).info.channels == 1


@pytest.mark.unit
def test_decoded_mp3_content_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samples, "decode_external", lambda path, rate: np.zeros(rate * 12, np.float32))
    path = tmp_path / "a.mp3"
    path.write_bytes(mp3_bytes(12.0))
    with pytest.raises(SampleError, match="nearly silent"):
        samples.prepare_sample(path, "qwen")


@pytest.mark.unit
def test_m4a(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samples, "decode_external", lambda path, rate: None)
    path = tmp_path / "memo.m4a"
    path.write_bytes(m4a_bytes(15.0, 48000, 1))
    info = af.scan_m4a(path.read_bytes())
    assert (info.format, info.sample_rate, info.channels, info.duration_s) == ("m4a", 48000, 1, 15.0)
    p = samples.prepare_sample(path, "qwen")
    assert (p.mime, p.converted) == ("audio/mp4", False)
    path.write_bytes(m4a_bytes(75.0, 44100, 1))
    with pytest.raises(SampleError, match="limit is 60 s"):
        samples.prepare_sample(path, "cosyvoice")
    path.write_bytes(m4a_bytes(15.0, 44100, 1, codec=b"alac"))
    with pytest.raises(SampleError, match="'alac' is not supported"):
        samples.prepare_sample(path, "cosyvoice")


def test_sox_converts_what_it_can(tmp_path: Path) -> None:
    """The external decoder path for real: sox decodes a WAV here (MP3 support varies)."""
    if samples.shutil.which("sox") is None and samples.shutil.which("ffmpeg") is None:
        pytest.skip("neither sox nor ffmpeg installed")
    voice = speech(12.0, 24000)
    path = write_wav(tmp_path / "v.wav", voice, 24000)
    out = samples.decode_external(path, 24000)
    assert out is not None and _corr(out, voice) > 0.99


def test_an_rf64_sample_is_accepted_and_sent_as_a_plain_riff_wav(tmp_path: Path) -> None:
    """One RIFF/RF64 policy (agent.audio.wav): enrollment reads what the daemon reads; the
    services are sent the same audio re-encoded as a plain RIFF WAV."""
    path = write_wav(tmp_path / "ok.wav", speech(12.0, 24000), 24000)
    raw = path.read_bytes()
    fmt_at, data_at = raw.index(b"fmt "), raw.index(b"data")
    payload = raw[data_at + 8 :]
    ds64 = b"ds64" + (28).to_bytes(4, "little") + (0).to_bytes(8, "little") + len(payload).to_bytes(8, "little") + bytes(12)
    rf64 = b"RF64" + b"\xff\xff\xff\xff" + b"WAVE" + ds64 + raw[fmt_at:data_at] + b"data\xff\xff\xff\xff" + payload
    (tmp_path / "long.wav").write_bytes(rf64)
    for family in ("qwen", "cosyvoice"):
        p = samples.prepare_sample(tmp_path / "long.wav", family)
        assert p.converted and p.data[:4] == b"RIFF" and p.sample_rate == 24000
        assert _corr(_decode(p.data).samples[:, 0], _decode(raw).samples[:, 0]) > 0.9999
