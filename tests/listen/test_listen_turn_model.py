"""smart-turn v3.2 from the pipecat-ai wheel on onnxruntime (the `[turn]` extra), on synthesized speech.

Skipped only when the extra is not installed (the `test` extra installs it). The speech is
clean synthetic audio, so "speech in this chunk" is read from the samples themselves.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import speechsynth as ss

from agent.listen import ListenConfigError
from agent.listen import turn_model as tm
from agent.listen.turn import EndOfTurnDecider, TurnConfig

pytest.importorskip("onnxruntime", reason="the [turn] extra is not installed")
if importlib.util.find_spec("pipecat") is None:
    pytest.skip("the [turn] extra (pipecat-ai) is not installed", allow_module_level=True)

Say = Callable[..., np.ndarray]  # the `say` fixture of conftest.py
CHUNK = 320
COMPLETE = "Turn off the lights."
INCOMPLETE = "What is the weather like in,"


@pytest.fixture(scope="module")
def model() -> tm.SmartTurnModel:
    return tm.load_turn_model()


def spoken(say: Say, text: str) -> np.ndarray:
    x = say(text)
    idx = np.nonzero(np.abs(x) > 300)[0]
    return x[idx[0] : idx[-1] + 1]


def decide(model: tm.SmartTurnModel, audio: np.ndarray) -> tuple[object, int]:
    d = EndOfTurnDecider(TurnConfig(min_silence_ms=300, step_ms=300, max_silence_ms=1500, threshold=0.5), model)
    for i in range(0, audio.size, CHUNK):
        piece = audio[i : i + CHUNK]
        done = d.feed(piece.tobytes(), bool(np.abs(piece).max() > 300))
        if done is not None:
            return done, d.inferences
    raise AssertionError("the turn never ended")


def test_the_model_ships_in_the_wheel_and_tells_finished_from_unfinished(say: Say, model: tm.SmartTurnModel) -> None:
    assert model.path.name == "smart-turn-v3.2-cpu.onnx" and model.path.is_file()
    pause = ss.silence(0.3)
    finished = model(np.concatenate([pause, spoken(say, COMPLETE), pause]))
    unfinished = model(np.concatenate([pause, spoken(say, INCOMPLETE), pause]))
    assert finished > 0.8 > 0.3 > unfinished, (finished, unfinished)


def test_a_finished_sentence_ends_the_turn_at_the_first_question(say: Say, model: tm.SmartTurnModel) -> None:
    speech = spoken(say, COMPLETE)
    done, inferences = decide(model, np.concatenate([ss.silence(0.5), speech, ss.silence(2.0)]))
    assert done.reason == "model" and done.silence_ms < 400 and inferences == 1


def test_an_unfinished_sentence_waits_for_the_longest_silence(say: Say, model: tm.SmartTurnModel) -> None:
    speech = spoken(say, INCOMPLETE)
    done, inferences = decide(model, np.concatenate([ss.silence(0.5), speech, ss.silence(2.0)]))
    assert done.reason == "silence" and done.silence_ms >= 1500
    assert inferences == 4  # at 300, 600, 900 and 1200 ms of silence: bounded


def test_an_unreadable_model_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "turn.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ListenConfigError) as err:
        tm.SmartTurnModel(bad)
    assert err.value.key == "listen.end_of_turn"


def test_a_missing_bundled_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tm, "MODEL_FILE", "smart-turn-v0-missing.onnx")
    with pytest.raises(ListenConfigError) as err:
        tm.load_turn_model()
    assert err.value.key == "listen.end_of_turn" and "voice-agent[turn]" in str(err.value)
