"""Helpers shared by the customization endpoint's families: envelope, validators, paging, previews.

Kept apart from the dispatcher (`customization.py`) and the per-family handlers
(`cosy_voices.py`, `qwen_voices.py`) so the handlers import these without importing the dispatcher.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.emulator import audio_io
from agent.emulator.context import EmulatorContext
from agent.emulator.errors import invalid, request_id

Action = Callable[[web.Request, EmulatorContext, dict[str, Any], dict[str, Any]], Awaitable[dict]]

PREVIEW_RATES = {8000, 16000, 22050, 24000, 44100, 48000}
QUOTA_MESSAGE = "Maximum voice storage limit exceeded, please delete existing voices."


def gmt(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def get_str(inp: dict[str, Any], key: str, *, required: bool = True, max_len: int = 0) -> str:
    value = inp.get(key)
    if value is None:
        if required:
            raise invalid(f"Missing required parameter '{key}'.")
        return ""
    if not isinstance(value, str):
        raise invalid(f"Parameter '{key}' must be a string.")
    if required and not value.strip():
        raise invalid(f"Parameter '{key}' must not be empty.")
    if max_len and len(value) > max_len:
        raise invalid(f"Parameter '{key}' exceeds {max_len} characters.")
    return value


def get_int(inp: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = inp.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"Parameter '{key}' must be an integer.")
    if not lo <= value <= hi:
        raise invalid(f"Parameter '{key}' must be in [{lo}, {hi}].")
    return value


def page(items: list[dict[str, Any]], inp: dict[str, Any]) -> tuple[list[dict], int, int]:
    index = get_int(inp, "page_index", 0, 0, 1_000_000)
    size = get_int(inp, "page_size", 10, 0, 1_000_000)
    return items[index * size : (index + 1) * size], index, size


def preview_audio(text: str, parameters: dict[str, Any], formats: set[str]) -> dict[str, Any]:
    """`preview_audio` for a designed voice, spoken by the emulator's synthesizer."""
    rate = parameters.get("sample_rate", 24000)
    if isinstance(rate, bool) or rate not in PREVIEW_RATES:
        raise invalid(f"parameters.sample_rate must be one of {sorted(PREVIEW_RATES)}.")
    fmt = parameters.get("response_format", "wav")
    if fmt not in formats:
        raise invalid(
            f"parameters.response_format {fmt!r} is not supported by the emulator "
            f"(supported: {', '.join(sorted(formats))})."
        )
    pcm = audio_io.speech_pcm(text, rate)
    data = audio_io.wav_bytes(pcm, rate) if fmt == "wav" else pcm.astype("<i2").tobytes()
    return {
        "data": base64.b64encode(data).decode("ascii"),
        "sample_rate": rate,
        "response_format": fmt,
    }


def envelope(request: web.Request, output: dict[str, Any] | None, count: int = 1) -> dict:
    body: dict[str, Any] = {"usage": {"count": count}, "request_id": request_id(request)}
    if output is not None:
        body["output"] = output
    return body
