"""Session configuration of the emulated realtime endpoint: defaults per model and validation.

`session.created` must show the model's real defaults and `session.updated` must echo the full
effective configuration; bad values must be refused with the `error` event the cloud sends
(`invalid_request_error`, with `param` naming the field), so clients' validation paths run.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from typing import Any

ASR_TRANSCRIPTION_MODEL = "qwen3-asr-flash-realtime"
LEGACY_FORMATS = ("pcm", "pcm16", "pcm24")
SAMPLE_RATES = (8000, 16000, 24000, 48000)
# Preset omni voices (3.5 list per the reference, plus the older models' defaults).
OMNI_VOICES = frozenset(
    [
        "Tina",
        "Cindy",
        "Sunnybobi",
        "Raymond",
        "Ethan",
        "Serena",
        "Harvey",
        "Maia",
        "Evan",
        "Qiao",
        "Momo",
        "Wil",
        "Angel",
        "Mia",
        "Joyner",
        "Gold",
        "Katerina",
        "Ryan",
        "Jennifer",
        "Aiden",
        "Mione",
        "Sunny",
        "Dylan",
        "Eric",
        "Peter",
        "Marcus",
        "Li",
        "Kiki",
        "Rocky",
        "Sohee",
        "Lenn",
        "Sonrisa",
        "Bodega",
        "Emilien",
        "Andre",
        "Alek",
        "Rizky",
        "Roya",
        "Arda",
        "Hana",
        "Dolce",
        "Jakub",
        "Griet",
        "Eliška",
        "Marina",
        "Siiri",
        "Ingrid",
        "Sigga",
        "Bea",
        "Chloe",
        "Cherry",
        "Chelsie",
    ]
) | {"Liora Mira", "Theo Calm", "Li Cassian", "Joseph Chen", "Ono Anna", "Radio Gol"}


class SessionError(Exception):
    """A client event the server refuses; becomes an `error` event (the connection stays)."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def is_asr_model(model: str) -> bool:
    return "asr" in model.lower()


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:22]}"


async def settled(task: asyncio.Task[None] | None) -> None:
    """Wait for a response's streaming task to end, a cancelled one included."""
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def default_voice(model: str) -> str:
    m = model.lower()
    if m.startswith("qwen3-omni-flash-realtime"):
        return "Cherry"
    if m.startswith("qwen-omni-turbo"):
        return "Chelsie"
    return "Tina"


def default_session(model: str) -> dict[str, Any]:
    """What `session.created` shows for `model`."""
    sid = new_id("sess")
    if is_asr_model(model):
        return {
            "id": sid,
            "object": "realtime.session",
            "model": model,
            "modalities": ["text"],
            "input_audio_format": "pcm",
            "sample_rate": 16000,
            "input_audio_transcription": {},
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 400},
        }
    return {
        "id": sid,
        "object": "realtime.session",
        "model": model,
        "modalities": ["text", "audio"],
        "voice": default_voice(model),
        "instructions": "",
        "input_audio_format": "pcm",
        "output_audio_format": "pcm",
        "input_audio_transcription": {"model": ASR_TRANSCRIPTION_MODEL},
        "turn_detection": {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 800,
            "create_response": True,
            "interrupt_response": True,
        },
        "tools": [],
        "tool_choice": "auto",
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
        "max_tokens": 16384,
        "max_response_output_token": "inf",
        "repetition_penalty": 1.0,
        "presence_penalty": 1.5,
        "seed": -1,
        "enable_search": False,
    }


def apply_update(
    current: dict[str, Any],
    update: Any,
    *,
    audio_started: bool,
    cloned_voices: dict[str, Any],
) -> dict[str, Any]:
    """The new effective session after `session.update`; raises SessionError if refused.

    Unknown fields are kept and echoed (clients send model-specific extras such as
    `sample_rate` or `translation`); known fields are checked against the documented ranges.
    """
    if not isinstance(update, dict):
        raise SessionError("session.update requires a 'session' object.", "session")
    new = copy.deepcopy(current)
    model = str(current.get("model", ""))
    for key, value in update.items():
        if key in ("id", "object", "model"):
            continue  # read-only
        if key == "voice" and value is None:
            continue  # SDK 1.x sends null for "server default"
        new[key] = copy.deepcopy(value)
    _check_modalities(new.get("modalities"), model)
    if not is_asr_model(model):
        _check_voice(new.get("voice"), model, cloned_voices)
    for key in ("input_audio_format", "output_audio_format"):
        if key in update and update[key] not in LEGACY_FORMATS:
            raise SessionError(
                f"Invalid value: '{update[key]}'. Supported values are: 'pcm', 'pcm16', 'pcm24'.",
                f"session.{key}",
            )
    if "audio" in update:
        _check_audio(update["audio"])
        if audio_started and update["audio"] != current.get("audio"):
            raise SessionError(
                "The audio format cannot be changed after audio has been appended.",
                "session.audio",
            )
    _check_transcription(new.get("input_audio_transcription"))
    new["turn_detection"] = _check_turn_detection(new.get("turn_detection"), current)
    _check_sampling(new)
    if new.get("enable_search") and new.get("tools"):
        raise SessionError("enable_search and tools cannot be used together.", "session.tools")
    return new


def input_rate(session: dict[str, Any]) -> int:
    fmt = ((session.get("audio") or {}).get("input") or {}).get("format") or {}
    return int(fmt.get("sample_rate") or session.get("sample_rate") or 16000)


def output_rate(session: dict[str, Any]) -> int:
    fmt = ((session.get("audio") or {}).get("output") or {}).get("format") or {}
    return int(fmt.get("sample_rate") or 24000)


def _check_modalities(modalities: Any, model: str) -> None:
    ok = isinstance(modalities, list) and all(isinstance(m, str) for m in modalities)
    if ok and (sorted(set(modalities)) in (["text"], ["audio", "text"])):
        if is_asr_model(model) and "audio" in modalities:
            raise SessionError(
                f"Model '{model}' only produces text; modalities must be ['text'].",
                "session.modalities",
            )
        return
    raise SessionError(
        f"Invalid modalities: {modalities!r}. Supported combinations are: ['text'] and "
        "['text', 'audio'].",
        "session.modalities",
    )


def _check_voice(voice: Any, model: str, cloned_voices: dict[str, Any]) -> None:
    """Preset names, or a voice cloned (in this emulator) for exactly this model."""
    if not isinstance(voice, str) or not voice:
        raise SessionError("'voice' must be a non-empty string.", "session.voice")
    if voice.startswith(("qwen-omni-vc-", "qwen-tts-vc-")):
        rec = cloned_voices.get(voice)
        if rec is None or rec.get("target_model") != model:
            raise SessionError(f"Voice '{voice}' is not supported.", "session.voice")
        return
    if voice not in OMNI_VOICES:
        raise SessionError(f"Voice '{voice}' is not supported.", "session.voice")


def _check_audio(audio: Any) -> None:
    if not isinstance(audio, dict):
        raise SessionError("'audio' must be an object.", "session.audio")
    for side in ("input", "output"):
        spec = audio.get(side)
        if spec is None:
            continue
        fmt = spec.get("format") if isinstance(spec, dict) else None
        if not isinstance(fmt, dict):
            raise SessionError(f"'audio.{side}.format' must be an object.", f"session.audio.{side}")
        if fmt.get("type", "pcm") != "pcm":
            raise SessionError(
                f"Audio format type '{fmt.get('type')}' is not supported by the emulator; "
                "use 'pcm'.",
                f"session.audio.{side}.format.type",
            )
        rate = fmt.get("sample_rate", 16000 if side == "input" else 24000)
        if rate not in SAMPLE_RATES:
            raise SessionError(
                f"Invalid sample_rate {rate!r}; supported: 8000, 16000, 24000, 48000.",
                f"session.audio.{side}.format.sample_rate",
            )


def _check_transcription(value: Any) -> None:
    if value is not None and not isinstance(value, dict):
        raise SessionError(
            "'input_audio_transcription' must be an object or null.",
            "session.input_audio_transcription",
        )


def _check_turn_detection(value: Any, current: dict[str, Any]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SessionError("'turn_detection' must be an object or null.", "session.turn_detection")
    base = current.get("turn_detection") or default_session("x")["turn_detection"]
    td = {**base, **value}
    if td.get("type") not in ("server_vad", "semantic_vad"):
        raise SessionError(
            f"Invalid value: '{td.get('type')}'. Supported values are: 'server_vad', "
            "'semantic_vad'.",
            "session.turn_detection.type",
        )
    for key, lo, hi in (
        ("threshold", -1.0, 1.0),
        ("silence_duration_ms", 200, 6000),
        ("prefix_padding_ms", 0, 10000),
        ("idle_timeout_ms", 5000, 30000),
    ):
        if td.get(key) is not None:
            _number(td, key, lo, hi, f"session.turn_detection.{key}")
    return td


def _check_sampling(s: dict[str, Any]) -> None:
    if "temperature" in s and s["temperature"] is not None:
        _number(s, "temperature", 0.0, 1.999999, "session.temperature")
    if "top_p" in s and s["top_p"] is not None:
        _number(s, "top_p", 1e-9, 1.0, "session.top_p")
    if "presence_penalty" in s and s["presence_penalty"] is not None:
        _number(s, "presence_penalty", -2.0, 2.0, "session.presence_penalty")


def _number(d: dict[str, Any], key: str, lo: float, hi: float, param: str) -> None:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise SessionError(f"Invalid value for '{key}': {v!r} (allowed: {lo}..{hi}).", param)
