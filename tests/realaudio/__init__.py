"""Tests: realaudio."""
