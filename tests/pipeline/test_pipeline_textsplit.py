"""Text for speech (agent.textsplit): markdown/emoji stripping and streaming piece splitting."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from agent.textsplit import (
    MarkdownStripper,
    SpeechChunker,
    SpeechSplitter,
    speech_pieces,
    strip_emoji,
)


def strip(chunks: list[str] | str) -> str:
    s = MarkdownStripper()
    if isinstance(chunks, str):
        chunks = [chunks]
    return "".join(s.feed(c) for c in chunks) + s.finish()


def random_splits(text: str, rng: random.Random, n: int) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), min(n, len(text) - 1)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# --- markdown ----------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("md", "spoken"),
    [
        ("Plain text, nothing to do.", "Plain text, nothing to do."),
        ("This is **bold**, *italic*, ***both*** and __under__.", "This is bold, italic, both and under."),
        ("Use `pip install x` now.", "Use pip install x now."),
        ("Use ``a ` b`` here", "Use a ` b here"),
        ("See [the docs](https://example.com/a_(b)) today.", "See the docs today."),
        ("A [reference][1] link.", "A reference link."),
        ("Look: ![a cat](cat.png) nice", "Look:  nice"),
        ("Visit <https://example.com>.", "Visit https://example.com."),
        ("Line<br>break and <b>tag</b>", "Line break and tag"),
        ("~~old~~ new", "old new"),
        ("snake_case_name stays", "snake_case_name stays"),
        ("2 * 3 = 6", "2 * 3 = 6"),
        ("about ~5 minutes", "about ~5 minutes"),
        (r"Not \*emphasis\*", "Not *emphasis*"),
        ("Great job 😀!", "Great job !"),  # the splitter drops the space before "!"
        ("Flags 🇯🇵 and family 👨‍👩‍👧 and ❤️ gone", "Flags  and family  and  gone"),
        ("C# and #hashtag stay", "C# and #hashtag stay"),
        ("3.14 is pi", "3.14 is pi"),
        ("x < y and y > z", "x < y and y > z"),
    ],
)
def test_inline_markdown(md: str, spoken: str) -> None:
    assert strip(md) == spoken


@pytest.mark.unit
def test_headings_lists_quotes_get_markers_removed_and_sentence_breaks() -> None:
    md = "# Title\n## Sub title\nSome text here\n\n- apples\n* pears:\n+ plums!\n1. first\n2) second\n> quoted line\n"
    assert strip(md) == "Title.\nSub title.\nSome text here.\napples.\npears:\nplums!\nfirst.\nsecond.\nquoted line."


@pytest.mark.unit
def test_plain_lines_wrapped_mid_sentence_get_no_period() -> None:
    assert strip("The answer is\nforty two.") == "The answer is\nforty two."
    assert strip("Paragraph one\n\nParagraph two") == "Paragraph one.\nParagraph two"


@pytest.mark.unit
def test_code_fences_are_skipped_entirely() -> None:
    md = "Run this:\n```python\nprint('hi **not bold**')\n# not a heading\n```\nThen relax.\n~~~\nmore code\n~~~\nDone."
    assert strip(md) == "Run this:\nThen relax.\nDone."


@pytest.mark.unit
def test_unclosed_fence_swallows_the_rest() -> None:
    assert strip("Before.\n```\ncode until the end\nstill code") == "Before.\n"


@pytest.mark.unit
def test_tables_and_rules() -> None:
    md = "| Name | Age |\n|------|:---:|\n| Ann | 31 |\n\n---\n***\nAfter"
    assert strip(md) == "Name, Age.\nAnn, 31.\nAfter"


@pytest.mark.unit
def test_emphasis_at_line_start_is_not_a_bullet() -> None:
    assert strip("**Note**: be careful") == "Note: be careful"
    assert strip("*a* b") == "a b"


@pytest.mark.unit
def test_unclosed_constructs_become_plain_text_at_line_end() -> None:
    assert strip("a [bracket without close\nnext") == "a [bracket without close\nnext"
    assert strip("odd `tick here") == "odd tick here"
    assert strip("see [x] there") == "see x there"


COMPLEX = (
    "## Summary\nHere is **the answer** with `code` and a [link](http://x.com) 😀!\n"
    "- first item\n- second *item*\n\n```python\nprint(\"hi\")\n```\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    "1. Step one\n2. Step two\nThat's all_folks, 2 * 3 = 6. ~~gone~~ <br> ![img](x.png) done\n"
    "> quote with __under__ and \\_escaped\\_\n### Last\n"
)


@pytest.mark.unit
def test_streaming_equals_whole_text_for_any_split() -> None:
    whole = strip(COMPLEX)
    assert strip(list(COMPLEX)) == whole  # one character at a time
    rng = random.Random(1234)
    for _ in range(300):
        assert strip(random_splits(COMPLEX, rng, rng.randint(1, 40))) == whole


@pytest.mark.unit
def test_streaming_holds_back_only_ambiguous_text() -> None:
    s = MarkdownStripper()
    assert s.feed("Hello **wor") == "Hello wor"
    assert s.feed("ld** and [a li") == "ld and "  # the link is held until it is complete
    assert s.feed("nk](http://x") == ""
    assert s.feed(") done") == "a link done"
    assert s.feed("\n``") == ""  # a fence may be starting
    assert s.feed("`py\nsecret\n`") == ".\n"  # the line before the code block ends a sentence
    assert s.feed("``\nafter") == "after"


@pytest.mark.unit
def test_finish_resets_for_the_next_answer() -> None:
    s = MarkdownStripper()
    s.feed("```\ncode")
    assert s.finish() == ""
    assert s.feed("fresh **start**") == "fresh start"


@pytest.mark.unit
def test_strip_emoji_keeps_text_symbols() -> None:
    assert strip_emoji("© 2024 ™ → ok 👍🏽") == "© 2024 ™ → ok "
    assert split_all(strip("Great job 😀! Thanks 🙏🏻.")) == ["Great job! ", "Thanks."]


# --- splitting ---------------------------------------------------------------------------------


def split_all(text: str, **kw: object) -> list[str]:
    sp = SpeechSplitter(**kw)  # type: ignore[arg-type]
    return sp.feed(text) + sp.flush()


@pytest.mark.unit
def test_sentence_boundaries() -> None:
    pieces = split_all("Hi! How are you? I am fine. Thanks")
    assert pieces == ["Hi! ", "How are you? ", "I am fine. ", "Thanks"]
    assert "".join(pieces) == "Hi! How are you? I am fine. Thanks"


@pytest.mark.unit
def test_sentence_end_needs_following_space() -> None:
    sp = SpeechSplitter()
    assert sp.feed("Pi is 3.") == []  # could be 3.14
    assert sp.feed("14. Next") == ["Pi is 3.14. "]
    assert sp.flush() == ["Next"]


@pytest.mark.unit
def test_cjk_sentence_punctuation_cuts_immediately() -> None:
    assert split_all("床前明月光。疑是地上霜！举头望明月？低头") == ["床前明月光。", "疑是地上霜！", "举头望明月？", "低头"]


@pytest.mark.unit
def test_closing_quotes_stay_with_their_sentence() -> None:
    assert split_all('He said "stop." Then left.') == ['He said "stop." ', "Then left."]


@pytest.mark.unit
def test_clause_punctuation_only_once_the_piece_is_long_enough() -> None:
    assert split_all("Yes, sure, fine.") == ["Yes, sure, fine."]
    pieces = split_all("When the weather is nice, we walk; otherwise we read: books mostly")
    assert pieces == ["When the weather is nice, ", "we walk; otherwise we read: ", "books mostly"]
    assert split_all("这是一个比较长的中文句子内容测试用的文字，后面还有") == ["这是一个比较长的中文句子内容测试用的文字，", "后面还有"]


@pytest.mark.unit
def test_size_bound_cuts_at_a_word_boundary() -> None:
    text = " ".join(["word"] * 60)  # 299 chars, no punctuation
    pieces = split_all(text, max_chars=50)
    assert "".join(pieces) == text
    assert all(len(p) <= 50 for p in pieces)
    assert all(p.endswith("word ") for p in pieces[:-1])
    cjk = "字" * 130
    assert [len(p) for p in split_all(cjk, max_chars=60)] == [60, 60, 10]


@pytest.mark.unit
def test_newlines_cut_and_become_spaces() -> None:
    assert split_all("Title.\nfirst item.\nlast") == ["Title. ", "first item. ", "last"]
    assert split_all("a\n\n\nb") == ["a ", "b"]


@pytest.mark.unit
def test_punctuation_only_piece_merges_with_the_next() -> None:
    sp = SpeechSplitter()
    assert sp.feed("Summary") == []
    assert sp.feed(".\n") == ["Summary. "]
    sp2 = SpeechSplitter()
    assert sp2.feed("... ") == []
    assert sp2.feed("Well. ") == ["... Well. "]
    assert SpeechSplitter().flush() == []
    sp3 = SpeechSplitter()
    sp3.feed("!!! ")
    assert sp3.flush() == []  # nothing speakable at all


@pytest.mark.unit
def test_time_bound_flushes_at_last_word_boundary() -> None:
    clock = FakeClock()
    sp = SpeechSplitter(max_wait_s=0.3, clock=clock)
    assert sp.deadline() is None
    assert sp.feed("The quick brown fo") == []
    assert sp.deadline() == pytest.approx(100.3)
    clock.t += 0.29
    assert sp.poll() == []
    clock.t += 0.02
    assert sp.poll() == ["The quick brown "]
    assert sp.deadline() == pytest.approx(clock.t + 0.3)  # the partial word waits again
    assert sp.feed("x jumps.") == []
    assert sp.feed(" Over") == ["fox jumps. "]
    assert sp.flush() == ["Over"]
    assert sp.deadline() is None


@pytest.mark.unit
def test_time_bound_never_cuts_a_single_word() -> None:
    clock = FakeClock()
    sp = SpeechSplitter(clock=clock)
    sp.feed("Supercalifragilistic")
    clock.t += 5
    assert sp.poll() == []
    assert sp.flush() == ["Supercalifragilistic"]


@pytest.mark.unit
def test_time_bound_flushes_cjk_without_spaces() -> None:
    clock = FakeClock()
    sp = SpeechSplitter(clock=clock)
    sp.feed("今天天气")
    clock.t += 0.5
    assert sp.poll() == ["今天天气"]
    assert sp.deadline() is None


@pytest.mark.unit
def test_pieces_concatenate_to_the_normalized_text() -> None:
    text = "One.  Two,   three;\tfour: five six seven eight nine ten eleven twelve. " * 5
    rng = random.Random(7)
    for _ in range(50):
        sp = SpeechSplitter(clause_min=10, max_chars=40)
        pieces: list[str] = []
        for part in random_splits(text, rng, 30):
            pieces += sp.feed(part)
        pieces += sp.flush()
        assert "".join(pieces).rstrip() == " ".join(text.split())
        assert all(p.strip() for p in pieces)


@pytest.mark.unit
def test_chunker_first_piece_comes_before_the_answer_ends() -> None:
    ch = SpeechChunker()
    assert ch.feed("**Sure!** Here") == ["Sure! "]
    out = ch.feed(" is a list:\n- one\n- two")
    assert out == ["Here is a list: ", "one. "]
    assert ch.flush() == ["two."]


@pytest.mark.unit
def test_chunker_skips_code_blocks_in_stream() -> None:
    ch = SpeechChunker()
    pieces: list[str] = []
    for d in ["Try this", ":\n``", "`sh\nrm -rf /tmp/x\n", "```\nIt cleans up", "."]:
        pieces += ch.feed(d)
    pieces += ch.flush()
    assert "".join(pieces) == "Try this: It cleans up."
    assert not any("rm" in p for p in pieces)


# --- async driver ------------------------------------------------------------------------------


async def gen(items: list[tuple[float, str]]) -> AsyncIterator[str]:
    for delay, text in items:
        await asyncio.sleep(delay)
        yield text


async def test_speech_pieces_applies_time_bound_while_source_is_silent() -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    got: list[tuple[float, str]] = []
    chunker = SpeechChunker(SpeechSplitter(max_wait_s=0.05))
    async for piece in speech_pieces(gen([(0, "Hello there my fri"), (0.4, "end. Bye")]), chunker):
        got.append((loop.time() - t0, piece))
    assert [p for _, p in got] == ["Hello there my ", "friend. ", "Bye"]
    assert got[0][0] < 0.3  # flushed by the time bound, long before the next delta


async def test_speech_pieces_cancels_source_when_consumer_stops() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            yield "First sentence. "
            await asyncio.sleep(10)
            yield "never"
        finally:
            closed.set()

    agen = speech_pieces(source())
    assert await agen.__anext__() == "First sentence. "
    task = asyncio.ensure_future(agen.__anext__())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(closed.wait(), 1)
