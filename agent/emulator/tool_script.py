"""The emulated models' function calling: which declared tool a phrase names, and how a result
is spoken (both the realtime and the text-generation emulation use it).

A scripted model, honest about being one: it calls a tool only when the user's words name it
("what time is it" → `time`; "set a tea timer for 5 seconds" → `timer`; "set the volume to
40" → `volume`; "turn on the light" → `light_set` with {"on": true}) and only if the client
declared a tool of that name (or one prefixed `<source>_<name>`; for the light, any declared
name with `light` in it that is not a getter, the way an MCP light switch names its tool). "... with broken arguments" makes it send arguments that are not JSON, so
clients can prove they answer such a call with an error instead of crashing. A polite request
("..., please") is answered with a few words before the call ("Sure, one moment.") on the text
generation stream, as chat models often do, so clients can prove that speech before a call plays.
The answer to a result reads the result back; an `error:` result is apologised for.
"""

from __future__ import annotations

import json
import re
from typing import Any

_NUMBERS = {w: i for i, w in enumerate([
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
    "twenty"])}
_NUMBERS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "ninety": 90, "a": 1, "an": 1})
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600}

_TIMER_SET = re.compile(
    r"\bset (?:a |an |the )?(?:(?P<name>[a-z]+) )?timer for (?P<n>\w+) (?P<unit>second|minute|hour)s?\b")
_TIMER_CANCEL = re.compile(r"\b(?:cancel|stop) (?:the |my )?(?:(?P<name>[a-z]+) )?timer\b")
_TIMER_LIST = re.compile(r"\b(?:list|which|what) (?:the )?timers\b")
_VOLUME_SET = re.compile(r"\bvolume (?:to |at )?(?P<n>\d{1,3})\b")
_TIME = re.compile(r"\bwhat time\b|\bthe time\b|\btime is it\b|\bwhat day\b|\btoday's date\b|几点")
_BROKEN = re.compile(r"\bbroken arguments\b")
_LIGHT = re.compile(r"\b(?:turn|switch) (?P<a>on|off) (?:the )?(?:[a-z]+ )?lights?\b"
                    r"|\b(?:turn|switch) (?:the )?(?:[a-z]+ )?lights? (?P<b>on|off)\b")


def declared_names(tools: Any) -> list[str]:
    """Tool names from a `tools` list in the nested (chat) or flat (OpenAI realtime) shape."""
    names = []
    for t in tools if isinstance(tools, list) else []:
        if not isinstance(t, dict):
            continue
        fn = t.get("function") if isinstance(t.get("function"), dict) else t
        if isinstance(fn.get("name"), str):
            names.append(fn["name"])
    return names


def _declared(name: str, names: list[str]) -> str | None:
    found = next((n for n in names if n == name or n.endswith("_" + name)), None)
    if found is None and name == "light_set":  # an MCP switch's own name: `kitchen_light`, `set_light`
        found = next((n for n in names if "light" in n.lower() and "get" not in n.lower()), None)
    return found


def _number(word: str) -> int | None:
    if word.isdigit():
        return int(word)
    return _NUMBERS.get(word)


def choose_call(text: str, tools: Any) -> tuple[str, str] | None:
    """(declared tool name, JSON arguments) the user's `text` asks for, or None."""
    names = declared_names(tools)
    if not names:
        return None
    said = " ".join(text.lower().replace("?", " ").replace(".", " ").split())
    wanted: tuple[str, dict[str, Any]] | None = None
    if m := _TIMER_SET.search(said):
        n = _number(m["n"])
        if n is not None:
            args: dict[str, Any] = {"action": "set", "seconds": n * _UNIT_S[m["unit"]]}
            if m["name"]:
                args["name"] = m["name"]
            wanted = ("timer", args)
    elif m := _TIMER_CANCEL.search(said):
        wanted = ("timer", {"action": "cancel", **({"name": m["name"]} if m["name"] else {})})
    elif _TIMER_LIST.search(said):
        wanted = ("timer", {"action": "list"})
    elif m := _VOLUME_SET.search(said):
        wanted = ("volume", {"level": int(m["n"])})
    elif "volume" in said:
        wanted = ("volume", {})
    elif m := _LIGHT.search(said):
        wanted = ("light_set", {"on": (m["a"] or m["b"]) == "on"})
    elif _TIME.search(said):
        wanted = ("time", {})
    if wanted is None:
        return None
    name = _declared(wanted[0], names)
    if name is None:
        return None
    if _BROKEN.search(said):
        return name, '{"action": "set", "seconds": '  # cut off: not JSON
    return name, json.dumps(wanted[1])


PREAMBLE = "Sure, one moment. "


def preamble(text: str) -> str:
    """What the text model says before calling a tool ("" unless the request says please)."""
    return PREAMBLE if re.search(r"\bplease\b", text.lower()) else ""


def speak_results(outputs: list[str]) -> str:
    """The answer to tool results: each read back; errors apologised for."""
    parts = []
    for out in outputs:
        text = out.strip()
        if text.lower().startswith("error:"):
            parts.append(f"Sorry, that did not work: {text[6:].strip()}")
        else:
            parts.append(text)
    answer = " ".join(p if p.endswith((".", "!", "?")) else p + "." for p in parts if p)
    return answer or "The tool returned nothing."
