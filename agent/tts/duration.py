"""How long CosyVoice may take to say a text: the length hint for the player (Player.expect).

Pipeline mode knows every word it hands to synthesis, so it knows roughly how long the answer
will be before the audio arrives. The player needs that only for a source slower than real
time, where the gap-free start hold grows with the answer's length (docs/audio.md). The hint
must not be short — a short hint is a gap, a long one a little more hold — so this is an
upper estimate: a slow speaking rate and generous pauses.

Rates (seconds): a CJK character (Han, kana, Hangul) 0.30 (CosyVoice speaks Mandarin at
about 4–5 characters a second, 0.20–0.25 s); a word of Latin, Cyrillic or similar letters
0.45 (≈ 133 words a minute; normal speech is 150–180); a digit 0.35 (read out, "2026" is four
words); a sentence end 0.5 and a clause break 0.25 of pause. Pure function, no I/O.
"""

from __future__ import annotations

import re

CJK_S = 0.30
WORD_S = 0.45
DIGIT_S = 0.35
SENTENCE_S = 0.50
CLAUSE_S = 0.25

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_DIGIT = re.compile(r"\d")
# A word: letters (not CJK, not digits), apostrophes and hyphens inside it.
_WORD = re.compile(r"[^\W\d_\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+"
                   r"(?:['’-][^\W\d_]+)*")
_SENTENCE = re.compile(r"[.!?。！？…]+")
_CLAUSE = re.compile(r"[,;:，；：、—]")


def speech_seconds(text: str) -> float:
    """An upper estimate of how long `text` takes to speak, in seconds (0.0 for no text)."""
    return (
        len(_CJK.findall(text)) * CJK_S
        + len(_WORD.findall(text)) * WORD_S
        + len(_DIGIT.findall(text)) * DIGIT_S
        + len(_SENTENCE.findall(text)) * SENTENCE_S
        + len(_CLAUSE.findall(text)) * CLAUSE_S
    )
