"""Wake-word detection with the real engine (pymicro-wakeword) on synthesized speech.

Not unit tests: they load the engine's native TensorFlow Lite library and run espeak-ng / flite.
Each takes well under a second once the speech is cached for the session.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import speechsynth as ss

from agent.listen import ListenConfigError
from agent.listen.frontend import Action, FrontendConfig, Interrupt, ListenFrontend, SendAudio, Wake
from agent.listen.wakeword import RATE, WakeDetection, load_wake_word, model_config_path

Say = Callable[..., np.ndarray]  # the `say` fixture of conftest.py


QUESTION = "okay nabu what time is it"
# Voices on which microWakeWord hears "okay nabu" run straight into the question (measured).
RUN_ON_VOICES = [("espeak", "en-us"), ("espeak", "en-gb-x-rp"), ("flite", "rms")]
BACKGROUND = (
    "The council met on Tuesday to discuss the budget for the new library. Several members "
    "asked about the cost of the roof, and the mayor promised a report before the summer. "
    "In other news, the weather will stay mild with some rain in the north on Friday."
)


def feed(pcm: np.ndarray, chunk_ms: int | None, spec: str = "okay_nabu") -> list[WakeDetection]:
    """All detections over `pcm` fed in `chunk_ms` chunks (None: one block)."""
    detector = load_wake_word(spec)
    data = pcm.astype(np.int16).tobytes()
    if chunk_ms is None:
        return detector.process(data)
    step = RATE * chunk_ms // 1000 * 2
    found: list[WakeDetection] = []
    for i in range(0, len(data), step):
        found += detector.process(data[i : i + step])
    return found


def voiced_end(x: np.ndarray) -> int:
    return int(np.nonzero(np.abs(x) > 327)[0][-1])


@pytest.mark.parametrize(("engine", "voice"), RUN_ON_VOICES)
def test_wake_word_run_into_the_question_opens_a_turn_that_carries_the_whole_question(
    say: Say, engine: str, voice: str
) -> None:
    lead = ss.silence(1.0)
    audio = np.concatenate([lead, say(QUESTION, engine, voice), ss.silence(0.5)])
    fe = ListenFrontend(FrontendConfig(mode="wake_word", preroll_ms=400))
    detector = load_wake_word("okay_nabu")
    upstream = bytearray()
    detections: list[WakeDetection] = []
    t = 0.0
    for i in range(0, audio.size, 640):
        pcm = audio[i : i + 640].tobytes()
        t += len(pcm) / 2 / RATE
        actions = fe.chunk(pcm, t)
        for det in detector.process(pcm):
            detections.append(det)
            actions += fe.wake(det)
        upstream += b"".join(a.pcm for a in actions if isinstance(a, SendAudio))
    assert [d.word for d in detections] == ["okay_nabu"]
    assert detections[0].score > 0.85
    start = detections[0].end_sample - 6400
    # Everything from 400 ms before the wake word ended to the end went up, sample for sample.
    assert bytes(upstream) == audio[start:].tobytes()
    # ... which begins before "okay nabu" said alone has ended, so the question's first word,
    # and every sample of the question after it, is in the sent audio.
    wake_alone_end = lead.size + voiced_end(say("okay nabu", engine, voice))
    assert start < wake_alone_end - 0.1 * RATE
    question = audio[wake_alone_end:]
    assert bytes(upstream).endswith(question.tobytes())


def test_background_speech_without_the_wake_word_sends_nothing(say: Say) -> None:
    talk = np.concatenate(
        [
            say(BACKGROUND, e, v)
            for e, v in [("espeak", "en-us"), ("flite", "slt"), ("festival", "slt_hts"), ("espeak", "en-gb+m3")]
        ]
    )
    fe = ListenFrontend(FrontendConfig(mode="wake_word"))
    detector = load_wake_word("okay_nabu")
    actions = []
    for i in range(0, talk.size, 640):
        pcm = talk[i : i + 640].tobytes()
        actions += fe.chunk(pcm, (i + 640) / RATE)
        for det in detector.process(pcm):
            actions += fe.wake(det)
    assert talk.size / RATE > 25
    assert actions == [] and fe.sent_s == 0.0 and fe.wakes == 0


def test_detections_do_not_depend_on_the_chunk_size(say: Say) -> None:
    parts: list[np.ndarray] = []
    for engine, voice in [*RUN_ON_VOICES, ("espeak", "en-029"), ("festival", "slt_hts")]:
        parts += [say("okay nabu", engine, voice), ss.silence(2.5), say(BACKGROUND[:80], engine, voice)]
    audio = np.concatenate(parts)
    reference = feed(audio, None)
    assert len(reference) >= 4
    for chunk_ms in (10, 40, 100):
        assert feed(audio, chunk_ms) == reference, chunk_ms


def test_a_detection_ends_at_the_sample_where_the_wake_word_was_heard(say: Say) -> None:
    wake = say("okay nabu")
    for lead_s in (0.5, 2.0):
        audio = np.concatenate([ss.silence(lead_s), wake, ss.silence(1.0)])
        (det,) = feed(audio, 40)
        heard = det.end_sample - int(lead_s * RATE) - voiced_end(wake)
        assert 0 <= heard < 0.3 * RATE  # within 300 ms after the last voiced sample
        assert det.end_s == pytest.approx(det.end_sample / RATE)


def test_one_utterance_fires_once_and_a_repeat_after_the_refractory_period_fires_again(say: Say) -> None:
    wake = say("okay nabu")
    audio = np.concatenate([wake, ss.silence(2.0), wake, ss.silence(1.0)])
    assert len(feed(audio, 40)) == 2


def test_wake_threshold_overrides_the_models_cut_off(say: Say) -> None:
    audio = np.concatenate([say("okay nabu"), ss.silence(1.0)]).tobytes()
    (default,) = load_wake_word("okay_nabu").process(audio)  # the model's cut-off: 0.85
    (low,) = load_wake_word("okay_nabu", threshold=0.5).process(audio)
    (high,) = load_wake_word("okay_nabu", threshold=0.95).process(audio)
    assert low.score > 0.5 and default.score > 0.85 and high.score > 0.95
    assert low.end_sample < default.end_sample < high.end_sample  # a lower bar is met sooner
    assert load_wake_word("okay_nabu", threshold=0.999).process(audio) == []


@pytest.mark.parametrize("word", ["hey_jarvis", "alexa", "hey_mycroft"])
def test_every_built_in_wake_word_loads_and_hears_its_phrase(say: Say, word: str) -> None:
    phrase = word.replace("_", " ")
    audio = np.concatenate([say(phrase, "flite", "slt", 1.2), ss.silence(1.0)])
    found = feed(audio, 40, word)
    assert [d.word for d in found] == [word]


def test_a_model_file_path_works_like_the_built_in_name(say: Say, tmp_path: Path) -> None:
    builtin = model_config_path("okay_nabu")
    for name in ("okay_nabu.json", "okay_nabu.tflite"):
        shutil.copy(builtin.parent / name, tmp_path / name)
    audio = np.concatenate([say("okay nabu"), ss.silence(1.0)])
    expected = feed(audio, 40)
    assert feed(audio, 40, str(tmp_path / "okay_nabu.json")) == expected
    assert feed(audio, 40, str(tmp_path / "okay_nabu.tflite")) == expected


def run_speaking(mic: np.ndarray) -> list[Action]:
    """Feed the microphone in 40 ms chunks while the assistant speaks; collect the actions."""
    fe = ListenFrontend(FrontendConfig(mode="always"))
    detector = load_wake_word("okay_nabu")
    actions = fe.start()
    for i in range(0, mic.size, 640):
        pcm = mic[i : i + 640].tobytes()
        actions += fe.chunk(pcm, (i + 640) / RATE, speaking=True)
        for det in detector.process(pcm):
            actions += fe.wake(det)
    return [a for a in actions if isinstance(a, (Wake, Interrupt))]


@pytest.mark.parametrize("at_s", [0.5, 1.5, 2.5])
def test_stop_word_heard_over_the_assistants_own_voice_interrupts(say: Say, at_s: float) -> None:
    answer = say(BACKGROUND[:140], "espeak", "en-gb-x-rp")[: 4 * RATE]
    echo = (answer.astype(np.float64) * 0.1).astype(np.int32)  # the answer's echo at -20 dB
    user = np.concatenate([ss.silence(at_s), say("okay nabu"), ss.silence(4.0)])[: answer.size]
    mic = np.clip(user.astype(np.int32) + echo, -32768, 32767).astype(np.int16)
    assert [type(a) for a in run_speaking(mic)] == [Wake, Interrupt]


def test_the_assistants_own_voice_does_not_stop_it(say: Say) -> None:
    answer = np.concatenate([say(BACKGROUND, "espeak", "en-gb-x-rp"), say(BACKGROUND, "flite", "slt")])
    assert run_speaking(answer) == []


def corrupt(tmp_path: Path, body: bytes) -> Path:
    (tmp_path / "mine.tflite").write_bytes(body)
    config = {"type": "micro", "wake_word": "Mine", "model": "mine.tflite"}
    config["micro"] = {"probability_cutoff": 0.9, "sliding_window_size": 5}  # type: ignore[assignment]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p / "absent.json",
        lambda p: p / "absent.tflite",
        lambda p: (p / "x.json").write_text("{not json") and p / "x.json",
        lambda p: (p / "x.json").write_text('{"model": "x.tflite"}') and p / "x.json",
        lambda p: corrupt(p, b"not a model at all"),
        lambda p: corrupt(p, b"\0\0\0\0TFL3" + bytes(64)),  # right magic, broken FlatBuffer
        lambda p: p / "model.onnx",
    ],
    ids=["missing-json", "missing-tflite", "bad-json", "not-micro", "not-tflite", "corrupt", "suffix"],
)
def test_an_unusable_model_is_a_config_error_naming_the_key(tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ListenConfigError) as info:
        load_wake_word(str(make(tmp_path)))
    assert info.value.key == "listen.wake_word"
    assert str(info.value).startswith("listen.wake_word: ")


def test_a_threshold_outside_zero_one_is_a_config_error_naming_its_key() -> None:
    for bad in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ListenConfigError) as info:
            load_wake_word("okay_nabu", threshold=bad)
        assert info.value.key == "listen.wake_threshold"
