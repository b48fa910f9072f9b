"""bench/turntext.py (RESULTS §9.3): the text cue, and the rules it drives, on two hesitations.

The rules run on the real labelled set (synthesized, so not the unit tier) with a model that
always says "complete": every paused utterance is cut by the plain model rule, and the oracle's
words ("Set a timer for", "What's the weather in") must veto each of those cuts.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.bench.test_bench_smoke import bench_module


def _turntext() -> ModuleType:
    if importlib.util.find_spec("webrtcvad") is None:
        pytest.skip("the [turn] extra is not installed (webrtcvad)")
    return bench_module("turntext")


@pytest.mark.unit
def test_the_cue_calls_a_request_incomplete_only_on_a_word_it_cannot_end_on() -> None:
    tt = _turntext()
    for text in ("", "Set a timer for", "What's the weather in, um,", "Turn off the", "Call my",
                 "Who are you talking to?"):  # the last: preposition stranding, a known false veto
        assert tt.incomplete(text), text
    for text in ("Turn the lights off.", "What time is it?", "Thank you.", "Add", "Play some music,"):
        assert not tt.incomplete(text), text
    assert tt.incomplete("set a timer the(2)")  # pocketsphinx's alternate-pronunciation mark


def test_the_oracle_veto_prevents_the_cuts_the_plain_model_rule_makes() -> None:
    tt = _turntext()
    ts = bench_module("turnset")
    cache = Path(tempfile.gettempdir()) / "voice-agent-turn-speech"
    utts = ts.build_set("hesitation", cache, per_sentence=1, sentences=2)
    paused = [u for u in utts if u.pauses_ms]
    assert paused and all(tt.oracle_text(tt.parts_of("hesitation", u), u, u.pause_starts[0] + 3200)
                          in ("Set a timer for", "What's the weather in") for u in paused)

    def always_complete(audio: np.ndarray) -> float:
        return 1.0

    res = tt.evaluate("hesitation", utts, 320, always_complete, None)
    lines, got = tt.table([res], None)
    rules = list(res["decided"])
    assert rules == ["server VAD 800 ms (reference)", "webrtc VAD 1000 ms", tt.PLAIN,
                     "smart-turn default + oracle veto", "oracle text alone (100/once/1000 ms)"]
    assert len(lines) >= 2 + len(rules)
    assert all(line.count("|") == 2 + len(tt.FAMILIES) for line in lines[: 2 + len(rules)])
    plain = got[f"{tt.PLAIN} / hesitation / all voices"]
    veto = got["smart-turn default + oracle veto / hesitation / all voices"]
    assert plain["paused"] == veto["paused"] == len(paused)
    assert plain["cut"] == len(paused)  # "complete" at the first ask in every pause
    assert veto["cut"] == 0 and veto["missed"] == 0
    assert veto["p50"] < 400  # the real ends are not vetoed: committed at the first ask, not the cap
    rates = res["rates"]["oracle"]["all voices"]
    assert all(rates["pause"]) and not any(rates["end"])
