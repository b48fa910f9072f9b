"""File and null backends through the AudioEngine: real-time pacing, shared timeline, WAV safety."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.audio import AudioConfigError, AudioEngine
from agent.audio.wav import write_wav
from agent.config import AudioSettings, StreamSettings

REPO = Path(__file__).resolve().parents[2]


def settings(inp: StreamSettings, out: StreamSettings, chunk_ms: int = 40) -> AudioSettings:
    return AudioSettings(input=inp, output=out, chunk_ms=chunk_ms)


def read_out(path: Path) -> np.ndarray:
    with wave.open(str(path)) as r:
        assert (r.getframerate(), r.getnchannels(), r.getsampwidth()) == (24000, 1, 2)
        return np.frombuffer(r.readframes(r.getnframes()), "<i2")


async def test_output_file_runs_in_real_time_and_writes_silence(tmp_path):
    out = tmp_path / "out.wav"
    eng = AudioEngine(settings(StreamSettings(backend="null"), StreamSettings(backend="file", path=str(out))))
    await eng.start()
    t0 = time.monotonic()
    await asyncio.sleep(1.0)
    await eng.stop()
    elapsed = time.monotonic() - t0
    pcm = read_out(out)
    assert pcm.shape[0] == pytest.approx(24000 * elapsed, rel=0.15)
    assert not pcm.any()  # idle: every sample is written, silence included


async def test_input_and_output_files_share_one_timeline(tmp_path):
    """The 'user' speaks at 0.50 s in the input file; the daemon answers as soon as it hears it.
    The answer must appear in the output file right after 0.50 s of *its* timeline."""
    mic_wav = tmp_path / "in.wav"
    sig = np.zeros(int(44100 * 1.5), np.int16)
    sig[int(0.5 * 44100) : int(0.7 * 44100)] = 12000  # a 200 ms burst at 0.5 s
    write_wav(mic_wav, sig, 44100)  # any rate is accepted; converted to 16 kHz
    out = tmp_path / "out.wav"
    eng = AudioEngine(
        settings(StreamSettings(backend="file", path=str(mic_wav)), StreamSettings(backend="file", path=str(out)))
    )
    await eng.start()
    t0 = eng.timeline_start
    assert t0 is not None
    heard_at = None
    async for chunk, t_end in eng.mic.frames():
        x = np.frombuffer(chunk, "<i2")
        if np.abs(x).max() > 5000:
            heard_at = t_end
            eng.player.begin("answer")
            eng.player.feed("answer", np.full(2400, 8000, np.int16))
            eng.player.end("answer")
            break
    await asyncio.sleep(0.4)
    st = eng.player.response_stats("answer")
    await eng.stop()
    pcm = read_out(out)
    first = int(np.flatnonzero(pcm)[0]) / 24000
    # Heard by the end of the chunk containing 0.5 s (≤ one 40 ms chunk + one 10 ms block
    # later); played at the next output block. Scheduling slack on a busy CI box: +30 ms.
    assert 0.5 <= first <= 0.5 + 0.040 + 0.010 + 0.010 + 0.030
    assert np.count_nonzero(pcm) == 2400
    # Both streams use the same origin: the player's timestamp of the answer's first sample
    # minus its file position is the start of the timeline, and the microphone's capture time
    # of the burst, measured from that origin, is where the burst is in the input file.
    origin = st.first_output - first
    assert origin == pytest.approx(t0, abs=1e-6)  # the engine's published timeline origin
    assert heard_at is not None
    assert 0.5 <= heard_at - origin <= 0.5 + 0.040 + 0.010 + 1e-6


async def test_input_file_is_delivered_in_real_time_then_silence(tmp_path):
    mic_wav = tmp_path / "in.wav"
    write_wav(mic_wav, np.full(8000, 3000, np.int16), 16000)  # 0.5 s
    eng = AudioEngine(settings(StreamSettings(backend="file", path=str(mic_wav)), StreamSettings(backend="null")))
    await eng.start()
    t0 = time.monotonic()
    chunks = []
    for _ in range(25):  # 1.0 s of 40 ms chunks
        chunks.append(await eng.mic.read())
    elapsed = time.monotonic() - t0
    await eng.stop()
    assert elapsed == pytest.approx(1.0, rel=0.15)
    x = np.frombuffer(b"".join(chunks), "<i2")
    assert np.count_nonzero(x) == 8000 and not x[8000:].any()


async def test_null_backend_status_fields():
    eng = AudioEngine(settings(StreamSettings(backend="null"), StreamSettings(backend="null")))
    await eng.start()
    eng.player.begin("r")
    eng.player.feed("r", np.full(4800, 100, np.int16))
    eng.player.end("r")
    await asyncio.sleep(0.5)
    eng.check_streams()
    st = eng.status()
    for key, typ in {
        "input_ok": bool,
        "output_ok": bool,
        "underruns": int,
        "underrun_ms": float,
        "host_underflows": int,
        "buffered_ms": float,
    }.items():
        assert isinstance(st[key], typ), key
    assert st["input_ok"] and st["output_ok"]
    assert eng.player.response_stats("r").played_ms == pytest.approx(200)
    await eng.stop()
    assert not eng.status()["output_ok"]


async def test_write_failure_is_reported_in_status(tmp_path):
    out = tmp_path / "out.wav"
    eng = AudioEngine(settings(StreamSettings(backend="null"), StreamSettings(backend="file", path=str(out))))
    await eng.start()
    stream = eng._streams["output"]

    def disk_full(block):
        raise OSError(28, "No space left on device")

    stream._sink = disk_full
    await asyncio.sleep(0.1)
    eng.check_streams()
    st = eng.status()
    assert st["output_ok"] is False and "No space left" in st["last_error"]
    hb = eng.player.heartbeat
    await asyncio.sleep(0.1)
    assert eng.player.heartbeat > hb  # the player keeps being clocked
    await eng.stop()


async def test_missing_input_file_is_a_config_error(tmp_path):
    eng = AudioEngine(
        settings(StreamSettings(backend="file", path=str(tmp_path / "nope.wav")), StreamSettings(backend="null"))
    )
    with pytest.raises(AudioConfigError, match="audio.input.path"):
        await eng.start()


SCRIPT = textwrap.dedent(
    """
    import asyncio, signal, sys
    import numpy as np
    from agent.audio import AudioEngine
    from agent.config import AudioSettings, StreamSettings

    async def main():
        s = AudioSettings(input=StreamSettings(backend="null"),
                          output=StreamSettings(backend="file", path=sys.argv[1]))
        eng = AudioEngine(s)
        await eng.start()
        eng.player.begin("r")
        eng.player.feed("r", np.full(24000, 5000, np.int16))
        eng.player.end("r")
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()
        await eng.stop()

    asyncio.run(main())
    """
)


def spawn(tmp_path: Path, out: Path) -> tuple[subprocess.Popen, float]:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == b"ready"
    return proc, time.monotonic()


def test_wav_valid_after_sigterm(tmp_path):
    out = tmp_path / "out.wav"
    proc, t0 = spawn(tmp_path, out)
    time.sleep(1.5)
    signalled = time.monotonic() - t0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    ended = time.monotonic() - t0
    pcm = read_out(out)
    # The file clock runs from "ready" until the signal is handled: at least the time before the
    # signal, at most the time until the process had exited (a loaded machine stretches the latter).
    assert 24000 * signalled * 0.85 <= pcm.shape[0] <= 24000 * ended * 1.15
    assert np.count_nonzero(pcm == 5000) == 24000  # the whole response, then silence


def test_wav_readable_after_crash(tmp_path):
    out = tmp_path / "out.wav"
    proc, t0 = spawn(tmp_path, out)
    time.sleep(2.3)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait(10)
    elapsed = time.monotonic() - t0
    pcm = read_out(out)  # the periodic header keeps the file readable
    assert 24000 * (elapsed - 1.5) <= pcm.shape[0] <= 24000 * (elapsed + 0.2)
