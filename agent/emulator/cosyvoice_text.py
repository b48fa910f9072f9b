"""Text handling of the emulated CosyVoice task: sentence segmentation and billing characters.

The service synthesizes each sentence as soon as it is complete and buffers the rest until more
text, a flush, or finish-task arrives (reference §4.4); `usage.characters` counts CJK ideographs
twice and everything else once, SSML tags not at all.
"""

from __future__ import annotations

import re

MAX_SENTENCE_CHARS = 300  # longer runs without punctuation are cut at a space (bounded work)

_TERMINATOR = re.compile(
    r"[.!?;…]+[\"')\]]*(?=\s)"  # western end punctuation followed by a space
    r"|[.!?;…]+[\"')\]]*$"  # ... or at the end of what has arrived so far
    r"|[。！？；]+[”’」』）]*"  # CJK end punctuation needs no space
    r"|\n+"
)
_SSML_TAG = re.compile(r"<[^>]*>")


def split_sentences(buffer: str) -> tuple[list[str], str]:
    """Complete sentences at the start of `buffer`, and the incomplete rest.

    A "." at the very end right after a digit is not an ending yet ("3." may become "3.5").
    Sentences keep their surrounding whitespace so that character counts add up exactly.
    """
    sentences: list[str] = []
    pos = 0
    for m in _TERMINATOR.finditer(buffer):
        at_end = m.end() == len(buffer) and m.group().startswith(".") and m.start() > 0
        if at_end and buffer[m.start() - 1].isdigit():
            break
        sentences.extend(_cut_long(buffer[pos : m.end()]))
        pos = m.end()
    pieces = _cut_long(buffer[pos:])
    return sentences + pieces[:-1], pieces[-1]


def _cut_long(text: str) -> list[str]:
    out = []
    while len(text) > MAX_SENTENCE_CHARS:
        cut = text.rfind(" ", 0, MAX_SENTENCE_CHARS)
        cut = cut + 1 if cut > 0 else MAX_SENTENCE_CHARS
        out.append(text[:cut])
        text = text[cut:]
    out.append(text)
    return out


def strip_ssml(text: str) -> str:
    return _SSML_TAG.sub("", text)


def billing_characters(text: str) -> int:
    """Characters as billed: CJK ideographs count 2, everything else 1."""
    return sum(2 if _is_cjk(ch) else 1 for ch in text)


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0xF900 <= cp <= 0xFAFF
        or 0x20000 <= cp <= 0x2FA1F
    )
