"""The e2e bench's scripted user, hesitating: each question with one mid-sentence pause.

    python bench/e2e.py --end-of-turn-local --paused --barge-every 0

The phrasebook questions (the emulator's espeak voice, as in benchkit.write_user_wav) are cut
where the user would hesitate — inside the clause, where the words so far cannot end the
question ("What can you … do?", "Tell me about … the moon.") — at the quietest 10 ms near
that word boundary, and 300–900 ms of silence is inserted (seeded, so every contender and
every run hears the same). A question's `end_s` is the end of its last word, after the pause.

A question is *cut* when the server created a response between the question's first and last
word (the probe's `response.created`): the contender committed the turn in the pause. That is
read from outside for every contender alike, without trusting the emulator's recognizer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from benchkit import ANSWER_ONSET_S, IN_RATE, OUT_RATE, PAUSE_S, PHRASES, TAIL_S, Phrase, Scenario
from turnset import _gap_near

# Where each phrasebook question is paused: after these words (no pause if absent).
HESITATE_AFTER = {
    "What's the weather like today?": "What's the weather like",
    "Tell me a joke.": "Tell me",
    "What time is it?": "What time",
    "Hello there.": "Hello",
    "Thank you very much.": "Thank you",
    "Tell me about the moon.": "Tell me about",
    "How are you doing?": "How are you",
    "Play some music.": "Play some",
    "What can you do?": "What can you",
    "Set a timer for five minutes.": "Set a timer for",
}
PAUSE_MS = (300, 900)


def paused_question(text: str, pause_ms: int) -> tuple[np.ndarray, int]:
    """`text` in the emulator's voice with `pause_ms` of silence at its hesitation point; and
    the sample where the pause begins (0 when the question has none)."""
    from agent.emulator.speech import synthesize

    full = synthesize(text, IN_RATE)
    prefix = HESITATE_AFTER.get(text)
    if prefix is None:
        return full, 0
    a = synthesize(prefix, IN_RATE).size
    b = synthesize(text[len(prefix):].strip(), IN_RATE).size
    at = _gap_near(full, full.size * a // (a + b), IN_RATE * 15 // 100)
    return np.concatenate([full[:at], np.zeros(pause_ms * IN_RATE // 1000, np.int16), full[at:]]), at


def plan(turns: int, seed: int = 18, lead_in_s: float = 1.5) -> tuple[Scenario, list[np.ndarray], list[int]]:
    """`turns` paused questions (cycling through the phrasebook), no barge-ins; their audio and
    pauses (ms). The spacing is benchkit.plan_scenario's, with each question longer by its pause."""
    from agent.emulator.answers import answer_for
    from agent.emulator.speech import synthesize

    rng = np.random.default_rng(seed)
    texts = [p for p in PHRASES if p in HESITATE_AFTER]
    phrases, audio, pauses = [], [], []
    t = lead_in_s
    for i in range(turns):
        text = texts[i % len(texts)]
        pauses.append(int(rng.integers(PAUSE_MS[0], PAUSE_MS[1] + 1)))
        pcm, _ = paused_question(text, pauses[-1])
        q_s = pcm.size / IN_RATE
        phrases.append(Phrase(round(t, 3), text, round(t + q_s, 3), False))
        audio.append(pcm)
        # the server's VAD may answer the first half: leave room for that answer too
        t += q_s + ANSWER_ONSET_S + 2 * len(synthesize(answer_for(text), OUT_RATE)) / OUT_RATE + PAUSE_S
    return Scenario(phrases, round(t + TAIL_S, 3), lead_in_s), audio, pauses


def write_wav(path: Path, scenario: Scenario, audio: list[np.ndarray]) -> None:
    """The paused questions at their times, as the 16 kHz WAV every contender hears."""
    from agent.audio.wav import write_wav as write

    pcm = np.zeros(int(scenario.total_s * IN_RATE), np.int16)
    for p, s in zip(scenario.phrases, audio, strict=True):
        i = int(p.at_s * IN_RATE)
        pcm[i : i + s.size] = s[: max(0, pcm.size - i)]
    write(path, pcm, IN_RATE)


def cut_questions(created: list[float], scenario: Scenario, t0: float) -> list[bool]:
    """Per question: did a response get created between its first and its last word?"""
    return [any(t0 + p.at_s < t < t0 + p.end_s for t in created) for p in scenario.phrases]
