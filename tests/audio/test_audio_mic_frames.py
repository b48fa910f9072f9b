"""The microphone hands out each chunk together with the capture time of its last sample."""

from __future__ import annotations

import numpy as np
import pytest

from agent.audio.microphone import MicFrame, Microphone

pytestmark = pytest.mark.unit


def test_a_frame_carries_its_chunk_and_the_capture_time_of_its_last_sample() -> None:
    mic = Microphone(chunk_ms=40)  # 640 samples at 16 kHz
    mic.capture(np.arange(1, 1001, dtype=np.int16), 1.0)  # one 1000-frame block ending at 1.0
    frame = mic.read_frame_nowait()
    assert isinstance(frame, MicFrame)
    assert np.frombuffer(frame.pcm, "<i2").tolist() == list(range(1, 641))
    # 360 captured samples follow this chunk's last one: it was captured 360/16000 s earlier.
    assert frame.t_end == pytest.approx(1.0 - 360 / 16000)
    assert mic.read_frame_nowait() is None  # 360 samples are not a chunk


def test_a_muted_frame_is_silence_with_its_real_capture_time() -> None:
    mic = Microphone(chunk_ms=40)
    mic.muted = True
    mic.capture(np.full(640, 1234, np.int16), 2.0)
    assert mic.read_frame_nowait() == MicFrame(bytes(1280), 2.0)


async def test_frames_iterate_until_the_microphone_is_closed() -> None:
    mic = Microphone(chunk_ms=40)
    for k in range(3):
        mic.capture(np.full(640, k + 1, np.int16), 5.0 + 0.04 * k)
    got: list[MicFrame] = []
    async for frame in mic.frames():
        got.append(frame)
        if len(got) == 3:
            mic.close()
    assert [np.frombuffer(f.pcm, "<i2")[0] for f in got] == [1, 2, 3]
    assert [f.t_end for f in got] == pytest.approx([5.0, 5.04, 5.08])


async def test_plain_bytes_iteration_still_works() -> None:
    mic = Microphone(chunk_ms=40)
    mic.capture(np.full(640, 9, np.int16), 1.0)
    got: list[bytes] = []
    async for chunk in mic:
        got.append(chunk)
        mic.close()
    assert got == [np.full(640, 9, np.int16).tobytes()]
