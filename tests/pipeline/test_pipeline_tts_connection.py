"""Synthesis connection manager (agent.tts.connection) against the emulator over loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.account import DashScopeAccount
from agent.config import settings_from_dict
from agent.emulator.server import Emulator
from agent.tts.connection import RateLimiter, TtsTimings
from agent.tts.errors import SynthesisAuthError, SynthesisError
from agent.tts.manager import SynthesisManager
from agent.tts.protocol import InvalidState
from agent.tts.stream import SynthesisStream
from tests.support.emulator import API_KEY, MakeEmulator, account_at, account_for, options
from tests.support.emulator import PIPELINE_FAST as FAST

VOICE, MODEL = "longanyang", "cosyvoice-v3-flash"
QUICK = {"cosyvoice_speed": 40.0}  # audio 40× faster than real time


def manager(emu: Emulator, key: str = API_KEY, **timings: Any) -> SynthesisManager:
    """A manager on the emulator that retries within 0.2 s, with `timings` scaled down too."""
    timings.setdefault("backoff_s", (0.05, 0.2))
    return SynthesisManager(account_for(emu, key), timings=TtsTimings(**timings))


@pytest.fixture
async def emu(make_emulator: MakeEmulator) -> Emulator:
    return await make_emulator(**QUICK)


@pytest.fixture
async def mgr(emu: Emulator) -> AsyncIterator[SynthesisManager]:
    m = manager(emu)
    await m.start()
    try:
        yield m
    finally:
        await m.close()


async def collect(stream: SynthesisStream) -> bytes:
    return b"".join([pcm async for pcm in stream.audio()])


async def say(mgr: SynthesisManager, *texts: str) -> tuple[SynthesisStream, bytes]:
    stream = await mgr.begin(VOICE, MODEL)
    for t in texts:
        await stream.send_text(t)
    await stream.finish()
    return stream, await asyncio.wait_for(collect(stream), 10)


async def wait_for(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


# --- pure helpers ------------------------------------------------------------------------------


@pytest.mark.unit
def test_rate_limiter_sliding_window() -> None:
    now = [0.0]
    lim = RateLimiter(3, 1.0, clock=lambda: now[0])
    for _ in range(3):
        assert lim.delay() == 0
        lim.history.append(now[0])
        now[0] += 0.1
    assert lim.delay() == pytest.approx(0.7)  # the oldest of the last 3 was at 0.0
    now[0] = 1.0
    assert lim.delay() == 0


@pytest.mark.unit
def test_manager_of_the_configured_account_uses_ws_override_and_workspace() -> None:
    s = settings_from_dict({"dashscope": {"http_url": "http://127.0.0.1:8700", "workspace": "ws-1"}})
    m = SynthesisManager(DashScopeAccount.from_settings(s, "k"))
    assert m.url == "ws://127.0.0.1:8700/api-ws/v1/inference"
    assert m._headers == {"Authorization": "Bearer k", "X-DashScope-WorkSpace": "ws-1"}


# --- happy path --------------------------------------------------------------------------------


async def test_connects_ahead_and_reuses_the_socket_across_tasks(mgr: SynthesisManager) -> None:
    await wait_for(lambda: mgr.connected)  # opened by start(), before any turn
    results = [await say(mgr, "Hello there. ", "How are you today?") for _ in range(3)]
    ids = [s.task_ids[0] for s, _ in results]
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
    assert mgr.connects == 1 and mgr.reconnects == 0 and mgr.tasks_started == 3
    for stream, pcm in results:
        assert len(pcm) > 24000 and len(pcm) % 2 == 0  # > 0.5 s of 16-bit audio
        assert stream.ended and stream.error is None and stream.unpaired_frames == 0
        assert stream.characters == len("Hello there. How are you today?")
        assert stream.first_audio_at is not None and stream.first_audio_at >= stream.begun_at
        assert stream.audio_bytes == len(pcm)
    assert results[0][1] == results[1][1]  # deterministic voice: the same text, the same audio


async def test_audio_streams_before_the_text_is_finished(mgr: SynthesisManager) -> None:
    stream = await mgr.begin(VOICE, MODEL)
    await stream.send_text("The first sentence is complete. And the second one")
    it = stream.audio().__aiter__()
    first = await asyncio.wait_for(it.__anext__(), 5)  # audio without finish-task
    assert first and stream.first_audio_at is not None
    await stream.finish()
    rest = [pcm async for pcm in it]
    assert rest  # the buffered partial sentence was spoken after finish-task


async def test_text_after_finish_is_rejected(mgr: SynthesisManager) -> None:
    stream = await mgr.begin(VOICE, MODEL)
    await stream.send_text("Short.")
    await stream.finish()
    with pytest.raises(InvalidState):
        await stream.send_text("more")
    await collect(stream)


async def test_context_manager_finishes(mgr: SynthesisManager) -> None:
    async with await mgr.begin(VOICE, MODEL) as stream:
        await stream.send_text("Inside a block.")
    assert await asyncio.wait_for(collect(stream), 5)


# --- idle handling -----------------------------------------------------------------------------


async def test_server_idle_close_then_transparent_reuse(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(cosyvoice_idle_close_s=0.3, **QUICK)
    mgr = manager(emu, idle_refresh_s=60)  # we do not refresh: the server closes first
    await mgr.start()
    try:
        await say(mgr, "Before the pause.")
        await asyncio.sleep(0.6)  # the server closed the idle socket meanwhile
        stream, pcm = await say(mgr, "After the pause.")
        assert pcm and stream.error is None
        assert mgr.connects >= 2
    finally:
        await mgr.close()


async def test_idle_socket_is_refreshed_before_the_server_closes_it(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(cosyvoice_idle_close_s=0.6, **QUICK)
    mgr = manager(emu, idle_refresh_s=0.2)
    await mgr.start()
    try:
        await say(mgr, "One.")
        await wait_for(lambda: mgr.connects >= 3, 3)  # replaced twice while idle
        assert mgr.reconnects == 0  # only planned refreshes, never a server close
        stream, pcm = await say(mgr, "Two.")
        assert pcm and stream.error is None
    finally:
        await mgr.close()


# --- failures ----------------------------------------------------------------------------------


async def test_task_failed_surfaces_typed_error_and_socket_recovers(mgr: SynthesisManager) -> None:
    bad = await mgr.begin("no-such-voice", MODEL)
    await bad.send_text("Hello.")
    await bad.finish()
    with pytest.raises(SynthesisError) as ei:
        await collect(bad)
    assert ei.value.code == "InvalidParameter" and "418" in ei.value.message
    assert ei.value.task_id == bad.task_ids[0]
    with pytest.raises(SynthesisError):
        await bad.send_text("x")
    stream, pcm = await say(mgr, "Recovered.")  # a new socket: task-failed closed the old one
    assert pcm and mgr.reconnects == 1 and mgr.connects == 2


async def test_injected_task_failed_then_recovery(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="task_failed@inference*1", **QUICK)
    mgr = manager(emu)
    try:
        with pytest.raises(SynthesisError) as ei:
            await say(mgr, "Fails.")
        assert ei.value.code == "InternalError"
        _, pcm = await say(mgr, "Works.")
        assert pcm
    finally:
        await mgr.close()


async def test_dropped_connection_mid_task(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="drop_after=5@inference*1", **QUICK)
    mgr = manager(emu)
    try:
        stream = await mgr.begin(VOICE, MODEL)
        await stream.send_text("A long sentence that produces many audio frames for the test.")
        await stream.finish()
        got: list[bytes] = []
        with pytest.raises(SynthesisError) as ei:
            async for pcm in stream.audio():
                got.append(pcm)
        assert ei.value.code == "ConnectionClosed" and got  # some audio came before the drop
        _, pcm = await say(mgr, "Next turn works.")
        assert pcm and mgr.reconnects >= 1
    finally:
        await mgr.close()


async def test_wrong_key_is_an_auth_error_at_once(emu: Emulator) -> None:
    mgr = manager(emu, key="sk-wrong-000000")
    try:
        with pytest.raises(SynthesisAuthError) as ei:
            await asyncio.wait_for(mgr.begin(VOICE, MODEL), 5)
        assert ei.value.code == "InvalidApiKey" and "sk-wrong" not in str(ei.value)
        assert mgr.auth_backoff.attempt >= 1  # background retries back off on the long scale
    finally:
        await mgr.close()


async def test_server_down_then_up(make_emulator: MakeEmulator) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mgr = SynthesisManager(account_at(f"http://127.0.0.1:{port}"),
                           timings=TtsTimings(backoff_s=(0.05, 0.1), connect_timeout_s=2))
    try:
        with pytest.raises(SynthesisError) as ei:
            await mgr.begin(VOICE, MODEL)
        assert ei.value.code == "ConnectFailed"
        emu = Emulator(options=options(**{**FAST, **QUICK}))
        await emu.start(port=port)
        try:
            await wait_for(lambda: mgr.connected, 3)  # reconnected in the background
            _, pcm = await say(mgr, "Back online.")
            assert pcm
        finally:
            await mgr.close()
            await emu.stop()
    finally:
        await mgr.close()


async def test_silent_socket_hits_start_timeout_and_task_is_replayed(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="half_open=0@inference*1", **QUICK)
    mgr = manager(emu, start_timeout_s=0.3)
    try:
        stream = await mgr.begin(VOICE, MODEL)
        await stream.send_text("Queued before task-started. ")
        await stream.send_text("And more.")
        await stream.finish()
        pcm = await asyncio.wait_for(collect(stream), 5)
        assert pcm and stream.error is None
        assert len(stream.task_ids) == 2  # restarted once on a fresh socket
        assert stream.characters == len("Queued before task-started. And more.")
    finally:
        await mgr.close()


async def test_malformed_and_unexpected_binary_frames_are_tolerated(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="malformed=2@inference,binary_frame=3@inference", **QUICK)
    mgr = manager(emu)
    try:
        stream, pcm = await say(mgr, "Still fine.")
        assert pcm and len(pcm) % 2 == 0 and stream.error is None
        assert stream.unpaired_frames == 1
    finally:
        await mgr.close()


# --- cancel ------------------------------------------------------------------------------------


async def test_cancel_mid_task_stops_audio_and_keeps_the_socket(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(cosyvoice_speed=2.0)  # slow enough to cancel in the middle
    mgr = manager(emu)
    try:
        stream = await mgr.begin(VOICE, MODEL)
        await stream.send_text("This is a long answer. " * 6)
        await stream.finish()
        it = stream.audio().__aiter__()
        await asyncio.wait_for(it.__anext__(), 5)
        await stream.cancel()
        assert [pcm async for pcm in it] == []  # nothing more after cancel
        await wait_for(lambda: stream.ended, 2)
        assert stream.error is None
        _, pcm = await say(mgr, "Next.")
        assert pcm and mgr.connects == 1  # the server acknowledged: same socket reused
    finally:
        await mgr.close()


async def test_cancel_without_acknowledgement_replaces_the_socket(make_emulator: MakeEmulator) -> None:
    # after 6 frames (task-started, sentence-begin, 2 × (sentence-synthesis + audio)) the server
    # goes silent, so the cancel directive is never acknowledged
    emu = await make_emulator(faults="half_open=6@inference*1", cosyvoice_speed=2.0)
    mgr = manager(emu, cancel_grace_s=0.2)
    try:
        stream = await mgr.begin(VOICE, MODEL)
        await stream.send_text("This is a long answer. " * 4)
        it = stream.audio().__aiter__()
        for _ in range(2):
            await asyncio.wait_for(it.__anext__(), 5)
        await stream.cancel()
        assert [pcm async for pcm in it] == []
        await wait_for(lambda: stream.ended, 2)
        await wait_for(lambda: mgr.connects == 2, 2)  # replaced at once, not after a backoff
        assert mgr.reconnects == 0
        _, pcm = await say(mgr, "Fresh socket.")
        assert pcm and mgr.connects == 2
    finally:
        await mgr.close()


async def test_socket_silent_after_finish_is_declared_stalled(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(faults="half_open=6@inference*1", cosyvoice_speed=2.0)
    mgr = manager(emu, stall_timeout_s=0.3)
    try:
        stream = await mgr.begin(VOICE, MODEL)
        await stream.send_text("This is a long answer. " * 4)
        await stream.finish()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(SynthesisError) as ei:
            await asyncio.wait_for(collect(stream), 5)
        assert ei.value.code == "ConnectionClosed" and "stalled" in ei.value.message
        assert loop.time() - t0 < 2
        _, pcm = await say(mgr, "Fresh socket.")
        assert pcm
    finally:
        await mgr.close()


async def test_cancel_before_task_started(mgr: SynthesisManager) -> None:
    stream = await mgr.begin(VOICE, MODEL)
    await stream.send_text("never spoken")
    await stream.cancel()
    assert await collect(stream) == b"" and stream.ended
    _, pcm = await say(mgr, "Next.")
    assert pcm


async def test_begin_preempts_a_running_stream(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(cosyvoice_speed=2.0)
    mgr = manager(emu)
    try:
        old = await mgr.begin(VOICE, MODEL)
        await old.send_text("An answer nobody wants to hear anymore. " * 3)
        await asyncio.wait_for(old.audio().__anext__(), 5)
        new_stream, pcm = await say(mgr, "The new answer.")
        assert old.ended and pcm and new_stream.error is None
    finally:
        await mgr.close()


# --- limits ------------------------------------------------------------------------------------


async def test_at_most_three_run_tasks_per_second(mgr: SynthesisManager) -> None:
    times: list[float] = []
    real_acquire = mgr.limiter.acquire

    async def spy() -> None:
        await real_acquire()
        times.append(asyncio.get_running_loop().time())

    mgr.limiter.acquire = spy  # type: ignore[method-assign]
    for _ in range(5):
        stream = await mgr.begin(VOICE, MODEL)
        await stream.cancel()
    assert len(times) == 5
    for a, b in zip(times, times[3:], strict=False):
        assert b - a >= 0.99  # any 4 consecutive run-tasks span at least a second


async def test_text_gap_never_reaches_the_server_limit(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(cosyvoice_text_gap_s=0.6, **QUICK)  # the "23 s" rule, shortened
    mgr = manager(emu, text_gap_s=0.25)
    try:
        stream = await mgr.begin(VOICE, MODEL)
        await stream.send_text("Before a long pause. ")
        await asyncio.sleep(1.0)  # a slow producer: longer than the server tolerates
        await stream.send_text("After the pause.")
        await stream.finish()
        pcm = await asyncio.wait_for(collect(stream), 5)
        assert pcm and stream.error is None
        assert stream.gap_finishes >= 1 and len(stream.task_ids) == 2  # continued in a new task
        assert stream.characters == len("Before a long pause. After the pause.")
    finally:
        await mgr.close()


async def test_text_gap_on_an_empty_task(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(cosyvoice_text_gap_s=0.6, **QUICK)
    mgr = manager(emu, text_gap_s=0.25)
    try:
        stream = await mgr.begin(VOICE, MODEL)
        await asyncio.sleep(1.0)  # e.g. a thinking model: no text for a long time
        await stream.send_text("Finally an answer.")
        await stream.finish()
        pcm = await asyncio.wait_for(collect(stream), 5)
        assert pcm and stream.error is None and stream.gap_finishes >= 1
    finally:
        await mgr.close()


async def test_without_the_watchdog_the_server_fails_the_task(make_emulator: MakeEmulator) -> None:
    """Control for the two tests above: the emulator really enforces the gap."""
    emu = await make_emulator(cosyvoice_text_gap_s=0.3, **QUICK)
    mgr = manager(emu, text_gap_s=30)
    try:
        stream = await mgr.begin(VOICE, MODEL)
        await stream.send_text("Before a long pause. ")
        with pytest.raises(SynthesisError) as ei:
            await asyncio.wait_for(collect(stream), 5)
        assert "timeout" in ei.value.message
    finally:
        await mgr.close()


async def test_cancel_while_send_text_waits_for_a_retired_task(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(cosyvoice_speed=1.0)  # the early-finished task keeps talking
    mgr = manager(emu, text_gap_s=0.2)
    try:
        stream = await mgr.begin(VOICE, MODEL)
        await stream.send_text("A sentence long enough to keep the synthesizer busy for a while.")
        await wait_for(lambda: stream.gap_finishes == 1, 2)
        pending = asyncio.create_task(stream.send_text("More text."))  # waits for task-finished
        await asyncio.sleep(0.1)
        assert not pending.done()
        await stream.cancel()
        with pytest.raises(SynthesisError) as ei:
            await asyncio.wait_for(pending, 3)
        assert ei.value.code == "Cancelled"
        assert len(stream.task_ids) == 1  # no task was started for the cancelled stream
        _, pcm = await say(mgr, "Next turn.")
        assert pcm
    finally:
        await mgr.close()


async def test_close_ends_an_active_stream(make_emulator: MakeEmulator) -> None:
    emu = await make_emulator(cosyvoice_speed=1.0)
    mgr = manager(emu)
    stream = await mgr.begin(VOICE, MODEL)
    await stream.send_text("Talking while the daemon shuts down. " * 3)
    it = stream.audio().__aiter__()
    await asyncio.wait_for(it.__anext__(), 5)
    await asyncio.wait_for(mgr.close(), 3)
    assert [pcm async for pcm in it] == [] and stream.ended
    assert not mgr.connected
    with pytest.raises(SynthesisError):
        await mgr.begin(VOICE, MODEL)
