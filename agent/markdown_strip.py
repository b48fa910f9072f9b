"""Markdown out of streamed LLM text: what must not be read aloud is removed as it streams.

Stage 1 of `agent.textsplit` (see there): `MarkdownStripper` plus the character classes the
splitter shares (`CLOSERS`, `SPACE_BEFORE_PUNCT`, `is_cjk`, `speakable`).
"""

from __future__ import annotations

import re

# Emoji and pictographs (incl. flags, skin tones, keycaps, ZWJ and variation selectors, tags).
_EMOJI_RE = re.compile(
    "["
    "\U0001f000-\U0001faff"
    "\u2600-\u27bf"
    "\u231a\u231b\u23e9-\u23f3\u23f8-\u23fa"
    "\u2b05-\u2b07\u2b1b\u2b1c\u2b50\u2b55"
    "\u200d\ufe0e\ufe0f\u20e3"
    "\U000e0020-\U000e007f"
    "]+"
)
_TERMINATORS = set(".!?…。！？:;,：；，、")
CLOSERS = set("\"')]}”’」』）】》")
_ASCII_PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_LINK_HOLD_LIMIT = 300  # an unclosed "[" or "<" longer than this is plain text, not a link/tag

SPACE_BEFORE_PUNCT = re.compile(r" +(?=[.,!?;:…。！？，；：、])")  # "job 😀!" → "job !" → "job!"
_HR_RE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TABLE_SEP_RE = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")
_BULLET_RE = re.compile(r"[-*+][ \t]+")
_NUMBER_RE = re.compile(r"\d{1,3}[.)][ \t]+")
_HEADING_RE = re.compile(r"#{1,6}(?:[ \t]+|$)")
_TAG_RE = re.compile(r"</?[A-Za-z][^<>\n]*>")


def strip_emoji(text: str) -> str:
    return _EMOJI_RE.sub("", text)


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x3040 <= o <= 0x30FF  # kana
        or 0x3400 <= o <= 0x4DBF
        or 0x4E00 <= o <= 0x9FFF
        or 0xF900 <= o <= 0xFAFF
        or 0xAC00 <= o <= 0xD7AF  # hangul
        or 0x20000 <= o <= 0x2FA1F
    )


def speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


class MarkdownStripper:
    """Streaming markdown → plain text; `feed()` returns the text that is final so far."""

    def __init__(self) -> None:
        self._buf = ""
        self._line_start = True
        self._fence: str | None = None  # "```" or "~~~" while inside a fenced block
        self._pending_break = False  # a line with text ended; its separator is not out yet
        self._prev_unterminated = False
        self._prev_marked = False
        self._cur_marked = False
        self._cur_last = ""  # last non-space character emitted on the current line
        self._prev_raw = " "  # last raw character consumed (underscore-emphasis rule)

    def feed(self, text: str) -> str:
        self._buf += text
        return self._process(final=False)

    def finish(self) -> str:
        out = self._process(final=True)
        self._buf = ""
        if self._pending_break and self._prev_unterminated:
            out += "."
        elif not self._line_start and self._cur_marked and self._cur_last not in _TERMINATORS:
            out += "." if self._cur_last else ""
        self.__init__()  # type: ignore[misc]  # ready for the next answer
        return out

    # -- line level -----------------------------------------------------------------------------

    def _process(self, final: bool) -> str:
        out: list[str] = []
        while self._buf:
            if self._fence is not None:
                if not self._skip_fenced(final):
                    break
                continue
            if self._line_start:
                if not self._start_line(out, final):
                    break
                continue
            nl = self._buf.find("\n")
            seg = self._buf if nl == -1 else self._buf[:nl]
            text, used = self._scan(seg, complete=nl != -1 or final)
            self._emit(out, text)
            self._buf = self._buf[used:]
            if used < len(seg):
                break  # holding back an incomplete construct until more text arrives
            if nl != -1:
                self._buf = self._buf[1:]
                self._end_line()
        return "".join(out)

    def _skip_fenced(self, final: bool) -> bool:
        """Drop fenced-block text; return False when more input is needed to decide."""
        assert self._fence is not None
        nl = self._buf.find("\n")
        line = self._buf if nl == -1 else self._buf[:nl]
        if self._line_start:
            body = line.lstrip()
            if body.startswith(self._fence):
                self._fence = None
            elif nl == -1 and not final and len(body) < 3 and self._fence.startswith(body):
                return False  # maybe the closing fence, split across deltas
        if nl == -1:
            self._buf = ""
            self._line_start = False
            return False
        self._buf = self._buf[nl + 1 :]
        self._line_start = True
        return True

    def _start_line(self, out: list[str], final: bool) -> bool:
        nl = self._buf.find("\n")
        complete = nl != -1 or final
        head = self._buf if nl == -1 else self._buf[:nl]
        kind = self._classify(head, complete)
        if kind is None:
            return False
        name, prefix = kind
        if name == "table_sep":
            self._buf = self._buf[len(head) + (nl != -1) :]
            return True
        self._flush_break(out, strong=name != "plain")
        if name == "blank":
            self._buf = self._buf[len(head) + (nl != -1) :]
            return True
        if name == "hr":
            self._buf = self._buf[len(head) + (nl != -1) :]
            return True
        if name == "fence":
            stripped = head.lstrip(" \t>")
            self._fence = stripped[:3]
            self._line_start = False  # the rest of the opening line (info string) is skipped
            return True
        self._line_start = False
        self._cur_marked = name in ("heading", "bullet", "table")
        self._cur_last = ""
        if name == "table":
            row = head.strip().strip("|")
            cells = [c.strip() for c in row.split("|")]
            body = ", ".join(c for c in cells if c)
            self._buf = body + self._buf[len(head) :]
        else:
            self._buf = self._buf[prefix:]
        return True

    def _classify(self, head: str, complete: bool) -> tuple[str, int] | None:
        """Line type and marker length, or None if the line start is still ambiguous."""
        i = 0
        while True:  # block quotes, possibly nested
            j = i
            while j < len(head) and head[j] in " \t":
                j += 1
            if j < len(head) and head[j] == ">":
                i = j + 1
                continue
            break
        rest = head[i:]
        body = rest.lstrip(" \t")
        ind = i + len(rest) - len(body)
        if not body:
            return ("blank", len(head)) if complete else None
        c = body[0]
        if c in "`~":
            run = len(body) - len(body.lstrip(c))
            if run >= 3:
                return ("fence", 0)
            if run == len(body) and not complete:
                return None
            return ("plain", ind)
        if c == "|":
            if not complete:
                return None
            return ("table_sep", 0) if _TABLE_SEP_RE.match(head) else ("table", 0)
        if c in "-*_+":
            if not complete and set(body) <= {c, " ", "\t"}:
                return None  # only markers so far: rule, bullet or emphasis are all still possible
            if complete and _HR_RE.match(body):
                return ("hr", 0)
            m = _BULLET_RE.match(body)
            if m and c != "_":
                return ("bullet", ind + m.end())
            return ("plain", ind)
        if c == "#":
            m = _HEADING_RE.match(body)
            if m and (m.end() < len(body) or complete):
                return ("heading", ind + m.end())
            if m and not complete:
                return None  # "#", "## ": the heading text has not arrived yet
            return ("plain", ind)
        if c.isdigit():
            m = _NUMBER_RE.match(body)
            if m:
                return ("bullet", ind + m.end())
            if not complete and re.fullmatch(r"\d{1,3}[.)]?", body):
                return None
            return ("plain", ind)
        return ("plain", ind)

    def _flush_break(self, out: list[str], strong: bool) -> None:
        if not self._pending_break:
            return
        if self._prev_unterminated and (strong or self._prev_marked):
            out.append(".")
        out.append("\n")
        self._pending_break = False

    def _end_line(self) -> None:
        self._line_start = True
        if self._cur_last:
            self._pending_break = True
            self._prev_unterminated = self._cur_last not in _TERMINATORS
            self._prev_marked = self._cur_marked
        self._cur_last = ""
        self._cur_marked = False
        self._prev_raw = "\n"

    def _emit(self, out: list[str], text: str) -> None:
        if not text:
            return
        out.append(text)
        stripped = text.rstrip()
        if stripped:
            self._cur_last = stripped[-1]

    # -- inline level ---------------------------------------------------------------------------

    def _scan(self, seg: str, complete: bool) -> tuple[str, int]:
        """Convert inline markdown in one line segment; stop before an incomplete construct.

        Returns (plain text, number of characters of `seg` consumed).
        """
        out: list[str] = []
        i, n = 0, len(seg)
        while i < n:
            c = seg[i]
            if c == "\\":
                if i + 1 == n and not complete:
                    break
                if i + 1 < n and seg[i + 1] in _ASCII_PUNCT:
                    out.append(seg[i + 1])
                    self._prev_raw = seg[i + 1]
                    i += 2
                    continue
            elif c == "`":
                run = len(seg) - i - len(seg[i:].lstrip("`"))
                close = seg.find("`" * run, i + run)
                while close != -1 and close + run < n and seg[close + run] == "`":
                    close = seg.find("`" * run, close + run + 1)
                if close == -1:
                    if not complete:
                        break
                    i += run  # unmatched backticks: drop them, keep the text
                    continue
                code = seg[i + run : close]
                if code.startswith(" ") and code.endswith(" ") and code.strip():
                    code = code[1:-1]
                out.append(code)
                self._prev_raw = "`"
                i = close + run
                continue
            elif c == "[" or (c == "!" and i + 1 < n and seg[i + 1] == "["):
                res = self._link(seg, i, complete)
                if res is None:
                    break
                text, j = res
                out.append(text)
                self._prev_raw = "]"
                i = j
                continue
            elif c == "!" and i + 1 == n and not complete:
                break  # maybe an image
            elif c in "*_~":
                j = i
                while j < n and seg[j] == c:
                    j += 1
                if j == n and not complete:
                    break  # need the next character to decide
                nxt = seg[j] if j < n else " "
                if self._emphasis(c, j - i, self._prev_raw, nxt):
                    self._prev_raw = c
                    i = j
                    continue
                out.append(seg[i:j])
                self._prev_raw = c
                i = j
                continue
            elif c == "<":
                close = seg.find(">", i + 1)
                if close == -1 and not complete and n - i < _LINK_HOLD_LIMIT and (
                    i + 1 == n or seg[i + 1].isalpha() or seg[i + 1] == "/"
                ):
                    break
                if close != -1:
                    inner = seg[i + 1 : close]
                    if re.match(r"(https?://|mailto:)\S+$", inner):
                        out.append(inner)
                        i = close + 1
                        self._prev_raw = ">"
                        continue
                    if _TAG_RE.fullmatch(seg[i : close + 1]):
                        out.append(" " if inner.lower().startswith("br") else "")
                        i = close + 1
                        self._prev_raw = ">"
                        continue
            out.append(c)
            self._prev_raw = c
            i += 1
        return strip_emoji("".join(out)), i

    @staticmethod
    def _emphasis(c: str, run: int, prev: str, nxt: str) -> bool:
        """Is this run of *, _ or ~ an emphasis marker (drop) rather than literal text?"""
        if c == "~":
            return run >= 2
        if prev.isspace() and nxt.isspace():
            return False  # "2 * 3", a lone marker between spaces
        if c == "_":
            return not (prev.isalnum() and nxt.isalnum())  # keep snake_case
        return True

    def _link(self, seg: str, i: int, complete: bool) -> tuple[str, int] | None:
        """`[text](url)` → text, `![alt](url)` → nothing, `[text]` → text; None = need more."""
        image = seg[i] == "!"
        start = i + (2 if image else 1)
        depth, j = 1, start
        while j < len(seg) and depth:
            if seg[j] == "[":
                depth += 1
            elif seg[j] == "]":
                depth -= 1
            j += 1
        too_long = len(seg) - i >= _LINK_HOLD_LIMIT
        if depth:
            if not complete and not too_long:
                return None
            return seg[i], i + 1  # a stray bracket: literal
        close = j - 1
        label = seg[start:close]
        end = close + 1
        if end == len(seg) and not complete:
            return None  # "(" may follow
        if end < len(seg) and seg[end] == "(":
            paren, depth = -1, 0
            for k in range(end, len(seg)):
                depth += {"(": 1, ")": -1}.get(seg[k], 0)
                if depth == 0:
                    paren = k
                    break
            if paren == -1:
                if not complete and not too_long:
                    return None
            else:
                end = paren + 1
        elif end < len(seg) and seg[end] == "[":
            ref = seg.find("]", end)
            if ref == -1 and not complete and not too_long:
                return None
            if ref != -1:
                end = ref + 1
        if image:
            return "", end
        saved = self._prev_raw
        self._prev_raw = " "
        text, _ = self._scan(label, complete=True)
        self._prev_raw = saved
        return text, end
