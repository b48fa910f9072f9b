"""`listen.end_of_turn: local` with `listen.mode: wake_word` in the running daemon (SPEC §10,
issue 18): the wake turn's audio is held until the rule in agent/listen/waketrim.py has found
where the question starts, so the one manual commit carries the question and not the wake word
("…nabu, what time is it" would be `[unrecognized speech]` to the emulator's phrasebook ASR).

The user's WAV: espeak-ng says "okay nabu" (detected by the real microWakeWord engine), then
after a gap (or none at all) the emulator's own voice says a phrasebook question. What went
upstream is read on the emulator's side. The first test also measures wake → first append and
end of question → commit (printed; `pytest -s` shows them).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from agent.demo import answer_seconds
from agent.emulator.speech import synthesize
from agent.listen.wakeword import load_wake_word
from tests.listen.conftest import Say
from tests.listen.test_listen_daemon import (
    FOLLOW_UP,
    NO_TOOLS,
    QUESTION,
    silence,
    status,
    until_time,
    voiced,
    writer,
)
from tests.listen.upstream import Upstream, contains
from tests.support.audio import locate
from tests.support.daemon import running_daemon

pytest.importorskip("onnxruntime")
pytest.importorskip("webrtcvad")

RATE = 16000
LEAD_S = 1.0
LOCAL_WAKE = {**NO_TOOLS, "listen__mode": "wake_word", "listen__end_of_turn": "local"}
# The question after the wake word that stops an answer: its own answer (4.8 s, the time
# question's is 9.2 s) is waited for whole, and its length is not what that test is about.
SHORT = "Thank you very much."


def wake_then(say: Say, gap_s: float, question: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(pcm, detection sample, first sample of the question): wake word, gap, question."""
    wake = voiced(say("okay nabu"))
    x = np.concatenate([silence(LEAD_S), wake, silence(gap_s), question])
    dets = load_wake_word("okay_nabu").process(x.tobytes())
    assert dets, "the wake word must be detectable offline for the test to mean anything"
    return x, dets[0].end_sample, int(LEAD_S * RATE) + len(wake) + int(gap_s * RATE)


def turn_start(up: Upstream, user: np.ndarray, commit_at: float) -> int:
    """The microphone sample the turn's first append started at (the audio sent before the
    commit, located in the user's WAV)."""
    turn = np.frombuffer(b"".join(pcm for t, pcm in up.appends if t < commit_at), np.int16)
    at, corr = locate(user, turn[: RATE // 2])
    assert corr > 0.99, corr
    return at


@pytest.mark.parametrize("mode", ["omni", "pipeline"])
@pytest.mark.parametrize("gap_s", [0.2, 0.0], ids=["short_gap", "no_gap"])
async def test_the_wake_turn_commits_the_question_without_the_wake_word_and_is_answered_once(
    tmp_path: Path, say: Say, mode: str, gap_s: float
) -> None:
    up = Upstream()
    question = synthesize(QUESTION, RATE)
    spoken, detection, q_start = wake_then(say, gap_s, question)
    user = np.concatenate([spoken, silence(6.0)])
    q_end = (q_start + len(voiced(question))) / RATE
    async with running_daemon(tmp_path, **LOCAL_WAKE, mode=mode, user=writer(tmp_path, user),
                              emulator_options=up.hooks()) as run:
        turn = await run.next_turn(timeout=40)
        assert turn.heard == QUESTION, "the emulator's transcript is the question, no wake word"
        assert turn.answered and not turn.interrupted
        await until_time(run, len(user) / RATE - 0.5)
        assert run.turns.empty(), "answered once"
        st = status(run)["listen"]
        assert st["wakes"] == 1 and st["end_of_turn"]["ends"]["model"] + st["end_of_turn"]["ends"]["silence"] == 1
        cuts = st["end_of_turn"]["wake_cuts"]
        assert sum(cuts.values()) == 1
        assert status(run)["barge_ins"] == 0 and st["end_of_turn"]["barge_ins"] == 0, \
            "talking over the wake earcon is the turn, not a barge-in"
        assert st["sent_s"] == pytest.approx(up.seconds, abs=0.05)
    commits = up.sent("input_audio_buffer.commit")
    assert len(commits) == 1, "one commit"
    if mode == "omni":
        assert len(up.sent("response.create")) == 1
    if gap_s > 0:
        assert cuts == {"gap": 1, "run_on": 0}
        assert contains(up.pcm(), voiced(question)), "every sample of the question went upstream"
    sent_from = turn_start(up, user, commits[0])
    lost_ms = max(0, sent_from - q_start) / 16
    wake_ms = max(0, q_start - int(gap_s * RATE) - sent_from) / 16
    first = up.first_append_at()
    assert first is not None
    print(f"\n{mode} gap {gap_s * 1000:.0f} ms: wake -> first append {(first - run.t0 - detection / RATE) * 1000:.0f} ms;"
          f" end of question -> commit {(commits[0] - run.t0 - q_end) * 1000:.0f} ms;"
          f" sent from {(sent_from - q_start) / 16:+.0f} ms of the question's start"
          f" (wake word kept {wake_ms:.0f} ms, question lost {lost_ms:.0f} ms)")
    if gap_s > 0:
        assert wake_ms == 0 and lost_ms == 0


async def test_a_follow_up_question_needs_no_wake_word_and_then_the_uplink_closes(
    tmp_path: Path, say: Say
) -> None:
    up = Upstream()
    q1, q2, q3 = (synthesize(q, RATE) for q in (QUESTION, FOLLOW_UP, "Hello there."))
    first, _, q1_start = wake_then(say, 0.3, q1)
    follow_up_s = 3.0
    t_q2 = (q1_start + len(q1)) / RATE + 1.5 + answer_seconds(QUESTION) + 1.0
    t_q3 = t_q2 + len(q2) / RATE + 1.5 + answer_seconds(FOLLOW_UP) + follow_up_s + 1.5
    user = np.zeros(int((t_q3 + 3.0) * RATE), np.int16)
    for t, x in ((0.0, first), (t_q2, q2), (t_q3, q3)):
        user[int(t * RATE) : int(t * RATE) + len(x)] = x
    async with running_daemon(tmp_path, **LOCAL_WAKE, user=writer(tmp_path, user), emulator_options=up.hooks(),
                              listen__follow_up_s=follow_up_s) as run:
        one = await run.next_turn(timeout=40)
        two = await run.next_turn(timeout=40)
        assert one.heard == QUESTION and one.answered
        assert two.heard == FOLLOW_UP and two.answered, "the follow-up needed no wake word"
        await until_time(run, t_q3 + len(q3) / RATE + 2.0)
        assert run.turns.empty(), "after the follow-up window nothing opens a turn"
        assert not status(run)["listen"]["uplink_open"]
        assert status(run)["listen"]["end_of_turn"]["wake_cuts"] == {"gap": 1, "run_on": 0}
    assert not contains(up.pcm(), voiced(q3)), "the late question stayed on the device"
    assert len(up.sent("input_audio_buffer.commit")) == 2


@pytest.mark.parametrize("echo", ["half_duplex", "none"])
async def test_only_the_wake_word_stops_the_answer_and_the_question_after_it_is_answered(
    tmp_path: Path, say: Say, echo: str
) -> None:
    # The uplink is closed while the answer plays (wake_word mode), so as with server VAD the
    # room's talk does not interrupt it, whatever the echo mode; the wake word does, and then
    # the held turn takes the question.
    question = synthesize(SHORT, RATE)
    stop, _, _ = wake_then(say, 0.3, question)
    talk = say("The council met on Tuesday.")
    user = np.concatenate([silence(2.5), talk, silence(0.5), stop, silence(6.0)])
    async with running_daemon(tmp_path, **LOCAL_WAKE, user=writer(tmp_path, user),
                              audio__echo=echo) as run:
        await run.serving()
        await until_time(run, 0.5)
        await asyncio.to_thread(_ask, run, "Tell me about the moon.")
        spoken = await run.next_turn(timeout=30)
        assert spoken.interrupted, "the wake word stopped the answer"
        talk_end_ms = (2.5 + len(talk) / RATE - 0.5) * 1000  # the answer began within 0.5 s of the ask
        assert spoken.heard_ms is not None and spoken.heard_ms > talk_end_ms, "not stopped by the talk"
        turn = await run.next_turn(timeout=30)
        assert turn.heard == SHORT and turn.answered
        st = status(run)
        assert st["listen"]["wakes"] == 1 and st["barge_ins"] == 1, "one interruption: the wake word's"
        assert st["listen"]["end_of_turn"]["barge_ins"] == 0, "the local VAD heard the room, not a barge-in"


def _ask(run: object, text: str) -> None:
    from agent.controlclient import request

    reply = request(run.work / "control.sock", {"cmd": "ask", "text": text})  # type: ignore[attr-defined]
    assert reply["ok"], reply
