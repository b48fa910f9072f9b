"""Logging set-up: one event per line on stderr, journald-friendly text or JSON, secrets redacted.

Under systemd (`$JOURNAL_STREAM` set) journald stamps every line itself, so the text format drops
its own timestamp and prefixes the syslog priority (`<3>`) so `journalctl -p err` works.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from agent.secrets import RedactingFilter, redact

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """`<prio>logger: message` — journald adds time, host and unit."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6)
        text = f"<{prio}>{record.name}: {record.getMessage()}"
        if record.exc_text:
            text += " | " + record.exc_text.replace("\n", " | ")
        return text


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\n", " | ")  # one event per line, even with tracebacks


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("event", "turn", "state"):
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_text:
            doc["exc"] = record.exc_text
        return redact(json.dumps(doc, ensure_ascii=False))


def setup_logging(level: str = "info", fmt: str = "text", stream: Any = None) -> None:
    """Configure the root logger once; safe to call again (replaces our handler)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(RedactingFilter())
    handler.set_name("voice-agent")
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == "voice-agent":
            root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter stays out of the journal unless debugging.
    for noisy in ("websockets", "aiohttp.access", "asyncio", "dashscope"):
        logging.getLogger(noisy).setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
