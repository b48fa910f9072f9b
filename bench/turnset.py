"""The labelled utterances for bench/turn.py (SPEC §9 turn-taking, issue 18 items 1–2).

Two kinds of mid-sentence pause, each a full set, plus short complete utterances in both:

- **clause**: the pause sits at a clause boundary, after a comma, often where the sentence could
  already end ("Play some music, … by the Beatles."): a listener may fairly take the turn there.
- **hesitation**: the pause sits inside a clause, where the words so far cannot end a sentence:
  after a preposition, an article, a verb, a filler ("set a timer for … ten minutes", "turn off
  the … kitchen light", "what's the weather in, um, … Paris"). This is how people hesitate while
  they think, and what SPEC §9 means by a mid-sentence pause: no listener would answer there.

A pause is made either by synthesizing each part alone ("clauses" style), or by synthesizing the
whole sentence at once and cutting it at the quietest 10 ms near the part boundary ("whole"), so
the words before the pause keep the sentence's intonation (a hesitation is never a clause said
alone). Pauses are drawn from 300–900 ms. The label is where the last part's speech really ends.

Voices: espeak-ng, flite and festival (bench/speechsynth.py), in rotation, plus hibari's neural
voice (US and British spelling-to-sound) on every sentence when `hibari-tts` is installed.
Sentences are numbered; `half(u)` splits the set by sentence (even: tune, odd: test), so a
rule's parameters are chosen without hearing any sentence they are reported on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import speechsynth as ss

RATE = ss.RATE
LEAD_S, TAIL_S = 0.5, 2.5
VOICES = (
    ("espeak", "en-us"), ("flite", "slt"), ("espeak", "en-gb+m3"), ("flite", "awb"),
    ("festival", "slt_hts"), ("espeak", "en-us+f3"), ("flite", "rms"), ("espeak", "en-029"),
)
NEURAL = tuple(("hibari", v) for v in ss.HIBARI_VOICES)
# Sentences in clauses: the user pauses after every clause but the last.
CLAUSE = (
    ("Could you turn the kitchen lights,", "off please."),
    ("What is the weather going to be like,", "in Berlin tomorrow?"),
    ("I would like to book a table,", "for four people tonight."),
    ("Set a timer for,", "twelve minutes."),
    ("Remind me to call my mother,", "when I get home."),
    ("Play some music,", "by the Beatles."),
    ("How long does it take to drive,", "from Paris to Lyon?"),
    ("Tell me a story about,", "a dragon and a knight."),
    ("Turn the volume up,", "a little bit."),
    ("What was the name of the actor,", "in that film,", "about the moon landing?"),
    ("Add eggs, milk,", "and bread to my shopping list."),
    ("Can you explain,", "how a rainbow forms?"),
    ("I need to know,", "what time the pharmacy closes."),
    ("Send a message to Anna,", "saying I will be late."),
    ("What is the capital,", "of Australia?"),
    ("Translate good morning,", "into Spanish."),
    ("Wake me up,", "at seven thirty tomorrow."),
    ("How many ounces,", "are in a pound?"),
    ("Switch off the heating,", "in the bedroom,", "at ten."),
    ("Who won the football match,", "last night?"),
)
# Hesitations: the pause comes where the words so far cannot end the sentence.
HESITATION = (
    ("Set a timer for", "ten minutes."),
    ("What's the weather in", "Paris tomorrow?"),
    ("Turn off the", "kitchen light."),
    ("Can you remind me to", "buy some milk?"),
    ("Play the new album by", "Taylor Swift."),
    ("How far is it from here to the", "nearest train station?"),
    ("Call my", "sister."),
    ("What is the", "square root of eighty one?"),
    ("Add", "tomatoes to the shopping list."),
    ("I want to listen to", "some jazz."),
    ("Who wrote the", "book about the", "white whale?"),
    ("Turn the heating up to", "twenty two degrees."),
    ("Tell me how to", "make pancakes."),
    ("What time does the", "supermarket close?"),
    ("Send a text to", "David."),
    ("Open the", "garage door."),
    ("What's the weather in, um,", "Paris tomorrow?"),
    ("Set an alarm for, uh,", "six thirty."),
    ("Play some, um,", "relaxing music."),
    ("How do you say thank you in", "Japanese?"),
    ("Is it going to", "rain this afternoon?"),
    ("Put the", "lights in the living room on."),
    ("Remind me at", "five o'clock to", "call the dentist."),
    ("Can you find a recipe for", "chocolate cake?"),
)
COMPLETE = ("What time is it?", "Stop.", "Yes please.", "Turn off the lights.", "Thank you.",
            "What's the weather?", "Louder.", "Good night.")
SETS = ("hesitation", "clause")


@dataclass(frozen=True)
class Utterance:
    name: str  # "engine/voice: text"
    audio: np.ndarray  # 16 kHz int16: lead silence, parts and pauses, tail silence
    end: int  # sample where the speech really ends (the label)
    pauses_ms: tuple[int, ...]
    pause_starts: tuple[int, ...] = ()  # samples where each mid-sentence pause begins
    sentence: int = 0  # index in its list (complete utterances: 100 + index)

    @property
    def voice(self) -> str:
        return self.name.split(":")[0]


def half(u: Utterance) -> str:
    """'tune' (even sentence number) or 'test' (odd): no sentence is in both halves."""
    return "tune" if u.sentence % 2 == 0 else "test"


def _trim(x: np.ndarray) -> np.ndarray:
    """Audio without the synthesizer's leading and trailing silence."""
    idx = np.nonzero(np.abs(x) > 300)[0]
    return x[idx[0] : idx[-1] + 1] if idx.size else x


def _gap_near(x: np.ndarray, at: int, span: int) -> int:
    """The quietest 10 ms point within `span` samples of `at` (a word boundary, or a closure)."""
    hop = RATE // 100
    lo, hi = max(hop, at - span), min(x.size - hop, at + span)
    best, where = float("inf"), at
    for c in range(lo, hi, hop // 2):
        e = float(np.mean(np.abs(x[c - hop : c + hop].astype(np.float64))))
        if e < best:
            best, where = e, c
    return where


def speak(parts: tuple[str, ...], engine: str, voice: str, cache: Path, whole: bool) -> list[np.ndarray]:
    """The parts' audio: each synthesized alone, or cut out of the whole sentence said at once.

    Cut out of one sentence, a part keeps the sentence's continuation intonation: the user
    stops mid-sentence instead of ending a sentence per part (which is what a model that hears
    prosody would, rightly, call complete). The cut is placed where the part's share of the
    sentence (measured on the parts said alone) ends, moved to the quietest point within 150 ms.
    """
    alone = [_trim(ss.synth(c, engine, voice, 1.0, cache)) for c in parts]
    if not whole:
        return alone
    full = _trim(ss.synth(" ".join(c.rstrip(",") for c in parts), engine, voice, 1.0, cache))
    total = sum(a.size for a in alone)
    cuts, acc = [0], 0
    for a in alone[:-1]:
        acc += a.size
        cuts.append(_gap_near(full, full.size * acc // total, RATE * 15 // 100))
    cuts.append(full.size)
    return [full[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def _voices(i: int, per_sentence: int, offset: int = 0) -> list[tuple[str, str]]:
    return [VOICES[(i + k * 3 + offset) % len(VOICES)] for k in range(per_sentence)] + list(NEURAL)


def build_set(kind: str, cache: Path, per_sentence: int = 4, whole: bool = True, seed: int = 18,
              sentences: int | None = None) -> list[Utterance]:
    """One labelled set ('hesitation' or 'clause'): every paused sentence in `per_sentence` rotating
    voices plus the neural ones, every complete sentence in 3 rotating voices plus the neural ones
    (the first `sentences` of each list only, for a smoke test)."""
    rng = np.random.default_rng(seed)
    out: list[Utterance] = []
    paused = HESITATION if kind == "hesitation" else CLAUSE
    for i, texts in enumerate(paused[:sentences]):
        for engine, voice in _voices(i, per_sentence):
            parts: list[np.ndarray] = [ss.silence(LEAD_S)]
            pauses, starts = [], []
            for j, audio in enumerate(speak(texts, engine, voice, cache, whole)):
                parts.append(audio)
                if j < len(texts) - 1:
                    starts.append(sum(p.size for p in parts))
                    pauses.append(int(rng.integers(300, 901)))
                    parts.append(ss.silence(pauses[-1] / 1000))
            end = sum(p.size for p in parts)
            parts.append(ss.silence(TAIL_S))
            name = f"{engine}/{voice}: {' '.join(texts)}"
            out.append(Utterance(name, np.concatenate(parts), end, tuple(pauses), tuple(starts), i))
    for i, text in enumerate(COMPLETE[:sentences]):
        for engine, voice in _voices(i, 3, offset=1):
            speech = _trim(ss.synth(text, engine, voice, 1.0, cache))
            audio = np.concatenate([ss.silence(LEAD_S), speech, ss.silence(TAIL_S)])
            out.append(Utterance(f"{engine}/{voice}: {text}", audio, int(LEAD_S * RATE) + speech.size,
                                 (), (), 100 + i))
    return out
