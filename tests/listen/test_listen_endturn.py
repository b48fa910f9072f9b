"""The local end of turn as the uplink drives it (agent/listen/endturn.py): decisions from the
worker thread become the front end's turn end plus a Commit timed at the end of speech; a reset
drops decisions still in flight; speech over an audible answer is a barge-in.

The VAD here is a plain level threshold and the model a fixed answer (both injected, as in
tests/listen/test_listen_turn_rule.py): these tests are about the wiring, not the rule.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from agent.config import ConfigError, parse_settings
from agent.listen.endturn import BARGE_IN_MS, LocalEndOfTurn
from agent.listen.frontend import Commit, FrontendConfig, Interrupt, ListenFrontend
from agent.listen.turn import EndOfTurnDecider, TurnConfig

pytestmark = pytest.mark.unit

CHUNK = 640  # 40 ms at 16 kHz


class LevelVad:
    """Speech = a chunk louder than -30 dBFS (the test's "speech" is a loud tone)."""

    def __call__(self, pcm: bytes) -> bool:
        x = np.frombuffer(pcm, np.int16)
        return bool(x.size) and int(np.abs(x).max()) > 1000

    def reset(self) -> None:
        pass


def chunks(speech_s: float, silence_s: float) -> list[bytes]:
    t = np.arange(int(speech_s * 16000)) / 16000
    x = np.concatenate([(8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16),
                        np.zeros(int(silence_s * 16000), np.int16)])
    return [x[i : i + CHUNK].tobytes() for i in range(0, len(x), CHUNK)]


def make(p: float = 0.9) -> LocalEndOfTurn:
    model: Callable[[np.ndarray], float] = lambda audio: p  # noqa: E731
    return LocalEndOfTurn(EndOfTurnDecider(TurnConfig(), model), LevelVad(), LevelVad())


def run(eot: LocalEndOfTurn, fe: ListenFrontend, pcms: list[bytes], t0: float = 100.0,
        audible: bool = False, settle: bool = True) -> list[tuple[float, object]]:
    """Feed chunks (chunk i ends at t0 + 0.04 (i+1)); returns (t_end, action) pairs."""
    out: list[tuple[float, object]] = []
    for i, pcm in enumerate(pcms):
        t = t0 + 0.04 * (i + 1)
        if settle and eot._jobs:
            eot._jobs[-1][1].result()  # wait for the worker: deterministic timing
        out += [(t, a) for a in eot.chunk(fe, pcm, t, t, audible, sent=pcm)]
    return out


def test_the_decision_is_a_commit_timed_at_the_end_of_speech() -> None:
    eot, fe = make(), ListenFrontend(FrontendConfig())
    got = run(eot, fe, chunks(1.0, 1.0))
    commits = [(t, a) for t, a in got if isinstance(a, Commit)]
    assert len(commits) == 1, "one turn, one commit"
    t, commit = commits[0]
    assert commit.speech_end_at == pytest.approx(101.0, abs=0.001), "the end of speech, not the decision"
    assert t >= 101.0 + TurnConfig().min_silence_ms / 1000, "after min_silence_ms of silence"
    assert eot.status()["ends"] == {"model": 1, "silence": 0}
    eot.close()


def test_without_the_model_saying_complete_the_turn_ends_at_the_silence_cap() -> None:
    eot, fe = make(p=0.1), ListenFrontend(FrontendConfig())
    got = run(eot, fe, chunks(1.0, 2.0))
    commits = [(t, a) for t, a in got if isinstance(a, Commit)]
    assert len(commits) == 1 and commits[0][0] >= 101.0 + TurnConfig().max_silence_ms / 1000
    assert eot.status()["ends"] == {"model": 0, "silence": 1}
    eot.close()


def test_a_reset_drops_the_decisions_still_in_flight() -> None:
    eot, fe = make(), ListenFrontend(FrontendConfig())
    first_ask = TurnConfig().min_silence_ms / 1000
    got = run(eot, fe, chunks(1.0, first_ask))  # the last chunk's job decides; nobody collected it yet
    assert not any(isinstance(a, Commit) for _, a in got)
    assert eot._jobs[-1][1].result() is not None, "a decision is waiting to be collected"
    eot.reset()  # e.g. the session was rotated: its buffer is gone
    got = run(eot, fe, chunks(0.0, 1.0), t0=200.0)
    assert not any(isinstance(a, Commit) for _, a in got), "nothing of the old turn is committed"
    assert eot.status()["ends"] == {"model": 0, "silence": 0}
    eot.close()


def test_speech_over_an_audible_answer_is_a_barge_in_and_feeds_no_turn() -> None:
    eot, fe = make(), ListenFrontend(FrontendConfig())
    fe.start()  # always mode: the uplink is open, the server would hear the user
    got = run(eot, fe, chunks(0.5, 0.0), audible=True)
    interrupts = [t for t, a in got if isinstance(a, Interrupt)]
    assert len(interrupts) >= 1 and interrupts[0] == pytest.approx(100.0 + BARGE_IN_MS / 1000, abs=0.041)
    assert eot.barge_ins >= 1 and not eot._jobs, "the answer's time is not the user's turn"
    eot.close()


def test_in_wake_word_mode_talk_over_the_answer_is_no_barge_in_the_uplink_is_closed() -> None:
    eot, fe = make(), ListenFrontend(FrontendConfig(mode="wake_word"))
    fe.start()
    got = run(eot, fe, chunks(1.0, 0.0), audible=True)
    assert not any(isinstance(a, Interrupt) for _, a in got), "the room does not stop the answer"
    assert eot.barge_ins == 0, "only the wake word does, as with server VAD"
    eot.close()


def test_the_decider_stays_out_of_push_to_talk_turns() -> None:
    eot, fe = make(), ListenFrontend(FrontendConfig(mode="push_to_talk"))
    fe.talk_start(100.0)
    got = run(eot, fe, chunks(1.0, 1.0))
    assert not any(isinstance(a, Commit) for _, a in got), "the button ends a held turn"
    eot.close()


def test_a_missing_turn_extra_is_exit_78_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.daemon import load_listen_engines

    monkeypatch.setitem(__import__("sys").modules, "webrtcvad", None)  # as if not installed
    settings = parse_settings("listen: {end_of_turn: local}", "c.yaml")
    with pytest.raises(ConfigError, match=r"listen\.end_of_turn.*voice-agent\[turn\]"):
        load_listen_engines(settings)
