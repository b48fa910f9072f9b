"""The end-of-turn VAD (agent/listen/turn_vad.py): lets go of speech promptly, whatever the chunk size.

Skipped only when the `[turn]` extra (webrtcvad-wheels) is not installed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import speechsynth as ss

from agent.listen.turn_vad import SpeechFrames

pytest.importorskip("webrtcvad", reason="the [turn] extra is not installed")

Say = Callable[..., np.ndarray]  # the `say` fixture of conftest.py
RATE = 16000


def verdicts(audio: np.ndarray, chunk: int) -> list[bool]:
    vad = SpeechFrames("webrtc")
    return [vad(audio[i : i + chunk].tobytes()) for i in range(0, audio.size, chunk)]


@pytest.mark.parametrize("engine, voice", [("espeak", "en-us"), ("flite", "slt")])
def test_speech_is_heard_and_let_go_of_within_150_ms_of_its_end(say: Say, engine: str, voice: str) -> None:
    speech = say("Could you turn the kitchen lights off, please", engine, voice)
    idx = np.nonzero(np.abs(speech) > 300)[0]
    speech = speech[idx[0] : idx[-1] + 1]
    audio = np.concatenate([ss.silence(1.0), speech, ss.silence(2.0)])
    flags = verdicts(audio, 320)  # 20 ms chunks
    voiced = [i for i, f in enumerate(flags) if f]
    end_chunk = (RATE + speech.size) / 320
    assert voiced and voiced[0] >= RATE / 320 - 1  # nothing heard in the leading silence
    assert end_chunk - 1 <= voiced[-1] + 1 <= end_chunk + 150 / 20


def test_a_quiet_room_is_almost_never_speech() -> None:
    room = ss.white_noise(10.0, seed=3) // 100  # about -60 dBFS
    assert sum(verdicts(room, 320)) <= 0.03 * 500  # an isolated 20 ms frame at most now and then
    assert not any(verdicts(ss.silence(5.0), 320))


def test_the_verdict_does_not_depend_on_the_chunk_size(say: Say) -> None:
    audio = np.concatenate([ss.silence(0.5), say("Set a timer for ten minutes"), ss.silence(1.0)])
    audio = audio[: audio.size // 1600 * 1600]
    frames = verdicts(audio, 320)
    for chunk in (640, 1600):
        per = chunk // 320
        assert verdicts(audio, chunk) == [any(frames[i : i + per]) for i in range(0, len(frames), per)]


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="webrtc"):
        SpeechFrames("telepathy")
