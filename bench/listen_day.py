"""A scripted day through the pure listening front end: seconds of audio sent upstream per mode.

Why a simulation: 24 hours of audio cannot be replayed in a benchmark that must finish in
minutes, but the front end is a pure state machine, so a day of 100 ms steps runs in seconds.
What it needs from the audio is measured, not assumed: per-step local-VAD verdicts come from
pymicro-vad run over real audio (room noise for the quiet hours, the synthetic TV corpus for the
evening), and spurious wakes in the evening are the engine's own detections on that corpus.

The service is modelled minimally: its VAD starts a turn when voiced audio arrives over an open
uplink and ends it after 0.8 s without voice; an answer then takes 1 s to start and 5 s to play.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.listen.frontend import (
    Action,
    CloseUplink,
    Commit,
    FrontendConfig,
    ListenFrontend,
    OpenUplink,
)

STEP_S = 0.1
STEP = int(16000 * STEP_S)
DAY_S = 24 * 3600
SILENCE_MS = 800  # the session's server_vad silence_duration_ms
THINK_S, ANSWER_S = 1.0, 5.0
QUESTION_S = 3.0


@dataclass(frozen=True)
class Request:
    at_s: float
    follow_up_question: bool = False


# Quiet room all day except a television from 19:00 to 23:00, and ten requests.
TV = (19 * 3600, 23 * 3600)
REQUESTS = tuple(
    Request(h * 3600 + m * 60, follow_up_question=(h == 18))
    for h, m in ((7, 5), (7, 20), (7, 45), (12, 30), (18, 0), (18, 40), (19, 30), (20, 15), (21, 50), (23, 10))
)


@dataclass
class DayResult:
    mode: str
    sent_s: float
    quiet_sent_s: float
    quiet_s: float
    turns: int  # user turns the service would have answered
    spurious_wakes: int

    def row(self) -> dict[str, float | int | str]:
        return {
            "mode": self.mode,
            "sent_s": round(self.sent_s, 1),
            "sent_s_per_hour": round(self.sent_s / 24, 1),
            "sent_pct_of_day": round(100 * self.sent_s / DAY_S, 2),
            "quiet_room_sent_pct": round(100 * self.quiet_sent_s / self.quiet_s, 3),
            "turns_answered": self.turns,
            "spurious_wakes": self.spurious_wakes,
        }


def simulate(
    mode: str,
    vad: bool,
    quiet_voiced: np.ndarray,
    tv_voiced: np.ndarray,
    tv_wake_steps: set[int],
    follow_up_s: float = 6.0,
) -> DayResult:
    """Run the day; `*_voiced` are per-step VAD verdicts looped over their hours."""
    fe = ListenFrontend(
        FrontendConfig(mode=mode, vad=vad, follow_up_s=follow_up_s, trailing_ms=SILENCE_MS + 300)  # type: ignore[arg-type]
    )
    zero = bytes(2 * STEP)
    n = int(DAY_S / STEP_S)
    user = np.zeros(n, dtype=bool)  # the user's own speech
    wakes: set[int] = set()
    talk: dict[int, str] = {}
    for r in REQUESTS:
        s = int(r.at_s / STEP_S)
        user[s : s + int(QUESTION_S / STEP_S)] = True
        wakes.add(s + 8)  # the wake word is heard 0.8 s into the utterance
        talk[s] = "start"
        talk[s + int((QUESTION_S + 0.2) / STEP_S)] = "stop"
        if r.follow_up_question:  # asked 1 s into the follow-up window after the answer
            f = s + int((QUESTION_S + SILENCE_MS / 1000 + THINK_S + ANSWER_S + 1.0) / STEP_S)
            user[f : f + int(QUESTION_S / STEP_S)] = True
    tv0, tv1 = int(TV[0] / STEP_S), int(TV[1] / STEP_S)
    fe.start()
    in_speech, last_voice, answer_at, answer_end = False, 0.0, None, None
    turns = spurious = 0
    sent_quiet = 0
    quiet_steps = 0
    for i in range(n):
        t = (i + 1) * STEP_S
        in_tv = tv0 <= i < tv1
        voiced = bool(user[i]) or bool(
            tv_voiced[(i - tv0) % tv_voiced.size] if in_tv else quiet_voiced[i % quiet_voiced.size]
        )
        speaking = answer_end is not None and answer_at is not None and answer_at <= t < answer_end
        before = fe.sent_samples
        actions: list[Action] = fe.chunk(zero, t, speaking=speaking, voiced=voiced if vad else None)
        if mode == "wake_word":
            if i in wakes:
                actions += fe.wake(_Det(fe.samples))
            elif in_tv and (i - tv0) % tv_voiced.size in tv_wake_steps:
                spurious += 1
                actions += fe.wake(_Det(fe.samples))
        if mode == "push_to_talk" and i in talk:
            actions += fe.talk_start(t) if talk[i] == "start" else fe.talk_stop(t)
        # the service: server VAD over what arrives (push_to_talk commits instead)
        if any(isinstance(a, Commit) for a in actions):
            turns += 1
            answer_at, answer_end = t + THINK_S, t + THINK_S + ANSWER_S
        if fe.uplink_open and mode != "push_to_talk":
            if voiced and not in_speech and not speaking:
                in_speech = True
                fe.speech_started(t)
            if voiced:
                last_voice = t
            elif in_speech and t - last_voice >= SILENCE_MS / 1000:
                in_speech = False
                turns += 1
                fe.turn_ended(t)
                answer_at, answer_end = t + THINK_S, t + THINK_S + ANSWER_S
        elif any(isinstance(a, (OpenUplink, CloseUplink)) for a in actions) and in_speech:
            in_speech = False
        if answer_end is not None and t >= answer_end:
            answer_at = answer_end = None
            fe.answer_finished(t)
        if not in_tv and not user[i]:
            quiet_steps += 1
            sent_quiet += fe.sent_samples - before
    quiet_s = quiet_steps * STEP_S
    return DayResult(
        mode + ("+vad" if vad else ""), fe.sent_s, sent_quiet / 16000, quiet_s, turns, spurious
    )


@dataclass(frozen=True)
class _Det:
    end_sample: int
    word: str = "okay_nabu"
    score: float = 0.9
