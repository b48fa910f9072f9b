"""The building blocks together: LLM deltas → speech pieces → synthesis → PCM, and barge-in."""

from __future__ import annotations

import asyncio

from agent.emulator.answers import answer_for
from agent.llm import Conversation, LLMClient
from agent.textsplit import speech_pieces
from agent.tts.connection import TtsTimings
from agent.tts.manager import SynthesisManager
from agent.tts.stream import SynthesisStream
from tests.support.emulator import MakeEmulator, account_for

QUESTION = "tell me a joke"


async def feed(llm_stream, tts: SynthesisStream, sent: list[str]) -> None:  # type: ignore[no-untyped-def]
    async for piece in speech_pieces(llm_stream):
        sent.append(piece)
        await tts.send_text(piece)
    await tts.finish()


async def test_first_audio_arrives_long_before_the_answer_is_complete(
    make_emulator: MakeEmulator,
) -> None:
    emu = await make_emulator(llm_token_s=0.04, cosyvoice_speed=40.0)
    llm = LLMClient(account_for(emu),
                    "qwen-plus")
    tts = SynthesisManager(account_for(emu), timings=TtsTimings(backoff_s=(0.05, 0.2)))
    await tts.start()
    try:
        stream = await tts.begin("longanyang", "cosyvoice-v3-flash")
        answer = llm.stream(Conversation("Be brief.").messages(QUESTION))
        sent: list[str] = []
        feeder = asyncio.create_task(feed(answer, stream, sent))
        pcm = b"".join([chunk async for chunk in stream.audio()])
        await feeder
        assert pcm and stream.error is None
        assert "".join(sent).strip() == answer_for(QUESTION)
        assert len(sent) >= 3  # spoken sentence by sentence
        assert answer.finished_at is not None and stream.first_audio_at is not None
        assert answer.finished_at - stream.first_audio_at > 0.5  # audio came while the LLM talked
    finally:
        await tts.close()
        await llm.close()


async def test_barge_in_stops_llm_and_synthesis_and_next_turn_is_clean(
    make_emulator: MakeEmulator,
) -> None:
    emu = await make_emulator(llm_token_s=0.1, cosyvoice_speed=4.0)
    llm = LLMClient(account_for(emu),
                    "qwen-plus")
    tts = SynthesisManager(account_for(emu), timings=TtsTimings(backoff_s=(0.05, 0.2)))
    try:
        stream = await tts.begin("longanyang", "cosyvoice-v3-flash")
        answer = llm.stream(Conversation("Be brief.").messages(QUESTION))
        feeder = asyncio.create_task(feed(answer, stream, []))
        await asyncio.wait_for(stream.audio().__anext__(), 5)
        response = answer._response
        assert response is not None and not response.closed
        # barge-in: close the LLM stream, stop the producer, cancel the synthesis
        await answer.aclose()
        feeder.cancel()
        await stream.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        assert response.closed and answer.finish_reason is None
        assert [c async for c in stream.audio()] == []

        nxt = await tts.begin("longanyang", "cosyvoice-v3-flash")
        await nxt.send_text("Okay.")
        await nxt.finish()
        assert b"".join([c async for c in nxt.audio()]) and nxt.error is None
        assert tts.reconnects == 0
    finally:
        await tts.close()
        await llm.close()


async def test_cancelling_the_producer_alone_closes_the_llm_stream(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(llm_token_s=0.3, cosyvoice_speed=40.0)
    llm = LLMClient(account_for(emu),
                    "qwen-plus")
    tts = SynthesisManager(account_for(emu))
    try:
        stream = await tts.begin("longanyang", "cosyvoice-v3-flash")
        answer = llm.stream(Conversation("").messages(QUESTION))
        feeder = asyncio.create_task(feed(answer, stream, []))
        while answer.first_token_at is None:
            await asyncio.sleep(0.01)
        response = answer._response
        await asyncio.sleep(0.05)  # the producer now waits for the next (slow) token
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        assert response is not None and response.closed
        await stream.cancel()
    finally:
        await tts.close()
        await llm.close()
