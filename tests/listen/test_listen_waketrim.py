"""The cut of a manual wake turn (agent/listen/waketrim.py): frames of VAD verdicts in, the sample
the question's audio starts at out. Frames are 20 ms (320 samples); the pre-roll starts at 0."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from agent.listen.frontend import FrontendConfig, ListenFrontend, SendAudio
from agent.listen.waketrim import Cut, TrimConfig, WakeCut, WakeTrim

pytestmark = pytest.mark.unit

F = 320  # one 20 ms frame


@dataclass(frozen=True)
class Det:
    end_sample: int
    word: str = "okay_nabu"
    score: float = 0.9


def cut_of(pattern: str, wake_frame: int, start: int = 0) -> Cut | None:
    """Feed '#' (speech) / '.' frames; the detection at the end of frame `wake_frame` - 1."""
    rule = WakeTrim(start, start + wake_frame * F)
    for c in pattern:
        got = rule.feed(c == "#")
        if got is not None:
            assert rule.cut == got
            return got
    return None


def test_a_pause_after_the_wake_word_cuts_just_before_the_question_never_inside_the_word() -> None:
    # 400 ms pre-roll: the wake word's tail to frame 14, detection at 20, question from 24.
    got = cut_of("#" * 14 + "." * 10 + "#" * 20, wake_frame=20)
    assert got == Cut(24 * F - 960, "gap"), "pad_ms (60) before the onset"
    assert got.sample >= 14 * F, "not a sample of the wake word"


def test_the_pad_never_reaches_back_into_the_wake_word() -> None:
    got = cut_of("#" * 18 + "." * 2 + "#" * 20, wake_frame=20)  # a 40 ms visible gap
    assert got == Cut(18 * F, "gap"), "the cut is where the silence began"


def test_a_question_begun_before_the_detection_was_reported_is_kept_whole() -> None:
    # The detector fired 200 ms after the word ended; the question began 100 ms before that.
    got = cut_of("#" * 10 + "...." + "#" * 20, wake_frame=19)
    assert got == Cut(14 * F - 960, "gap"), "the onset 100 ms before the detection, less the pad"


def test_pauses_well_before_the_detection_are_inside_the_wake_word_and_do_not_cut() -> None:
    # "okay ... nabu": a pause 360-300 ms before the detection (lookback 250 ms), then run-on.
    pattern = "#" * 5 + "..." + "#" * 40
    got = cut_of(pattern, wake_frame=23)
    assert got is not None and got.reason == "run_on", got


def test_a_long_pause_waits_for_the_question_however_late_it_comes() -> None:
    got = cut_of("#" * 14 + "." * 200 + "#" * 5, wake_frame=20)
    assert got == Cut((214 * F) - 960, "gap"), "four seconds of waiting still cut at the onset"


def test_running_straight_on_cuts_at_the_estimated_end_of_the_word_once_run_on_ms_has_passed() -> None:
    cfg = TrimConfig()
    rule = WakeTrim(0, 20 * F, cfg)
    got = None
    frames = 0
    while got is None and frames < 100:
        got = rule.feed(True)
        frames += 1
    assert frames * F == 20 * F + cfg.run_on_ms * 16, "decided run_on_ms after the detection"
    assert got == Cut(20 * F - cfg.run_on_back_ms * 16, "run_on")


def test_the_cut_is_never_before_the_first_sample_fed() -> None:
    # No pre-roll (listen.preroll_ms: 0): the rule starts at the detection itself.
    got = cut_of("#" * 40, wake_frame=0, start=5000)
    assert got == Cut(5000, "run_on")
    got = cut_of("..." + "#" * 5, wake_frame=0, start=5000)
    assert got == Cut(5000, "gap")


def test_one_cut_per_turn_then_nothing() -> None:
    rule = WakeTrim(0, 10 * F)
    out = [rule.feed(c == "#") for c in "#" * 10 + "..." + "#" * 5 + "..." + "#" * 5]
    assert [c for c in out if c is not None] == [Cut(10 * F, "gap")]


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        TrimConfig(min_gap_ms=10)
    with pytest.raises(ValueError):
        TrimConfig(pad_ms=-1)


class LevelVad:
    """Speech = a frame louder than -30 dBFS (the test's "speech" is a loud tone)."""

    def __call__(self, pcm: bytes) -> bool:
        return int(np.abs(np.frombuffer(pcm, np.int16)).max(initial=0)) > 1000

    def reset(self) -> None:
        pass


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


@pytest.mark.parametrize("gap_s", [0.1, 0.3, 1.5])
def test_the_front_end_sends_a_held_wake_turn_from_just_before_the_question(gap_s: float) -> None:
    """Wake word (a tone) ends, the detector reports it 120 ms later, a gap, the question."""
    fe = ListenFrontend(FrontendConfig(mode="wake_word", preroll_ms=400, hold_wake=True))
    cut = WakeCut(LevelVad())
    wake_end, q_start = 16000 + 12800, 16000 + 12800 + int(gap_s * 16000)
    mic = np.concatenate([np.zeros(16000, np.int16), tone(0.8), np.zeros(int(gap_s * 16000), np.int16),
                          tone(1.0), np.zeros(8000, np.int16)])
    detection = wake_end + 1920
    sent: list[bytes] = []
    for i in range(0, len(mic) - 639, 640):
        out = fe.chunk(mic[i : i + 640].tobytes(), (i + 640) / 16000)
        if i < detection <= i + 640:
            out += fe.wake(Det(detection))
        out += cut.chunk(fe)
        sent += [a.pcm for a in out if isinstance(a, SendAudio)]
    up = np.frombuffer(b"".join(sent), np.int16)
    first = len(mic) - len(up)  # everything after the cut went up, in order
    assert np.array_equal(up, mic[first:]), "one contiguous stretch, ending with the microphone"
    assert wake_end <= first <= q_start, "none of the wake word, all of the question"
    assert q_start - first <= 960, "at most pad_ms of silence before the question"
    assert cut.cuts == {"gap": 1, "run_on": 0}


def test_a_question_run_into_the_wake_word_is_cut_run_on_ms_after_the_detection() -> None:
    fe = ListenFrontend(FrontendConfig(mode="wake_word", preroll_ms=400, hold_wake=True))
    cut = WakeCut(LevelVad())
    mic = np.concatenate([np.zeros(16000, np.int16), tone(2.0)])
    detection = 16000 + 12800
    released_at = None
    for i in range(0, len(mic) - 639, 640):
        out = fe.chunk(mic[i : i + 640].tobytes(), (i + 640) / 16000)
        if i < detection <= i + 640:
            out += fe.wake(Det(detection))
        out += cut.chunk(fe)
        if released_at is None and any(isinstance(a, SendAudio) for a in out):
            released_at = i + 640
            first = released_at - sum(len(a.pcm) for a in out if isinstance(a, SendAudio)) // 2
    assert released_at is not None and released_at - detection <= 300 * 16 + 640
    assert first == detection - TrimConfig().run_on_back_ms * 16
    assert cut.cuts == {"gap": 0, "run_on": 1}
