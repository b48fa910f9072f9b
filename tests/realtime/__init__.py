"""Tests: realtime."""
