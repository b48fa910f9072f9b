"""Tests: omni."""
