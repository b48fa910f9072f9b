"""Shared test setup: this file puts `tests/` on sys.path, so `daemonkit` imports from any folder."""
