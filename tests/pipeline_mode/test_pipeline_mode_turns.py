"""Pipeline mode end to end: ASR → LLM → CosyVoice → speaker file, barge-in, echo (issue 6)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from agent.emulator.answers import answer_for
from tests.support.audio import OUT_RATE, locate, read_wav, rms
from tests.support.daemon import RunDaemon
from tests.support.emulator import REALTIME
from tests.support.modes import answer_sentences

JOKE = "Tell me a joke."
BYE = "Goodbye."


async def test_text_reaches_synthesis_while_the_llm_streams_and_plays_in_order(daemon: RunDaemon, tmp_path: Path) -> None:
    # A slow LLM (0.15 s per word: the joke takes ~3.5 s to write) makes the overlap measurable.
    async with daemon([(0.5, JOKE)], emulator_options={"llm_token_s": 0.15}) as run:
        turn = await run.next_turn()
        status = run.daemon.status.as_dict()
        asr = [r for r in run.emulator.context.request_log.records() if r.path == REALTIME]
        assert await run.stop() == 0
    assert turn.heard == JOKE and turn.error is None and not turn.interrupted
    assert turn.answered == answer_for(JOKE)
    assert asr and "model=qwen3-asr-flash-realtime" in asr[0].query
    # The first piece went to synthesis long before the LLM's last event (daemon-side clocks).
    assert turn.llm_finished_at is not None and len(turn.pieces) >= 3
    first_sent = turn.pieces[0][0]
    assert turn.llm_finished_at - first_sent > 1.5
    assert [t for t, _ in turn.pieces] == sorted(t for t, _ in turn.pieces)
    assert turn.llm_first_token_ms is not None and turn.synthesis_first_audio_ms is not None

    # Sentence by sentence (CosyVoice renders each one separately): every sentence is in the file,
    # exactly as synthesized, each starting where the previous one ended — in order, no gap.
    out = read_wav(run.output)
    expected = answer_sentences(JOKE)
    starts = []
    for i, ref in enumerate(expected):
        start, corr = locate(out, ref)
        assert corr > 0.99, f"sentence {i} is played as synthesized"
        starts.append(start)
    for i in range(1, len(expected)):
        assert abs(starts[i] - (starts[i - 1] + len(expected[i - 1]))) <= 2, f"gap before sentence {i}"
    # ... and it was audible before the LLM had finished writing the answer.
    assert run.t0 + starts[0] / OUT_RATE < turn.llm_finished_at - 1.0
    assert status["audio"]["underruns"] == 0
    assert status["turns"] == 1 and status["latency_ms"]["last"] is not None
    assert abs(status["latency_ms"]["last"] - turn.latency_ms) < 0.1  # type: ignore[operator]
    assert 0 < turn.latency_ms < 3000  # type: ignore[operator]


async def test_barge_in_mid_answer_silences_the_speaker_and_the_next_turn_is_clean(
    daemon: RunDaemon, tmp_path: Path,
) -> None:
    # The user asks, then talks over the answer about two seconds into it.
    async with daemon([(0.5, JOKE), (5.0, BYE)]) as run:
        first = await run.next_turn()
        barge_at = run.mode.last_speech_started_at
        run.mode.llm.parameters["max_tokens"] = 5  # a short second answer keeps the test fast
        second = await run.next_turn()
        history = run.mode.conv.turns
        status = run.daemon.status.as_dict()
        await run.stop()
    assert first.interrupted and first.heard == JOKE
    assert second.heard == BYE and not second.interrupted and second.error is None
    assert second.answered == " ".join(answer_for(BYE).split()[:5])
    assert status["barge_ins"] == 1

    out = read_wav(run.output)
    sentences = answer_sentences(JOKE)
    cut = run.at(barge_at)
    start, corr = locate(out[:cut], sentences[0][: OUT_RATE // 2])
    assert corr > 0.99, "the answer had started playing"
    period, fade = int(0.020 * OUT_RATE), int(0.012 * OUT_RATE)
    assert rms(out[cut + period + fade : cut + int(0.5 * OUT_RATE)]) < 5, "silent right after speech_started"
    # Nothing of the interrupted answer plays after the cut: not the rest of the sentence that was
    # playing, not the sentences after it.
    played = cut - start
    rest = np.concatenate(sentences)[played + OUT_RATE // 5 :]
    for i in range(0, len(rest) - OUT_RATE // 2, OUT_RATE // 2):
        chunk = rest[i : i + OUT_RATE // 2]
        if rms(chunk) > 500:
            assert locate(out, chunk)[1] < 0.5, "late audio of the interrupted answer was played"
    heard = status["heard_ms_last_interrupted"]
    assert heard is not None and abs(heard - played * 1000 / OUT_RATE) < 150

    # History: the interrupted answer as far as it was heard, then the clean second turn.
    assert [t.user for t in history] == [JOKE, BYE]
    cut_answer = history[0].assistant
    assert cut_answer.endswith("…") and answer_for(JOKE).startswith(cut_answer[:-1])
    assert 0 < len(cut_answer) < len(answer_for(JOKE))
    assert history[1].assistant == second.answered


async def test_half_duplex_keeps_the_assistant_from_being_interrupted(daemon: RunDaemon, tmp_path: Path) -> None:
    # The same talk-over as above, but the microphone is closed while the assistant speaks.
    async with daemon([(0.5, JOKE), (5.0, BYE)], audio__echo="half_duplex") as run:
        turn = await run.next_turn()
        with pytest.raises(asyncio.TimeoutError):
            await run.next_turn(timeout=1.5)  # the talk-over never became a turn
        status = run.daemon.status.as_dict()
        await run.stop()
    assert turn.heard == JOKE and not turn.interrupted and status["barge_ins"] == 0
    out = read_wav(run.output)
    sentences = answer_sentences(JOKE)
    first, c0 = locate(out, sentences[0])
    last, c1 = locate(out, sentences[-1])
    assert c0 > 0.99 and c1 > 0.99, "the whole answer was played"
    assert first < 5.0 * OUT_RATE and last + len(sentences[-1]) > 6.0 * OUT_RATE, "the user talked over it"
