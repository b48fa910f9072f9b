"""The listening front end's decisions (SPEC §10), sample by sample, with time passed in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from agent.listen.frontend import (
    Action,
    CloseUplink,
    Commit,
    FrontendConfig,
    Interrupt,
    ListenFrontend,
    OpenUplink,
    PlayEarcon,
    SendAudio,
    Wake,
)

pytestmark = pytest.mark.unit

RATE = 16000
CHUNK = 640  # 40 ms


@dataclass(frozen=True)
class Det:
    word: str
    score: float
    end_sample: int


class Mic:
    """Feeds a numbered ramp of samples in 40 ms chunks, so sent audio can be located exactly."""

    def __init__(self, fe: ListenFrontend) -> None:
        self.fe = fe
        self.t = 0.0
        self.n = 0
        self.log: list[Action] = []

    def samples(self, start: int, stop: int) -> bytes:
        return (np.arange(start, stop) % 30000).astype(np.int16).tobytes()

    def run(self, seconds: float, speaking: bool = False, voiced: bool | None = None) -> list[Action]:
        out: list[Action] = []
        for _ in range(round(seconds * RATE / CHUNK)):
            pcm = self.samples(self.n, self.n + CHUNK)
            self.n += CHUNK
            self.t = self.n / RATE
            out += self.fe.chunk(pcm, self.t, speaking=speaking, voiced=voiced)
        self.log += out
        return out


def sent(actions: list[Action]) -> bytes:
    return b"".join(a.pcm for a in actions if isinstance(a, SendAudio))


def kinds(actions: list[Action]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, SendAudio)]


def make(**kw: object) -> tuple[ListenFrontend, Mic]:
    fe = ListenFrontend(FrontendConfig(**kw))  # type: ignore[arg-type]
    mic = Mic(fe)
    mic.log += fe.start()
    return fe, mic


def test_always_without_vad_streams_everything_as_before() -> None:
    fe, mic = make(mode="always")
    assert kinds(mic.log) == [OpenUplink]
    out = mic.run(2.0)
    assert sent(out) == mic.samples(0, mic.n)
    assert fe.uplink_open and fe.sent_s == pytest.approx(2.0)


def test_wake_word_mode_sends_nothing_without_a_detection() -> None:
    fe, mic = make(mode="wake_word")
    out = mic.run(30.0, voiced=True)
    assert out == [] and mic.log == []
    assert not fe.uplink_open and fe.sent_s == 0.0


def test_a_wake_opens_the_turn_with_preroll_before_the_wake_end_then_everything_after() -> None:
    fe, mic = make(mode="wake_word", preroll_ms=400)
    mic.run(3.0)
    end = mic.n - 1000  # the wake word ended 62.5 ms before the last chunk
    out = fe.wake(Det("okay_nabu", 0.93, end))
    assert out[0] == Wake("okay_nabu", 0.93)
    assert kinds(out) == [Wake, PlayEarcon, OpenUplink]
    assert PlayEarcon("wake") in out
    assert sent(out) == mic.samples(end - 6400, mic.n)
    more = mic.run(1.0)
    assert sent(more) == mic.samples(mic.n - RATE, mic.n)
    assert fe.wakes == 1 and fe.uplink_open


def test_turn_end_closes_and_follow_up_listens_without_the_wake_word_then_closes() -> None:
    fe, mic = make(mode="wake_word", follow_up_s=6)
    mic.run(1.0)
    fe.wake(Det("okay_nabu", 0.9, mic.n))
    mic.run(1.0)
    fe.speech_started(mic.t)
    mic.run(1.0)
    assert kinds(fe.turn_ended(mic.t)) == [CloseUplink]
    assert sent(mic.run(2.0, speaking=True)) == b""  # the answer plays; nothing goes up
    opened = fe.answer_finished(mic.t)
    assert kinds(opened) == [OpenUplink] and sent(opened) == b""  # no pre-roll: it is echo
    window = mic.run(5.96)
    assert sent(window) == mic.samples(mic.n - len(sent(window)) // 2, mic.n)
    assert len(sent(window)) // 2 == round(5.96 * RATE)
    closing = mic.run(0.2)
    assert kinds(closing) == [CloseUplink, PlayEarcon] and PlayEarcon("end") in closing
    assert not fe.uplink_open
    assert mic.run(5.0) == []


def test_speech_in_the_follow_up_window_keeps_the_turn_open_past_the_window() -> None:
    fe, mic = make(mode="wake_word", follow_up_s=2)
    fe.wake(Det("okay_nabu", 0.9, 0))
    fe.turn_ended(mic.t)
    fe.answer_finished(mic.t)
    mic.run(1.5)
    fe.speech_started(mic.t)
    out = mic.run(3.0)
    assert CloseUplink not in kinds(out) and len(sent(out)) == 3 * RATE * 2
    assert kinds(fe.turn_ended(mic.t)) == [CloseUplink]


def test_a_turn_opened_without_speech_ends_with_the_end_earcon() -> None:
    fe, mic = make(mode="wake_word", no_speech_s=4)
    mic.run(1.0)
    fe.wake(Det("okay_nabu", 0.9, mic.n))
    out = mic.run(4.0)
    assert kinds(out) == [CloseUplink, PlayEarcon]
    assert fe.turn is None and not fe.uplink_open


def test_stop_word_interrupts_while_speaking_in_every_mode() -> None:
    for mode in ("always", "wake_word", "push_to_talk"):
        fe, mic = make(mode=mode)
        mic.run(1.0, speaking=True)
        out = fe.wake(Det("okay_nabu", 0.95, mic.n))
        assert out[:2] == [Wake("okay_nabu", 0.95), Interrupt()], mode
    fe, mic = make(mode="wake_word")
    mic.run(1.0, speaking=False)
    assert Interrupt() not in fe.wake(Det("okay_nabu", 0.95, mic.n))


def test_stop_word_in_wake_word_mode_also_opens_a_turn_for_what_follows() -> None:
    fe, mic = make(mode="wake_word")
    fe.wake(Det("okay_nabu", 0.9, 0))
    fe.turn_ended(0.0)
    mic.run(2.0, speaking=True)
    out = fe.wake(Det("okay_nabu", 0.9, mic.n))
    assert kinds(out) == [Wake, Interrupt, PlayEarcon, OpenUplink]
    assert fe.uplink_open and fe.turn == "listening"


def test_push_to_talk_sends_between_start_and_stop_then_commits() -> None:
    fe, mic = make(mode="push_to_talk")
    assert mic.run(2.0) == []
    start = fe.talk_start(mic.t)
    assert kinds(start) == [OpenUplink] and sent(start) == b""
    first = mic.n
    talk = mic.run(1.6)
    assert sent(talk) == mic.samples(first, mic.n)
    stop = fe.talk_stop(mic.t)
    assert kinds(stop) == [CloseUplink, Commit]
    assert mic.run(1.0) == []
    assert fe.talk_stop(mic.t) == []  # a second release is a no-op
    assert fe.sent_s == pytest.approx(1.6)


def test_talk_start_while_the_assistant_speaks_interrupts_it() -> None:
    fe, mic = make(mode="push_to_talk")
    mic.run(0.4, speaking=True)
    assert kinds(fe.talk_start(mic.t)) == [Interrupt, OpenUplink]


def test_talk_stop_outside_push_to_talk_mode_leaves_the_commit_to_the_server_vad() -> None:
    fe, mic = make(mode="wake_word")
    fe.talk_start(0.0)
    mic.run(1.0)
    assert kinds(fe.talk_stop(mic.t)) == [CloseUplink]


def test_listen_opens_one_turn_with_preroll_in_wake_word_mode() -> None:
    fe, mic = make(mode="wake_word", preroll_ms=400)
    mic.run(2.0)
    out = fe.listen(mic.t)
    assert kinds(out) == [PlayEarcon, OpenUplink]
    assert sent(out) == mic.samples(mic.n - 6400, mic.n)
    assert fe.wakes == 0  # a button is not a wake word
    assert fe.listen(mic.t) == []  # already listening
    fe.turn_ended(mic.t)
    fe.answer_finished(mic.t)
    assert fe.turn == "follow_up"


def test_listen_in_push_to_talk_mode_ends_by_the_local_vad_and_commits() -> None:
    fe, mic = make(mode="push_to_talk", trailing_ms=600)
    out = fe.listen(mic.t)
    assert kinds(out) == [PlayEarcon, OpenUplink]
    mic.run(1.0, voiced=True)
    assert Commit not in kinds(mic.run(0.56, voiced=False))
    end = mic.run(0.08, voiced=False)
    assert kinds(end) == [CloseUplink, Commit]


def test_listen_in_push_to_talk_mode_without_speech_closes_without_commit() -> None:
    fe, mic = make(mode="push_to_talk", no_speech_s=3)
    fe.listen(0.0)
    out = mic.run(3.2, voiced=False)
    assert kinds(out) == [CloseUplink, PlayEarcon] and Commit not in kinds(out)


def test_listen_in_always_mode_does_not_reopen_the_stream() -> None:
    fe, mic = make(mode="always")
    mic.run(1.0)
    assert kinds(fe.listen(mic.t)) == [PlayEarcon]
    assert sent(mic.run(0.4)) == mic.samples(mic.n - 6400, mic.n)


def test_vad_gate_sends_speech_with_preroll_and_a_trailing_hangover() -> None:
    fe, mic = make(mode="always", vad=True, preroll_ms=400, trailing_ms=1100)
    assert mic.log == []
    assert mic.run(3.0, voiced=False) == []
    onset = mic.n
    out = mic.run(0.04, voiced=True)
    assert kinds(out) == [OpenUplink]
    assert sent(out) == mic.samples(onset - 6400, onset + CHUNK)
    mic.run(2.0, voiced=True)
    trailing = mic.run(1.08, voiced=False)
    assert kinds(trailing) == [] and len(sent(trailing)) == round(1.08 * RATE) * 2
    closing = mic.run(0.04, voiced=False)
    assert kinds(closing) == [CloseUplink] and sent(closing) == b""
    assert mic.run(5.0, voiced=False) == []
    assert fe.sent_s == pytest.approx(0.4 + 0.04 + 2.0 + 1.08)


def test_vad_gate_short_pause_inside_the_hangover_keeps_streaming() -> None:
    fe, mic = make(mode="always", vad=True, trailing_ms=1100)
    mic.run(1.0, voiced=True)
    mic.run(0.8, voiced=False)
    mic.run(1.0, voiced=True)
    assert kinds(mic.log) == [OpenUplink]


def test_the_preroll_ring_is_bounded() -> None:
    fe, mic = make(mode="wake_word", preroll_ms=400)
    mic.run(120.0)
    assert len(fe._ring) <= 4 * (400 + 2000) * RATE // 1000
    out = fe.wake(Det("okay_nabu", 0.9, 0))  # a detection older than the ring: what is left
    assert 0 < len(sent(out)) <= len(fe._ring)


def test_recent_audio_is_available_for_a_reconnect_inside_a_turn() -> None:
    fe, mic = make(mode="wake_word", preroll_ms=400)
    mic.run(5.0)
    assert fe.recent(400) == mic.samples(mic.n - 6400, mic.n)
    assert len(fe.recent(2400)) == 2 * 2400 * RATE // 1000  # pre-roll + 2 s always kept
    assert len(fe.recent(60_000)) <= 4 * (400 + 2000) * RATE // 1000  # and never much more


def test_earcons_can_be_switched_off() -> None:
    fe, mic = make(mode="wake_word", earcons=False)
    mic.run(1.0)
    out = fe.wake(Det("okay_nabu", 0.9, mic.n))
    assert not any(isinstance(a, PlayEarcon) for a in out)


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="listen.mode"):
        FrontendConfig(mode="sometimes")  # type: ignore[arg-type]


def test_a_held_wake_turn_opens_but_sends_nothing_until_released_then_the_question_and_all_after() -> None:
    fe, mic = make(mode="wake_word", preroll_ms=400, hold_wake=True)
    mic.run(3.0)
    end = mic.n - 1000
    out = fe.wake(Det("okay_nabu", 0.93, end))
    assert kinds(out) == [Wake, PlayEarcon, OpenUplink] and sent(out) == b""
    assert fe.holding == (end - 6400, end) and fe.uplink_open
    assert sent(mic.run(0.4)) == b"", "held: the question's start is not known yet"
    cut = end + 1600  # the question starts 100 ms after the detection
    released = fe.release(cut)
    assert sent(released) == mic.samples(cut, mic.n), "from the cut, the wake word left out"
    assert fe.holding is None
    assert sent(mic.run(1.0)) == mic.samples(mic.n - RATE, mic.n), "then every chunk as it comes"
    assert fe.sent_s == pytest.approx((mic.n - cut) / RATE)


def test_a_release_never_reaches_before_the_pre_roll_and_a_second_release_sends_nothing() -> None:
    fe, mic = make(mode="wake_word", preroll_ms=400, hold_wake=True)
    mic.run(2.0)
    fe.wake(Det("okay_nabu", 0.9, mic.n))
    assert sent(fe.release(0)) == mic.samples(mic.n - 6400, mic.n)
    assert fe.release(mic.n) == []


def test_a_held_turn_nobody_speaks_in_closes_on_its_time_out_having_sent_nothing() -> None:
    fe, mic = make(mode="wake_word", hold_wake=True, no_speech_s=4)
    mic.run(1.0)
    fe.wake(Det("okay_nabu", 0.9, mic.n))
    out = mic.run(4.2)
    assert any(isinstance(a, CloseUplink) for a in out)
    assert fe.holding is None and fe.sent_s == 0.0
    assert fe.release(mic.n) == [], "a late release of a closed turn sends nothing"


def test_the_wake_word_in_the_follow_up_window_is_not_held_the_audio_already_flows() -> None:
    fe, mic = make(mode="wake_word", hold_wake=True, follow_up_s=6)
    fe.wake(Det("okay_nabu", 0.9, 0))
    fe.release(0)
    fe.turn_ended(mic.t)
    fe.answer_finished(mic.t)
    mic.run(1.0)
    fe.wake(Det("okay_nabu", 0.9, mic.n))
    assert fe.holding is None and sent(mic.run(0.2)) != b""
