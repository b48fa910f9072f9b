"""Range and shape checks of single config sections, apart from the loader (`agent.config`).

Each takes one section object and `bad(key, why)`, which builds the ConfigError naming the key
(exit 78); nothing here imports the loader, so `agent.config` can call in without a cycle.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Any

Bad = Callable[[str, str], Exception]

BUILTIN_TOOLS = ("time", "timer", "volume")  # SPEC §11; agent.tools.builtin implements them
IDLE_TIMEOUT_RANGE_MS = (5000, 30000)  # OMNI-CE, turn_detection.idle_timeout_ms


def validate_tools(t: Any, bad: Bad) -> None:
    """`tools.*` (a `ToolsSettings`): known built-ins, the timeout's range, each MCP entry's shape."""
    for name in t.builtin:
        if name not in BUILTIN_TOOLS:
            close = difflib.get_close_matches(name, BUILTIN_TOOLS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise bad("tools.builtin", f"unknown built-in tool {name!r} (known: "
                      f"{', '.join(BUILTIN_TOOLS)}){hint}")
    if len(set(t.builtin)) != len(t.builtin):
        raise bad("tools.builtin", "lists a tool twice")
    if not 0.1 <= t.timeout_s <= 300:
        raise bad("tools.timeout_s", f"must be between 0.1 and 300 seconds, got {t.timeout_s}")
    names: set[str] = set()
    for i, m in enumerate(t.mcp):
        key = f"tools.mcp[{i}]"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", m.name):
            raise bad(f"{key}.name", f"use 1-32 letters, digits, '-' or '_', got {m.name!r}")
        if m.name in names or m.name == "builtin":
            raise bad(f"{key}.name", f"{m.name!r} is used twice (or is the reserved 'builtin')")
        names.add(m.name)
        if bool(m.command) == bool(m.url):
            raise bad(key, "give either command (a stdio server) or url (an HTTP server)")
        if m.url and not m.url.startswith(("http://", "https://")):
            raise bad(f"{key}.url", f"must start with http:// or https://, got {m.url!r}")
        if m.command and (m.token_file or m.url):
            raise bad(f"{key}.token_file", "only an HTTP server (url) takes a token_file")
        if m.url and m.env:
            raise bad(f"{key}.env", "only a stdio server (command) takes env")


def validate_listen(ls: Any, bad: Bad) -> None:
    """`listen.*` ranges; the model file itself is read at start-up (`preflight`)."""
    if ls.wake_threshold is not None and not 0.0 < ls.wake_threshold < 1.0:
        raise bad("listen.wake_threshold", f"must be between 0 and 1 (exclusive), got {ls.wake_threshold}")
    if not 0 <= ls.follow_up_s <= 120:
        raise bad("listen.follow_up_s", f"must be between 0 and 120, got {ls.follow_up_s}")
    if not 0 <= ls.preroll_ms <= 2000:
        raise bad("listen.preroll_ms", f"must be between 0 and 2000, got {ls.preroll_ms}")
    if not ls.wake_word.strip():
        raise bad("listen.wake_word", "must name a built-in wake word or a model file")


def check_idle_timeout(omni: Any, bad: Bad) -> None:
    """`omni.idle_timeout_ms` exists only for qwen3.5-omni with server VAD (OMNI-CE)."""
    ms = omni.idle_timeout_ms
    if ms is None:
        return
    lo, hi = IDLE_TIMEOUT_RANGE_MS
    key = "omni.idle_timeout_ms"
    if not lo <= ms <= hi:
        raise bad(key, f"must be between {lo} and {hi} (or null: never speak unprompted), got {ms}")
    if not omni.model.startswith("qwen3.5-omni"):
        raise bad(key, f"only qwen3.5-omni models support it, not {omni.model}; remove it")
    if omni.turn_detection.type != "server_vad":
        raise bad(key, "needs omni.turn_detection.type: server_vad "
                       f"(got {omni.turn_detection.type}); remove it or use server_vad")
