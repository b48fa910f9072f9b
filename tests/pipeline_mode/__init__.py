"""Tests: pipeline_mode."""
