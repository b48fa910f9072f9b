"""CosyVoice voices (model `voice-enrollment`) of the customization endpoint: create, list,
query, update, delete; designed voices (`voice_prompt`) get a spoken preview."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

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
from agent.emulator.region import check_cosy_create

PREFIX_RE = re.compile(r"^[a-z0-9]{1,10}$")
COSY_LANGUAGES = {"zh", "en", "fr", "de", "ja", "ko", "ru"}
UNDEPLOYED_MARKER = "undeployed"
COSY_MIN_RATE = 16000
COSY_MIN_SPEECH_S = 5.0


def check_language_hints(inp: dict[str, Any]) -> list[str] | None:
    hints = inp.get("language_hints")
    if hints is None:
        return None
    if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
        raise invalid("Parameter 'language_hints' must be an array of strings.")
    if hints and hints[0] not in COSY_LANGUAGES:
        raise invalid(f"language_hints[0] must be one of {sorted(COSY_LANGUAGES)}.")
    return hints


def _status(rec: dict[str, Any]) -> str:
    return "DEPLOYING" if time.time() < rec["ready_at"] else rec["final_status"]


def _cosy_voice(ctx: EmulatorContext, inp: dict[str, Any]) -> dict[str, Any]:
    voice_id = get_str(inp, "voice_id")
    rec = ctx.stores.cosy_voices.get(voice_id)
    if rec is None:
        raise ApiError(400, "BadRequest.ResourceNotExist", "The Required resource not exist.")
    return rec


def _check_cosy_sample(sample: audio_io.AudioSample) -> str:
    """Synchronous audio errors are raised; problems found in "review" return UNDEPLOYED."""
    if sample.data is None:
        return "OK"
    kind = audio_io.sniff(sample.data)
    if kind is None:
        raise ApiError(400, "Audio.DecoderError", "Decoder audio file failed.")
    if kind != "wav":
        return "OK"  # MP3/M4A are accepted unchecked: the emulator has no decoder for them
    try:
        info = audio_io.analyze_wav(sample.data)
    except ValueError:
        raise ApiError(400, "Audio.DecoderError", "Decoder audio file failed.") from None
    if info.duration_s > audio_io.MAX_DURATION_S:
        raise ApiError(
            400, "Audio.DurationLimitError", "Audio duration exceeds maximum allowed limit."
        )
    if info.rate < COSY_MIN_RATE:
        raise ApiError(400, "Audio.AudioRateError", "File sample rate unsupported.")
    if info.longest_speech_s < 1.0:
        raise ApiError(500, "InternalError", "request asr failed")
    return "OK" if info.longest_speech_s >= COSY_MIN_SPEECH_S else "UNDEPLOYED"


def _check_target(target_model: str) -> None:
    if not target_model.startswith(("cosyvoice-", "qwen-audio-")):
        raise invalid(f"target_model '{target_model}' does not support voice customization.")


async def cosy_create(request, ctx, inp, params) -> dict:
    target_model = get_str(inp, "target_model")
    _check_target(target_model)
    prefix = get_str(inp, "prefix")
    if not PREFIX_RE.match(prefix):
        raise invalid("Parameter 'prefix' must be 1-10 characters of lowercase letters and digits.")
    hints = check_language_hints(inp)
    check_cosy_create(ctx.options.region, target_model, design="voice_prompt" in inp)
    if len(ctx.stores.cosy_voices) >= ctx.options.voice_quota:
        raise ApiError(400, "Throttling.AllocationQuota", QUOTA_MESSAGE)
    output: dict[str, Any] = {}
    if "voice_prompt" in inp:  # voice design: no sample, a prompt and a preview
        prompt = get_str(inp, "voice_prompt", max_len=500)
        preview_text = get_str(inp, "preview_text", max_len=200)
        voice_id = f"{target_model}-vd-{prefix}-{secrets.token_hex(4)}"
        output["preview_audio"] = preview_audio(preview_text, params, {"wav", "pcm"})
        link, final = "", "OK"
        extra = {"voice_prompt": prompt, "preview_text": preview_text}
    else:
        url = get_str(inp, "url")
        sample = audio_io.resolve_sample(request, ctx, url, "url")
        final = _check_cosy_sample(sample)
        voice_id = f"{target_model}-{prefix}-{secrets.token_hex(4)}"
        link, extra = sample.link, {}
    if UNDEPLOYED_MARKER in prefix or UNDEPLOYED_MARKER in link:
        final = "UNDEPLOYED"
    now = time.time()
    ctx.stores.cosy_voices[voice_id] = {
        "voice_id": voice_id,
        "target_model": target_model,
        "prefix": prefix,
        "resource_link": link,
        "language_hints": hints,
        "created": now,
        "modified": now,
        "ready_at": now + ctx.options.enroll_delay_s,
        "final_status": final,
        **extra,
    }
    ctx.log.info("voice %s created (%s after review)", voice_id, final)
    output["voice_id"] = voice_id
    return envelope(request, output)


async def cosy_list(request, ctx, inp, params) -> dict:
    prefix = get_str(inp, "prefix", required=False)
    voices = sorted(ctx.stores.cosy_voices.values(), key=lambda r: r["created"], reverse=True)
    if prefix:
        voices = [v for v in voices if v["prefix"] == prefix]
    chunk, _, _ = page(voices, inp)
    voice_list = [
        {
            "gmt_create": gmt(v["created"]),
            "voice_id": v["voice_id"],
            "gmt_modified": gmt(v["modified"]),
            "status": _status(v),
        }
        for v in chunk
    ]
    return envelope(request, {"voice_list": voice_list})


async def cosy_query(request, ctx, inp, params) -> dict:
    rec = _cosy_voice(ctx, inp)
    return envelope(
        request,
        {
            "gmt_create": gmt(rec["created"]),
            "resource_link": rec["resource_link"],
            "target_model": rec["target_model"],
            "gmt_modified": gmt(rec["modified"]),
            "status": _status(rec),
        },
    )


async def cosy_update(request, ctx, inp, params) -> dict:
    rec = _cosy_voice(ctx, inp)
    url = get_str(inp, "url")
    sample = audio_io.resolve_sample(request, ctx, url, "url")
    final = _check_cosy_sample(sample)
    now = time.time()
    rec.update(
        resource_link=sample.link,
        modified=now,
        ready_at=now + ctx.options.enroll_delay_s,  # a new sample goes through review again
        final_status="UNDEPLOYED" if UNDEPLOYED_MARKER in sample.link else final,
    )
    return envelope(request, {})


async def cosy_delete(request, ctx, inp, params) -> dict:
    rec = _cosy_voice(ctx, inp)
    del ctx.stores.cosy_voices[rec["voice_id"]]
    return envelope(request, {})


COSY_ACTIONS: dict[str, Action] = {
    "create_voice": cosy_create,
    "list_voice": cosy_list,
    "query_voice": cosy_query,
    "update_voice": cosy_update,
    "delete_voice": cosy_delete,
}
