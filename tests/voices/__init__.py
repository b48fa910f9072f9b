"""Tests: voices."""
