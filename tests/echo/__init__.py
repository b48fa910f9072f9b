"""Tests: echo."""
