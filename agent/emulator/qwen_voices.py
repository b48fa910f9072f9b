"""Qwen voice families on the customization endpoint: `qwen-voice-enrollment` (cloning for
Qwen3-TTS-VC and Qwen3.5-Omni) and `qwen-voice-design` (voices from a text prompt).

Unlike CosyVoice these voices are usable as soon as `create` returns, are addressed by a `voice`
field, and the clone sample is checked synchronously (the documented `Audio.*` errors).
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from aiohttp import web

from agent.emulator import audio_io
from agent.emulator.context import EmulatorContext
from agent.emulator.customization_common import (
    QUOTA_MESSAGE,
    Action,
    envelope,
    get_str,
    gmt,
    page,
    preview_audio,
)
from agent.emulator.errors import ApiError, invalid

NAME_RE = re.compile(r"^[a-zA-Z0-9_]{1,16}$")
CLONE_MIMES = {"audio/wav", "audio/mpeg", "audio/mp4"}
MIME_FORMAT = {"audio/wav": "wav", "audio/mpeg": "mp3", "audio/mp4": "mp4"}
LANGUAGES = {"zh", "en", "de", "it", "pt", "es", "ja", "ko", "fr", "ru"}
MIN_RATE = 24000
MIN_SPEECH_S = 3.0
DESIGN_RATES = {8000, 16000, 24000, 48000}


def _voice_name(family: str, name: str) -> str:
    now = time.time()
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(now)) + f"{int(now * 1000) % 1000:03d}"
    return f"{family}-{name}-voice-{stamp}-{secrets.token_hex(2)}"


def _preferred_name(inp: dict[str, Any], default: str | None = None) -> str:
    if default is not None and inp.get("preferred_name") is None:
        return default
    name = get_str(inp, "preferred_name")
    if not NAME_RE.match(name):
        raise invalid(
            "Parameter 'preferred_name' must be 1-16 characters of letters, digits or underscore."
        )
    return name


def _language(inp: dict[str, Any]) -> str | None:
    lang = get_str(inp, "language", required=False)
    if lang and lang not in LANGUAGES:
        raise invalid(f"Parameter 'language' must be one of {sorted(LANGUAGES)}.")
    return lang or None


def _check_sample(sample: audio_io.AudioSample) -> None:
    """The synchronous checks of the real service, on whatever bytes the emulator can see."""
    if sample.data is None:
        return
    if (
        sample.mime is not None
        and sample.link.startswith("data:")
        and sample.mime not in CLONE_MIMES
    ):
        raise invalid(
            f"Unsupported audio MIME type '{sample.mime}'; use one of {sorted(CLONE_MIMES)}."
        )
    kind = audio_io.sniff(sample.data)
    expected = MIME_FORMAT.get(sample.mime or "")
    if kind is None or (expected is not None and kind != expected):
        raise ApiError(400, "Audio.DecoderError", "Decoder audio file failed.")
    if kind != "wav":
        return
    try:
        info = audio_io.analyze_wav(sample.data)
    except ValueError:
        raise ApiError(400, "Audio.DecoderError", "Decoder audio file failed.") from None
    if info.rate < MIN_RATE:
        raise ApiError(400, "Audio.AudioRateError", "File sample rate unsupported.")
    if info.duration_s > audio_io.MAX_DURATION_S:
        raise ApiError(
            400, "Audio.DurationLimitError", "Audio duration exceeds maximum allowed limit."
        )
    if info.longest_speech_s < MIN_SPEECH_S:
        raise ApiError(
            400, "Audio.PreprocessError", "No segments meet minimum duration requirement"
        )


def _find(store: dict[str, dict[str, Any]], inp: dict[str, Any]) -> dict[str, Any]:
    voice = get_str(inp, "voice")
    rec = store.get(voice)
    if rec is None:
        raise ApiError(400, "BadRequest.VoiceNotFound", f"Voice '{voice}' not found.")
    return rec


def _listing(request: web.Request, items: list[dict], inp: dict[str, Any], keys: tuple) -> dict:
    items = sorted(items, key=lambda r: r["created"], reverse=True)
    chunk, index, size = page(items, inp)
    voice_list = [_public(r, keys) for r in chunk]
    return envelope(
        request,
        {
            "voice_list": voice_list,
            "total_count": len(items),
            "page_index": index,
            "page_size": size,
        },
        count=0,
    )


def _public(rec: dict[str, Any], keys: tuple) -> dict[str, Any]:
    out = {k: rec[k] for k in keys if rec.get(k) is not None}
    out["gmt_create"] = gmt(rec["created"])
    out["gmt_modified"] = gmt(rec["modified"])
    return out


# --- qwen-voice-enrollment ----------------------------------------------------------------------

CLONE_KEYS = ("voice", "target_model", "preferred_name", "language")


async def clone_create(request, ctx: EmulatorContext, inp, params) -> dict:
    target_model = get_str(inp, "target_model")
    if not target_model.startswith("qwen") or (
        "-vc" not in target_model and "omni" not in target_model
    ):
        raise invalid(f"target_model '{target_model}' does not support voice cloning.")
    name = _preferred_name(inp)
    audio = inp.get("audio")
    if not isinstance(audio, dict):
        raise invalid("Missing required parameter 'audio' (an object with 'data').")
    data_ref = get_str(audio, "data")
    language = _language(inp)
    text = get_str(inp, "text", required=False)
    sample = audio_io.resolve_sample(request, ctx, data_ref, "audio.data")
    _check_sample(sample)
    if len(ctx.stores.qwen_voices) >= ctx.options.voice_quota:
        raise ApiError(400, "Throttling.AllocationQuota", QUOTA_MESSAGE)
    family = "qwen-omni-vc" if "omni" in target_model else "qwen-tts-vc"
    voice = _voice_name(family, name)
    now = time.time()
    ctx.stores.qwen_voices[voice] = {
        "voice": voice,
        "target_model": target_model,
        "preferred_name": name,
        "language": language,
        "text": text or None,
        "resource_link": sample.link,
        "created": now,
        "modified": now,
    }
    ctx.log.info("qwen voice %s created", voice)
    return envelope(request, {"voice": voice, "target_model": target_model})


async def clone_list(request, ctx: EmulatorContext, inp, params) -> dict:
    return _listing(request, list(ctx.stores.qwen_voices.values()), inp, CLONE_KEYS)


async def clone_query(request, ctx: EmulatorContext, inp, params) -> dict:
    """Emulator extension: the documented API has no query for this family."""
    return envelope(request, _public(_find(ctx.stores.qwen_voices, inp), CLONE_KEYS), count=0)


async def clone_delete(request, ctx: EmulatorContext, inp, params) -> dict:
    rec = _find(ctx.stores.qwen_voices, inp)
    del ctx.stores.qwen_voices[rec["voice"]]
    return envelope(request, None, count=0)


ENROLLMENT_ACTIONS: dict[str, Action] = {
    "create": clone_create,
    "list": clone_list,
    "query": clone_query,
    "delete": clone_delete,
}


# --- qwen-voice-design --------------------------------------------------------------------------

DESIGN_KEYS = ("voice", "target_model", "language", "voice_prompt", "preview_text")


async def design_create(request, ctx: EmulatorContext, inp, params) -> dict:
    target_model = get_str(inp, "target_model")
    if not target_model.startswith("qwen") or "-vd" not in target_model:
        raise invalid(f"target_model '{target_model}' does not support voice design.")
    prompt = get_str(inp, "voice_prompt", max_len=2048)
    preview_text = get_str(inp, "preview_text", max_len=1024)
    name = _preferred_name(inp, default="design")
    language = _language(inp)
    rate = params.get("sample_rate", 24000)
    if isinstance(rate, bool) or rate not in DESIGN_RATES:
        raise invalid(f"parameters.sample_rate must be one of {sorted(DESIGN_RATES)}.")
    preview = preview_audio(preview_text, params, {"wav", "pcm"})
    if len(ctx.stores.design_voices) >= ctx.options.voice_quota:
        raise ApiError(400, "Throttling.AllocationQuota", QUOTA_MESSAGE)
    voice = _voice_name("qwen-tts-vd", name)
    now = time.time()
    ctx.stores.design_voices[voice] = {
        "voice": voice,
        "target_model": target_model,
        "language": language,
        "voice_prompt": prompt,
        "preview_text": preview_text,
        "created": now,
        "modified": now,
    }
    return envelope(
        request, {"voice": voice, "target_model": target_model, "preview_audio": preview}
    )


async def design_list(request, ctx: EmulatorContext, inp, params) -> dict:
    return _listing(request, list(ctx.stores.design_voices.values()), inp, DESIGN_KEYS)


async def design_query(request, ctx: EmulatorContext, inp, params) -> dict:
    return envelope(request, _public(_find(ctx.stores.design_voices, inp), DESIGN_KEYS), count=0)


async def design_delete(request, ctx: EmulatorContext, inp, params) -> dict:
    rec = _find(ctx.stores.design_voices, inp)
    del ctx.stores.design_voices[rec["voice"]]
    return envelope(request, {"voice": rec["voice"]}, count=0)


DESIGN_ACTIONS: dict[str, Action] = {
    "create": design_create,
    "list": design_list,
    "query": design_query,
    "delete": design_delete,
}
