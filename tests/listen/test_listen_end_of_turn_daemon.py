"""`listen.end_of_turn: local` in the running daemon (SPEC §10, issue 18): the session runs
without server VAD, the local decider (WebRTC VAD + smart-turn v3.2) ends the user's turn, and
the daemon commits it as `talk stop` would, in omni and pipeline mode, through the emulator.

The question carries a 60 ms pause in mid-sentence, shorter than the silence after which the
model is first asked (`TurnConfig.min_silence_ms`, 100 ms). On the emulator's espeak voice the
model says "complete" at nearly every mid-sentence pause it is asked about (P >= 0.8 after
every word of every phrase in the phrasebook; bench/RESULTS.md §9): this test pins the wiring,
the bench measures the rule. What went upstream is read on the emulator's side.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from agent.emulator.speech import synthesize
from tests.listen.test_listen_daemon import NO_TOOLS, ctl, silence, status, until_time, writer
from tests.listen.upstream import Upstream
from tests.support.daemon import running_daemon

pytest.importorskip("onnxruntime")
pytest.importorskip("webrtcvad")

RATE = 16000
# A phrase with one of the emulator's short answers (4.8 s; "Set a timer for five minutes." has
# 11.3 s): a turn is published once its answer has played, and these tests are about where the
# turn ends, not about the answer.
QUESTION = "Thank you very much."
LEAD_S = 2.0
PAUSE_S = 0.06


def paused_question() -> tuple[np.ndarray, float]:
    """The question with PAUSE_S of silence at its quietest point mid-way; (pcm, end in s)."""
    x = synthesize(QUESTION, RATE)
    level = np.convolve(np.abs(x.astype(float)), np.ones(480) / 480, "same")
    a, b = int(len(x) * 0.3), int(len(x) * 0.7)
    cut = a + int(np.argmin(level[a:b]))
    q = np.concatenate([x[:cut], silence(PAUSE_S), x[cut:]])
    return q, LEAD_S + len(q) / RATE


@pytest.mark.parametrize("mode", ["omni", "pipeline"])
async def test_local_end_of_turn_answers_a_paused_question_once_timed_from_the_end_of_speech(
    tmp_path: Path, mode: str
) -> None:
    up = Upstream()
    question, q_end = paused_question()
    user = np.concatenate([silence(LEAD_S), question, silence(6.0)])
    async with running_daemon(tmp_path, **NO_TOOLS, mode=mode, user=writer(tmp_path, user),
                              emulator_options=up.hooks(), listen__end_of_turn="local") as run:
        turn = await run.next_turn(timeout=40)
        assert turn.heard == QUESTION, "the whole question, not its first half"
        assert turn.answered
        commits = up.sent("input_audio_buffer.commit")
        assert len(commits) == 1, "the daemon committed the turn once"
        assert commits[0] > run.t0 + q_end + 0.1, "not before the silence after the question"
        assert turn.speech_end_at is not None and turn.latency_ms is not None
        assert abs(turn.speech_end_at - (run.t0 + q_end)) < 0.2, "latency counts from the end of speech"
        await until_time(run, len(user) / RATE - 0.5)
        assert len(up.sent("input_audio_buffer.commit")) == 1, "the trailing silence commits nothing"
        counts = status(run)["listen"]["end_of_turn"]
        assert counts["ends"]["model"] + counts["ends"]["silence"] == 1
        assert counts["inferences"] >= 1
    if mode == "omni":
        assert len(up.sent("response.create")) == 1, "one answer asked for"


async def test_local_end_of_turn_runs_the_session_without_server_vad(tmp_path: Path) -> None:
    up = Upstream()
    async with running_daemon(tmp_path, **NO_TOOLS, user=writer(tmp_path, silence(4.0)),
                              emulator_options=up.hooks(), listen__end_of_turn="local") as run:
        await run.serving()
        await until_time(run, 1.0)
        reply = await ctl(run, cmd="status")
        assert reply["status"]["listen"]["end_of_turn"]["ends"] == {"model": 0, "silence": 0}
    assert run.mode._omni_settings().turn_detection.type == "none"
    assert up.seconds > 0.5, "the microphone streams as in `always` mode"
    await asyncio.sleep(0)


@pytest.mark.parametrize("echo", ["none", "half_duplex"])
async def test_speech_over_the_answer_is_a_barge_in_heard_by_the_local_vad_except_in_half_duplex(
    tmp_path: Path, echo: str
) -> None:
    question, q_end = paused_question()
    again = synthesize("Hello there.", RATE)
    user = np.concatenate([silence(LEAD_S), question, silence(1.5), again, silence(5.0)])
    async with running_daemon(tmp_path, **NO_TOOLS, user=writer(tmp_path, user), audio__echo=echo,
                              listen__end_of_turn="local") as run:
        turn = await run.next_turn(timeout=40)
        assert turn.heard == QUESTION
        assert turn.interrupted == (echo == "none"), "no server VAD: the local VAD hears the user"
        counts = status(run)["listen"]["end_of_turn"]
        assert (counts["barge_ins"] >= 1) == (echo == "none")

