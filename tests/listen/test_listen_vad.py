"""The local VAD gate (pymicro-vad) on synthesized speech, alone and driving the front end.

Not unit tests: pymicro-vad is a native extension. Fast (a few seconds of audio each).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import speechsynth as ss

from agent.listen.frontend import CloseUplink, FrontendConfig, ListenFrontend, OpenUplink, SendAudio
from agent.listen.vad import VadGate

Say = Callable[..., np.ndarray]  # the `say` fixture of conftest.py


RATE = 16000
SENTENCE = "Could you turn the kitchen lights off, please"


def per_chunk(gate: VadGate, audio: np.ndarray, chunk: int) -> list[bool]:
    return [gate.process(audio[i : i + chunk].tobytes()) for i in range(0, audio.size, chunk)]


def voiced_span(x: np.ndarray) -> tuple[int, int]:
    idx = np.nonzero(np.abs(x) > 327)[0]
    return int(idx[0]), int(idx[-1])


def test_quiet_room_and_white_noise_are_not_speech() -> None:
    room = ss.white_noise(10.0, seed=4) // 100  # about -60 dBFS
    assert not any(per_chunk(VadGate(), room, 640))
    assert not any(per_chunk(VadGate(), ss.silence(5.0), 640))


def test_speech_is_speech_and_the_decision_ends_soon_after_it(say: Say) -> None:
    speech = say(SENTENCE)
    audio = np.concatenate([ss.silence(2.0), speech, ss.silence(3.0)])
    flags = per_chunk(VadGate(hangover_ms=200), audio, 160)  # per 10 ms frame
    on, off = voiced_span(audio)
    voiced = [i for i, f in enumerate(flags) if f]
    assert voiced, "no speech found"
    assert on / 160 <= voiced[0] < on / 160 + 40  # onset found within 400 ms (the pre-roll)
    assert off / 160 <= voiced[-1] < off / 160 + 150  # and released within 1.5 s of the end
    inside = flags[voiced[0] : voiced[-1] + 1]
    assert sum(inside) / len(inside) > 0.9  # no holes between words, thanks to the hang-over


def test_the_gate_decides_the_same_samples_whatever_the_chunk_size(say: Say) -> None:
    audio = np.concatenate([ss.silence(1.0), say(SENTENCE), ss.silence(2.0)])
    audio = audio[: audio.size // 1600 * 1600]  # whole 100 ms chunks
    frames = per_chunk(VadGate(), audio, 160)
    for chunk in (640, 1600):
        got = per_chunk(VadGate(), audio, chunk)
        per = chunk // 160
        assert got == [any(frames[i : i + per]) for i in range(0, len(frames), per)], chunk


def test_vad_gated_always_mode_sends_speech_with_preroll_and_trailing_audio_only(say: Say) -> None:
    speech = say(SENTENCE)
    audio = np.concatenate([ss.silence(5.0), speech, ss.silence(6.0)])
    fe = ListenFrontend(FrontendConfig(mode="always", vad=True, preroll_ms=400, trailing_ms=1100))
    gate = VadGate()
    actions = fe.start()
    for i in range(0, audio.size, 640):
        pcm = audio[i : i + 640].tobytes()
        actions += fe.chunk(pcm, (i + 640) / RATE, voiced=gate.process(pcm))
    assert [type(a) for a in actions if not isinstance(a, SendAudio)] == [OpenUplink, CloseUplink]
    sent = b"".join(a.pcm for a in actions if isinstance(a, SendAudio))
    on, off = voiced_span(audio)
    start = audio.tobytes().index(sent)
    assert start // 2 <= on  # the first syllable went up whole
    assert (start + len(sent)) // 2 >= off + 0.8 * RATE  # and the server VAD's silence after it
    assert fe.sent_s < audio.size / RATE / 2  # the quiet minutes stayed home
