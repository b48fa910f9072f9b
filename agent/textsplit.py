"""Turn a stream of LLM text deltas into speakable pieces for the synthesis task.

Two stages, both streaming (a construct split across deltas is handled) and both pure:

1. `MarkdownStripper` removes what must not be read aloud: fenced code blocks are skipped entirely
   (nothing is said for them), headings / list bullets / numbered-list markers / block quotes /
   table pipes / horizontal rules lose their markers, emphasis markers (``*``, ``**``, ``__``,
   ``~~``) and inline-code backticks disappear (their text stays), links become their text, images
   and emoji disappear. Where a marked line (heading, list item, table row) or a paragraph ends
   without punctuation it adds a period, so the synthesizer hears a sentence boundary instead of
   running "Summary The answer is…" together.
2. `SpeechSplitter` cuts the clean text into pieces as early as it sensibly can, because the first
   audio must never wait for the whole answer: at sentence ends (``.!?`` + whitespace, ``。！？``),
   at line breaks, at clause punctuation (``,;:，；：、``) once the piece is ``clause_min`` long, at
   ``max_chars`` (last word boundary), and — when the LLM pauses — once text has been pending for
   ``max_wait_s`` (flushed up to the last word boundary, so no word is cut in half).

Pieces keep the space that separates them from the next piece (the server concatenates the text
of continue-task messages verbatim). `SpeechChunker` chains the two stages; `speech_pieces` drives
one from an async iterator of deltas and applies the time bound while the LLM is silent.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable

from agent.markdown_strip import (
    CLOSERS,
    SPACE_BEFORE_PUNCT,
    MarkdownStripper,
    is_cjk,
    speakable,
    strip_emoji,
)

__all__ = ["MarkdownStripper", "SpeechChunker", "SpeechSplitter", "speech_pieces", "strip_emoji"]

class SpeechSplitter:
    """Cut plain text into pieces at sentence/clause boundaries, a size bound or a time bound."""

    def __init__(
        self,
        *,
        clause_min: int = 20,
        max_chars: int = 120,
        max_wait_s: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clause_min = clause_min
        self.max_chars = max_chars
        self.max_wait_s = max_wait_s
        self.clock = clock
        self._pending = ""
        self._since: float | None = None  # when the oldest unsent speakable text arrived
        self._ends_with_space = True  # the last piece ended at whitespace

    def feed(self, text: str) -> list[str]:
        if text:
            self._pending += text
            if self._since is None and speakable(self._pending):
                self._since = self.clock()
        return self._cut()

    def deadline(self) -> float | None:
        """Clock time at which `poll()` will flush pending text (None: nothing pending)."""
        return None if self._since is None else self._since + self.max_wait_s

    def poll(self) -> list[str]:
        """Apply the time bound: text pending for `max_wait_s` goes out up to the last word."""
        if self._since is None or self.clock() - self._since < self.max_wait_s:
            return []
        text = self._pending
        cut = max(text.rfind(" "), text.rfind("\n"), text.rfind("\t")) + 1
        if any(is_cjk(ch) for ch in text[cut:]):
            cut = len(text)  # no spaces between CJK words: everything is a boundary
        pieces = self._take(cut) if speakable(text[:cut]) else []
        if speakable(self._pending):
            self._since = self.clock()
        return pieces

    def flush(self) -> list[str]:
        """End of the answer: everything left goes out."""
        pieces = self._take(len(self._pending), final=True)
        self._pending, self._since = "", None
        return pieces

    def _cut(self) -> list[str]:
        pieces: list[str] = []
        start = 0
        while True:
            cut = self._next_cut(self._pending, start)
            if cut is None:
                return pieces
            if not speakable(self._pending[:cut]):
                start = cut  # punctuation alone: merge it into the next piece
                continue
            pieces += self._take(cut)
            start = 0

    def _next_cut(self, text: str, start: int) -> int | None:
        n = len(text)
        i = start
        while i < n:
            c = text[i]
            if c == "\n":
                return i + 1
            if c in "。！？":
                return self._after_closers(text, i + 1)
            if c in ".!?…":
                j = i + 1
                while j < n and text[j] in ".!?…":
                    j += 1
                j = self._after_closers(text, j)
                if j < n and text[j].isspace():
                    return j + 1
                i = j
                continue
            if i + 1 >= self.clause_min:
                if c in ",;:":
                    j = self._after_closers(text, i + 1)
                    if j < n and text[j].isspace():
                        return j + 1
                elif c in "，；：、":
                    return self._after_closers(text, i + 1)
            if i + 1 >= self.max_chars:
                ws = max(text.rfind(" ", 0, i + 1), text.rfind("\t", 0, i + 1))
                if ws > 0 and not is_cjk(c):
                    return ws + 1
                return i + 1
            i += 1
        return None

    @staticmethod
    def _after_closers(text: str, j: int) -> int:
        while j < len(text) and text[j] in CLOSERS:
            j += 1
        return j

    def _take(self, cut: int, final: bool = False) -> list[str]:
        raw, self._pending = self._pending[:cut], self._pending[cut:]
        self._since = self.clock() if speakable(self._pending) else None
        piece = SPACE_BEFORE_PUNCT.sub("", re.sub(r"\s+", " ", raw))
        if self._ends_with_space:
            piece = piece.lstrip(" ")
        if not piece.strip() or (final and not speakable(piece)):
            return []
        self._ends_with_space = piece.endswith(" ")
        return [piece]


class SpeechChunker:
    """Markdown stripping + splitting: LLM deltas in, speakable pieces out."""

    def __init__(self, splitter: SpeechSplitter | None = None) -> None:
        self.stripper = MarkdownStripper()
        self.splitter = splitter or SpeechSplitter()

    @property
    def clock(self) -> Callable[[], float]:
        return self.splitter.clock

    def feed(self, delta: str) -> list[str]:
        return self.splitter.feed(self.stripper.feed(delta))

    def deadline(self) -> float | None:
        return self.splitter.deadline()

    def poll(self) -> list[str]:
        return self.splitter.poll()

    def flush(self) -> list[str]:
        return self.splitter.feed(self.stripper.finish()) + self.splitter.flush()


async def speech_pieces(
    deltas: AsyncIterable[str], chunker: SpeechChunker | None = None
) -> AsyncIterator[str]:
    """Yield speakable pieces from `deltas`, flushing on the time bound while the source is silent.

    The pending `__anext__` is kept across timeouts (cancelling it would end an async generator).
    If the consumer stops early, the pending read is cancelled, which lets an LLM stream close its
    HTTP response at once (barge-in).
    """
    chunker = chunker or SpeechChunker()
    it = deltas.__aiter__()
    pending: asyncio.Future[str] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            deadline = chunker.deadline()
            timeout = None if deadline is None else max(0.0, deadline - chunker.clock())
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if not done:
                for piece in chunker.poll():
                    yield piece
                continue
            fut, pending = pending, None
            try:
                delta = fut.result()
            except StopAsyncIteration:
                break
            for piece in chunker.feed(delta):
                yield piece
        for piece in chunker.flush():
            yield piece
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            try:
                await pending
            except (asyncio.CancelledError, StopAsyncIteration):
                pass
