"""Tests: audio."""
