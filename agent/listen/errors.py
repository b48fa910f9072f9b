"""The listening front end's configuration error.

Kept free of imports from the rest of `agent` so the config layer can map it to exit 78 without
an import cycle: the daemon catches `ListenConfigError` and reports `key` like any config error.
"""

from __future__ import annotations


class ListenConfigError(Exception):
    """A `listen.*` setting that cannot be used (e.g. an unreadable wake-word model)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message
