"""API key resolution (SPEC §4 order) and redaction, so the key never reaches any output."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from agent.config import ConfigError, Settings

CREDENTIAL_NAME = "dashscope-api-key"

_known_secrets: set[str] = set()
# DashScope keys look like sk-<hex>; also catch them when we were never told the key.
_KEY_PATTERN = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}")


def resolve_api_key(settings: Settings, required: bool = True) -> str | None:
    """`dashscope.api_key`, else $DASHSCOPE_API_KEY, else `api_key_file`, else the systemd credential."""
    ds = settings.dashscope
    key: str | None = None
    if ds.api_key:
        key = ds.api_key
    elif os.environ.get("DASHSCOPE_API_KEY"):
        key = os.environ["DASHSCOPE_API_KEY"]
    elif ds.api_key_file:
        key = _read_key_file(Path(ds.api_key_file), "dashscope.api_key_file")
    elif os.environ.get("CREDENTIALS_DIRECTORY"):
        cred = Path(os.environ["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
        if cred.exists():
            key = _read_key_file(cred, f"$CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME}")
    key = key.strip() if key else None
    if not key:
        if required:
            raise ConfigError(
                f"{settings.source}: dashscope.api_key: no API key found; set dashscope.api_key, "
                "$DASHSCOPE_API_KEY, dashscope.api_key_file, or a systemd credential "
                f"'{CREDENTIAL_NAME}' (LoadCredential=)"
            )
        return None
    register_secret(key)
    return key


def _read_key_file(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path}: {e.strerror or e}") from None
    if not text:
        raise ConfigError(f"{what}: {path} is empty")
    return text.splitlines()[0].strip()


def register_secret(secret: str) -> None:
    """Remember a secret so `redact` and the log filter remove it from any text."""
    if secret and len(secret) >= 4:
        _known_secrets.add(secret)


def redact(text: str) -> str:
    for s in sorted(_known_secrets, key=len, reverse=True):
        if s in text:
            text = text.replace(s, "***")
    return _KEY_PATTERN.sub("sk-***", text)


class RedactingFilter(logging.Filter):
    """Rewrites every record's final message (args and exception text included) through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed log call must not kill the daemon
            msg = str(record.msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.msg = redact(msg)
        record.args = None
        return True
