"""Barge-in where the CosyVoice cancel directive is unsupported (Singapore, audit R4).

REF §4.1: the directive works for CosyVoice v2+ in Beijing only; REF §4.4: a new run-task
mid-task pre-empts the running one on the same socket. Against the emulator as `intl` (which
ignores the directive), the client abandons the task and the next answer starts on the same
connection: no handshake per barge-in, and none of the old task's audio reaches the next answer.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from agent.account import DashScopeAccount
from agent.capabilities import cancel_supported
from agent.config import settings_from_dict
from agent.tts.connection import TtsTimings
from agent.tts.manager import SynthesisManager
from agent.tts.protocol import SynthesisParams, SynthesisTask, TaskState
from tests.pipeline.test_pipeline_tts_connection import MODEL, VOICE, say, wait_for
from tests.support.emulator import API_KEY, MakeEmulator

LONG = "This is a long answer that keeps going for a while. " * 4
INFERENCE = "/api-ws/v1/inference"


def _manager(url: str, region: str) -> SynthesisManager:
    s = settings_from_dict({"mode": "pipeline", "dashscope": {"region": region, "http_url": url},
                            "voice": {"family": "preset", "preset": VOICE}})
    return SynthesisManager(DashScopeAccount.from_settings(s, API_KEY),
                            timings=TtsTimings(backoff_s=(0.05, 0.2)),
                            cancel_directive=cancel_supported(region, s.pipeline.tts_model))


def _upgrades(emu) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for r in emu.context.request_log.records() if r.path.startswith(INFERENCE))


@pytest.mark.parametrize("region", ["intl", "cn"])
async def test_barge_in_then_the_next_answer_on_the_same_connection(
        make_emulator: MakeEmulator, region: str) -> None:
    emu = await make_emulator(region=region, cosyvoice_speed=2.0)
    mgr = _manager(emu.base_url, region)
    assert mgr.cancel_directive is cancel_supported(region, MODEL)
    try:
        _, reference = await say(mgr, "Next.")
        stream = await mgr.begin(VOICE, MODEL)
        await stream.send_text(LONG)
        await stream.finish()
        it = stream.audio().__aiter__()
        await asyncio.wait_for(it.__anext__(), 5)
        await stream.cancel()  # barge-in while the old task still has seconds to speak
        assert [pcm async for pcm in it] == []
        await wait_for(lambda: stream.ended, 2)
        assert stream.error is None
        _, pcm = await say(mgr, "Next.")
        assert pcm == reference  # the old task's late audio was dropped, not played
        assert mgr.connects == 1 and _upgrades(emu) == 1  # one socket for all three tasks
        assert mgr.reconnects == 0
        assert mgr.abandoned == (0 if mgr.cancel_directive else 1)
    finally:
        await mgr.close()


@pytest.mark.unit
def test_an_abandoned_task_sends_a_plain_finish_and_drops_what_follows() -> None:
    task = SynthesisTask(SynthesisParams(model=MODEL, voice=VOICE))
    task.start()
    task.data_to_send()
    task.receive_text(json.dumps({"header": {"event": "task-started", "task_id": task.task_id}, "payload": {}}))
    task.send_text("Hello there.")
    task.data_to_send()
    task.abandon()
    [finish] = task.data_to_send()
    assert '"finish-task"' in finish and "cancel" not in finish  # no directive
    assert task.done and task.receive_bytes(b"\0\0").discard


@pytest.mark.unit
def test_audio_before_task_started_belongs_to_an_earlier_task() -> None:
    task = SynthesisTask(SynthesisParams(model=MODEL, voice=VOICE))
    task.start()
    assert task.state is TaskState.CREATED and task.receive_bytes(b"\0\0").discard


async def test_the_pipeline_daemon_in_intl_barges_in_without_a_new_connection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.support.rig import rig, settings_for

    def settings(base: str):  # type: ignore[no-untyped-def]
        return settings_for("pipeline", base, tmp_path)  # preset longanyang, region intl

    async with rig(tmp_path, settings, emulator_options={"region": "intl", "cosyvoice_speed": 1.0},
                   max_tokens=60) as r:
        await r.until(lambda: r.daemon.mode is not None and r.mode.tts.connected, 10, "synthesis")
        assert r.mode.tts.cancel_directive is False
        turn = await r.mode.ask("Tell me a long story.")
        await r.until(lambda: r.daemon.status.state.value == "speaking", 10, "the answer playing")
        await r.mode.interrupt()
        await asyncio.wait_for(turn.done.wait(), 5)
        assert turn.interrupted
        await r.answer("Goodbye.")
        assert r.mode.tts.abandoned == 1 and r.mode.tts.connects == 1
        assert _upgrades(r.emulator) == 1  # the barge-in cost no handshake
        assert await r.stop() == 0
