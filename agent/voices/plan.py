"""What voice the configuration asks for: family ↔ mode, target model, request names, digest.

A voice is bound to the model that will speak with it (reference §2.2: a CosyVoice voice made for
one target model fails on another), so the family must fit the mode:

- omni speaks through the Qwen-Omni model → family `qwen` (target model = `omni.model`)
- pipeline speaks through CosyVoice → family `cosyvoice` (target model = `pipeline.tts_model`)
- `preset` uses a system voice (`voice.preset`) in either mode, nothing is enrolled.

The family ↔ mode rule is config data (`agent.config.FAMILIES_FOR_MODE`, checked by
`config.validate`). `check_voice_config` adds the rest (sample file, design-prompt limits, languages)
and what the documents say the region and model offer (`agent.capabilities.assess`: refused →
ConfigError naming the key and the fix; disputed → returned as warnings for the caller to log);
it is cheap and offline, and the composition root calls it at start-up (`cli` for run / check /
voices, `daemon.preflight`); the sample's audio is only analysed at enrollment
(`samples.prepare_sample`). `plan_voice` applies only the local checks, so enrollment itself can
still be tried (and refused by the service) where the documents disagree.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from agent.capabilities import Finding, assess, refusals
from agent.config import ConfigError, Settings, check_family_fits_mode
from agent.voices.cache import CacheKey

MODEL_KEY = {"qwen": "omni.model", "cosyvoice": "pipeline.tts_model"}
# S004 (Qwen voice cloning API, "Languages" and the `language` parameter): 29 codes (audit R12).
QWEN_LANGUAGES = ("zh", "en", "de", "it", "pt", "es", "ja", "ko", "fr", "ru", "th", "id", "ar", "cs",
                  "da", "nl", "fi", "he", "hi", "is", "ms", "no", "fa", "pl", "sv", "tl", "tr", "ur",
                  "vi")
COSY_LANGUAGES = ("zh", "en", "fr", "de", "ja", "ko", "ru")
DESIGN_LANGUAGES = ("zh", "en")
DESIGN_PROMPT_MAX = 500
PREFIX_MAX = 9  # the services disagree on < 10 vs ≤ 10 characters; 9 is safe for both

PREVIEW_TEXT = {
    "zh": "你好，我是你的语音助手。今天有什么可以帮你的吗？",
    "en": "Hello! I'm your voice assistant. How can I help you today?",
}


@dataclass(frozen=True)
class VoicePlan:
    family: str  # qwen | cosyvoice | preset
    target_model: str
    name: str  # voice.name
    request_name: str  # what create sends: cosyvoice prefix / qwen preferred_name
    source: str | None  # sample | sample_url | design_prompt | None (only reuse an existing voice)
    source_value: str | None
    digest: str  # cache key part; "" when there is no source
    language: str | None
    preset: str | None

    @property
    def key(self) -> CacheKey:
        return CacheKey(self.family, self.target_model, self.name, self.digest)

    @property
    def is_design(self) -> bool:
        return self.source == "design_prompt"

    def describe(self) -> str:
        return f"{self.family} voice '{self.name}' for {self.target_model}"


def cosy_prefix(name: str) -> str:
    """voice.name → CosyVoice `prefix` ([a-z0-9]{1,9}), deterministic so listing finds it again.

    Lowercase, keep only letters and digits; if that is longer than 9, keep the first 5 and add 4
    hex digits of the name's SHA-1 (so "frontdesk1" and "frontdesk2" stay apart); if nothing is
    left (e.g. "___"), "v" + 8 hex digits.
    """
    s = re.sub(r"[^a-z0-9]", "", name.lower())
    h = hashlib.sha1(name.encode("utf-8")).hexdigest()
    if not s:
        return "v" + h[:8]
    if len(s) > PREFIX_MAX:
        return s[:5] + h[:4]
    return s


def text_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def capability_findings(settings: Settings) -> list[Finding]:
    """Every capability-table row that concerns this configuration (ok, warn and refuse)."""
    v = settings.voice
    return assess(
        settings.dashscope.region, settings.mode, v.family, settings.pipeline.tts_model,
        settings.omni.model, v.design_prompt is not None, bool(v.sample), v.preset,
        has_sample_url=bool(v.sample_url), turn_detection=settings.omni.turn_detection.type,
    )


def check_voice_config(settings: Settings) -> list[Finding]:
    """Offline checks of the `voice` section against the mode, region and models.

    ConfigError (exit 78) naming the key and the fix for what cannot work; returns the findings
    the documents disagree on (`warn`), which the caller logs as warnings.
    """
    check_voice_sources(settings)
    findings = capability_findings(settings)
    refused = refusals(findings)
    if refused:
        raise ConfigError(f"{settings.source}: {refused[0].describe()}")
    return [f for f in findings if f.level == "warn"]


def describe_with_sources(finding: Finding) -> str:
    """A finding with the documents behind it, for a start-up warning or `check`."""
    return f"{finding.describe()} (sources: {'; '.join(s.cite() for s in finding.sources)})"


def check_voice_sources(settings: Settings) -> None:
    """The local part: family ↔ mode, sample file, design prompt, language; ConfigError if wrong."""
    v, src = settings.voice, settings.source
    check_family_fits_mode(settings)
    if v.family == "preset":
        if not v.preset:
            raise ConfigError(f"{src}: voice.preset: required when voice.family is preset")
        return
    if v.design_prompt is not None:
        if v.family != "cosyvoice":
            raise ConfigError(
                f"{src}: voice.design_prompt: voice design is available for cosyvoice "
                "(pipeline mode) only; Qwen-Omni voices are cloned from voice.sample or "
                "voice.sample_url"
            )
        if not v.design_prompt.strip() or len(v.design_prompt) > DESIGN_PROMPT_MAX:
            raise ConfigError(
                f"{src}: voice.design_prompt: describe the voice in 1–{DESIGN_PROMPT_MAX} "
                f"characters (got {len(v.design_prompt)})"
            )
    if v.language:
        allowed = (
            DESIGN_LANGUAGES if v.design_prompt is not None
            else QWEN_LANGUAGES if v.family == "qwen" else COSY_LANGUAGES
        )
        if v.language not in allowed:
            raise ConfigError(
                f"{src}: voice.language: '{v.language}' is not supported here; use one of "
                f"{', '.join(allowed)}"
            )
    if v.sample:
        p = Path(v.sample).expanduser()
        if not p.is_file():
            raise ConfigError(f"{src}: voice.sample: file not found: {v.sample}")


def plan_voice(settings: Settings) -> VoicePlan:
    """The plan for `settings` (the local checks only; see the module docstring)."""
    check_voice_sources(settings)
    v = settings.voice
    if v.family == "preset":
        return VoicePlan("preset", "", v.name, "", None, None, "", v.language, v.preset)
    target = settings.omni.model if v.family == "qwen" else settings.pipeline.tts_model
    request_name = v.name if v.family == "qwen" else cosy_prefix(v.name)
    source: str | None = None
    value: str | None = None
    digest = ""
    if v.sample:
        source, value = "sample", v.sample  # digest of the file bytes, filled in by ensure
    elif v.sample_url:
        source, value, digest = "sample_url", v.sample_url, text_digest(v.sample_url)
    elif v.design_prompt:
        source, value, digest = "design_prompt", v.design_prompt, text_digest(v.design_prompt)
    return VoicePlan(v.family, target, v.name, request_name, source, value, digest, v.language, v.preset)


def voice_matches(plan: VoicePlan, voice_id: str, target_model: str | None) -> bool:
    """Does a listed voice belong to this name and target model?

    CosyVoice ids are `<target_model>-<prefix>-<unique>` (designed: `<target_model>-vd-<prefix>-…`)
    and the list does not return the target model, so the id decides. Qwen names are
    `qwen-(tts|omni)-vc-<preferred_name>-voice-<time>-<hex>` and the list returns target_model.
    """
    if plan.family == "cosyvoice":
        cloned = voice_id.startswith(f"{plan.target_model}-{plan.request_name}-")
        designed = voice_id.startswith(f"{plan.target_model}-vd-{plan.request_name}-")
        if plan.source is None:
            return cloned or designed
        return designed if plan.is_design else cloned
    if plan.family == "qwen":
        pattern = rf"qwen-(?:tts|omni)-vc-{re.escape(plan.request_name)}-voice-"
        return bool(re.match(pattern, voice_id, re.IGNORECASE)) and target_model == plan.target_model
    return False
