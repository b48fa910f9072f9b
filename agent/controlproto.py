"""The control socket's request protocol (SPEC §6, fixed): parsing and encoding of lines.

Split from control.py (the server) so the parsing rules can be read, fuzzed and reused on their
own: every request is one JSON object on one line; `parse_command` accepts it or raises
`RequestError` with a message for the client; replies are one JSON line with the API key
redacted.
"""

from __future__ import annotations

import json
from typing import Any

from agent.secrets import redact

COMMANDS = ("status", "say", "ask", "interrupt", "mute", "unmute", "volume", "subscribe", "forget",
            "listen", "talk")
TALK_ACTIONS = ("start", "stop")
TEXT_COMMANDS = ("say", "ask")
MAX_LINE = 64 * 1024  # bytes per request line
MAX_TEXT = 4096  # UTF-8 bytes of say/ask text: a spoken answer, not a book


class RequestError(Exception):
    """A bad request: its message goes back to the client as the error."""


def parse_request(line: bytes, max_text: int = MAX_TEXT) -> tuple[str, str | None]:
    """Validate one request line; return (cmd, text) or raise RequestError saying what is wrong."""
    cmd, text, _ = parse_command(line, max_text)
    return cmd, text


def parse_command(line: bytes, max_text: int = MAX_TEXT) -> tuple[str, str | None, int | None]:
    """Validate one request line; return (cmd, text, level) or raise RequestError.

    `text` is set for say/ask (and carries `talk`'s action, start or stop), `level` for a
    `volume` that sets it (an int 0–100).
    """
    try:
        decoded = line.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("request is not UTF-8 text") from None
    try:
        req = json.loads(decoded)
    except (json.JSONDecodeError, RecursionError):
        raise RequestError("malformed JSON: send one JSON object per line") from None
    if not isinstance(req, dict):
        raise RequestError('request must be a JSON object like {"cmd": "status"}')
    cmd = req.get("cmd")
    if not isinstance(cmd, str):
        raise RequestError(f'missing "cmd"; one of: {", ".join(COMMANDS)}')
    if cmd not in COMMANDS:
        raise RequestError(f"unknown cmd {cmd[:40]!r}; one of: {', '.join(COMMANDS)}")
    if cmd == "volume":
        return cmd, None, _parse_level(req)
    if cmd == "talk":
        action = req.get("action")
        if action not in TALK_ACTIONS:
            raise RequestError('"talk" needs "action": "start" or "stop"')
        return cmd, action, None
    if cmd not in TEXT_COMMANDS:
        return cmd, None, None
    text = req.get("text")
    if not isinstance(text, str) or not text.strip():
        raise RequestError(f'"{cmd}" needs a non-empty "text" string')
    size = len(text.encode("utf-8"))
    if size > max_text:
        raise RequestError(f"text too long: {size} bytes (limit {max_text})")
    return cmd, text, None


def _parse_level(req: dict[str, Any]) -> int | None:
    if req.get("level") is None:
        return None
    # Imported here: the daemon has it loaded already; the CLI client never parses requests.
    from agent.audio.volume import validate_level

    try:
        return validate_level(req["level"])
    except ValueError as e:
        raise RequestError(f'"volume": {e}') from None


def reply(ok: bool, **fields: Any) -> bytes:
    doc = {"ok": ok, **fields}
    text = json.dumps(doc, ensure_ascii=False, default=str, separators=(",", ":"))
    return (redact(text) + "\n").encode("utf-8")


def error(message: str) -> bytes:
    return reply(False, error=redact(message))
