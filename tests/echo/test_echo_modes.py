"""The four `audio.echo` modes end to end in a simulated room (tests/echo/room.py).

The real Player and Microphone run on a virtual clock; whatever a mode sends upstream is judged
by the emulator's own server VAD: a `speech_started` while nobody speaks is a self-interruption.
The `none` case shows that the room is loud enough for these tests to fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.echo import WARMUP_S, aec_problem, make_echo_filter
from agent.echo.filters import HALF_DUPLEX_TAIL_S
from agent.emulator.answers import answer_for
from agent.emulator.speech import synthesize
from tests.echo.room import MIC_RATE, Room, room_response

pytestmark = pytest.mark.unit

ANSWER = "weather"  # ~9.8 s
USER = "stop please, what time is it"
needs_aec = pytest.mark.skipif(
    aec_problem() is not None, reason=f"audio.echo aec unavailable: {aec_problem()}"
)


@pytest.fixture(scope="module")
def answer() -> np.ndarray:
    return synthesize(answer_for(ANSWER), 24000)


@pytest.fixture(scope="module")
def user() -> np.ndarray:
    return synthesize(USER, MIC_RATE)


async def talk(mode: str, answer: np.ndarray, user: np.ndarray | None = None, user_at: float = 0.0,
               user_gain: float = 1.0, **room_kw) -> tuple[Room, list[float], dict]:
    """Two answers back to back (the first teaches the gate the room), the user optionally
    speaking during the second; returns the room, the VAD's speech starts and the summary."""
    room = Room(**room_kw)
    filt = make_echo_filter(mode, room.player, 40, clock=room.clock)
    try:
        await room.run(0.5, filt)
        room.play("first", answer[: 5 * 24000])
        await room.run(6.0, filt)
        if user is not None:
            room.say(user_at, user, user_gain)
        room.play("second", answer)
        await room.run(11.5, filt)
    finally:
        filt.close()
    return room, room.vad_starts(), filt.summary()


async def test_none_lets_the_assistant_interrupt_itself(answer) -> None:
    _, starts, _ = await talk("none", answer)
    assert starts, "the room is too quiet to test echo handling"


@pytest.mark.parametrize("mode", ["half_duplex", "gate", pytest.param("aec", marks=needs_aec)])
@pytest.mark.parametrize(
    "room_kw",
    [{}, {"echo_gain": 3.0}, {"rir": room_response(0.6)}, {"out_latency": 0.07, "reported_out_latency": 0.04}],
    ids=["room", "loud-echo", "reverberant", "latency-under-reported"],
)
async def test_no_self_interruption(mode: str, room_kw: dict, answer) -> None:
    _, starts, summary = await talk(mode, answer, **room_kw)
    assert starts == [], f"{mode} let its own echo through: {summary}"


@pytest.mark.parametrize("mode", ["gate", pytest.param("aec", marks=needs_aec)])
@pytest.mark.parametrize("user_at", [9.3, 11.7])
async def test_a_user_at_normal_level_barges_in(mode: str, user_at: float, answer, user) -> None:
    _, starts, summary = await talk(mode, answer, user, user_at)
    assert starts, f"the user was not let through: {summary}"
    assert user_at - 0.05 <= starts[0] < user_at + user.shape[0] / MIC_RATE, (starts, summary)


async def test_half_duplex_hears_nobody_during_playback_then_everyone(answer, user) -> None:
    room, starts, _ = await talk("half_duplex", answer, user, 9.3)
    assert starts == []  # talking over the answer does nothing (no barge-in by voice)
    sent = room.sent()
    times = np.array(room.chunk_times)
    second = room.player.response_stats("second")
    assert second is not None and second.output_end is not None
    held = (times > 7.0) & (times < second.output_end + HALF_DUPLEX_TAIL_S)
    chunks = np.array_split(sent, len(room.upstream))
    assert all(not c.any() for c, h in zip(chunks, held, strict=True) if h), "audio during playback"
    # After the tail the microphone is open again: the user is heard.
    room.say(room.clock.t + 0.5, user)
    filt = make_echo_filter("half_duplex", room.player, 40, clock=room.clock)
    await room.run(3.0, filt)
    assert room.vad_starts()


async def test_gate_warm_up_ignores_a_barge_in_at_the_very_start(answer, user) -> None:
    # The user talks (loudly) over the first second of the answer: nothing gets through then.
    room, starts, _ = await talk("gate", answer, user, 6.5, user_gain=2.0)
    second = room.player.response_stats("second")
    assert second is not None and second.first_audible is not None
    assert all(t >= second.first_audible + WARMUP_S - 0.05 for t in starts), starts
    # Without the warm-up the same user would have been let through at once.
    assert room.user[int(6.5 * MIC_RATE) : int((second.first_audible + WARMUP_S) * MIC_RATE)].any()


@needs_aec
async def test_aec_reports_its_erle_and_cpu(answer) -> None:
    _, _, summary = await talk("aec", answer, rir=np.array([1.0, 0.0, 0.3]))
    assert summary["erle_db"] > 25 and summary["erle_over_s"] > 3, summary
    assert 0 < summary["cpu_ms_per_s"] < 200, summary
