"""What the service offers per region and model, as the vendor documents say it, with citations.

Nothing in the test suite reaches the real service, and the emulator was written from the same
reading as the client, so a misreading of the documents cannot show up in tests. This module is
that reading written down once, row by row, each row naming the document it comes from
(`/work/shared/reference/vendor-docs/…`, `dashscope-protocol.md`, `function-calling.md`, or the
vendor page). Where the documents contradict each other the row says so (`support="disputed"`)
and cites both sides.

`assess()` turns the table into findings for one configuration: what the documents agree cannot
work is `refuse` (config validation exits 78 naming the key), what they disagree on is `warn`
(the daemon tries and says why it might fail), and supported rows are `ok` (so `check` can list
every row that concerns the configuration). Pure data and pure functions on plain strings: this
module imports nothing from `agent`, so config validation, `check` and the emulator can all use it
without cycles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Level = Literal["refuse", "warn", "ok"]
Support = Literal["yes", "no", "disputed"]

# --- sources ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One document and what it says about one capability (a short quote or paraphrase)."""

    where: str
    says: str

    def cite(self) -> str:
        return f"{self.where}: {self.says}"


_S000 = "vendor-docs/000_ebed7f82bbcc202c.txt (CosyVoice voice cloning API, 11 Feb 2026)"
_S001 = "vendor-docs/001_e195bb62868c127a.txt (Voice cloning overview)"
_S002 = "vendor-docs/002_d94e52fcc25c55b2.txt (Real-time speech synthesis - CosyVoice, 31 Mar 2026)"
_S003 = "vendor-docs/003_5a0bbe0d41a849ef.txt (Voice Design HTTP API)"
_S004 = "vendor-docs/004_8ecda772490b4a3c.txt (Qwen voice cloning API for Qwen-Omni, 21 Apr 2026)"
_REF = "dashscope-protocol.md"
_FC = "function-calling.md §1.1"
_UPLOAD = ("alibabacloud.com/help/en/model-studio/get-temporary-file-url "
           "(Upload local files to get temporary URLs, 27 Oct 2025 and 23 Mar 2026)")

S000_NO_INTL_CLONE = Source(_S000, "'In international deployment mode (Singapore region), cosyvoice-v3-plus "
                                   "and cosyvoice-v3-flash do not support voice cloning.'")
S001_CLONE_BOTH = Source(_S001, "'CosyVoice voice cloning is available only in the China (Beijing) region "
                                "(v3.5/v2/v1 series) and the Singapore region (v3 series).'")
S001_MODELS = Source(_S001, "Supported models: International cosyvoice-v3-plus, cosyvoice-v3-flash; "
                            "Chinese mainland cosyvoice-v3.5-plus/-flash, v3-plus/-flash, v2")
S002_NO_INTL_CLONE = Source(_S002, "'Voice cloning: … Not supported in the Singapore region.'; "
                                   "International compare table 'Voice cloning: Not supported'")
S002_NO_INTL_DESIGN = Source(_S002, "'Voice design: … Not supported in the Singapore region.'; "
                                    "International compare table 'Voice design: Not supported'")
S002_CN_CLONE = Source(_S002, "Chinese mainland compare table 'Voice cloning: Supported' for "
                              "v3.5-plus/-flash, v3-plus, v3-flash, v2")
S002_CN_DESIGN = Source(_S002, "Chinese mainland compare table: 'Designed voices' languages only for "
                               "cosyvoice-v3.5-plus/-flash; the design row ends 'Not supported' for "
                               "the other columns; design is recommended with cosyvoice-v3.5-plus")
S002_AVAILABILITY = Source(_S002, "Availability: International cosyvoice-v3-plus, cosyvoice-v3-flash; "
                                  "Chinese mainland cosyvoice-v3.5-plus/-flash, v3-plus/-flash, v2")
S002_V35_NO_SYSTEM = Source(_S002, "'cosyvoice-v3.5-plus is available only in the Beijing region and does "
                                   "not support system voices.' (same for v3.5-flash)")
S002_LONGANYANG = Source(_S002, "'cosyvoice-v3-flash/cosyvoice-v3-plus: Use voices such as longanyang.'")
S003_INTL_ENDPOINT = Source(_S003, "lists a Singapore endpoint for the design API as a whole "
                                   "(CosyVoice and Qwen tabs) without saying CosyVoice design works there")
DESIGN_API_MODELS = Source(
    "alibabacloud.com/help/en/model-studio/cosyvoice-clone-design-api (Voice cloning/design API, "
    "31 Mar 2026; also dashscope-protocol.md §2.2)",
    "Supported models, voice design: cosyvoice-v3.5-plus, cosyvoice-v3.5-flash, cosyvoice-v3-plus, "
    "cosyvoice-v3-flash (not v2)")
REF_VOICE_VERSION = Source(f"{_REF} §4.1", "'voice version must match model (v3: longanyang…, "
                                           "v2: longxiaochun_v2…, v1: longwan…)'; mismatch → 418")
REF_CANCEL = Source(f"{_REF} §4.1", "cancel directive 'Supported for … CosyVoice v2+ in Beijing only; "
                                    "CosyVoice in Singapore does not support it' (realtime TTS guide, 取消任务)")
REF_PREEMPT = Source(f"{_REF} §4.4", "a new run-task mid-task pre-empts the running task on the "
                                      "same socket (任务中断方式)")
REF_TARGET_MATCH = Source(_S000, "'The speech synthesis model must match the target_model … "
                                 "Otherwise, synthesis fails.'")
UPLOAD_BEIJING = Source(_UPLOAD, "'This feature is available only in the China (Beijing) region. "
                                 "Use an API key from this region.' (both versions)")
S004_TARGETS = Source(_S004, "target_model: qwen3.5-omni-plus-realtime, qwen3.5-omni-flash-realtime; "
                             "Singapore and Beijing endpoints both given")
REF_QWEN_DESIGN = Source(f"{_REF} §2.4", "qwen-voice-design targets qwen3-tts-vd-* models only; "
                                         "no Omni model is a design target")
FC_35 = Source(_FC, "qwen3.5-omni-plus/flash-realtime: tools supported ('仅在使用 Qwen3.5-Omni-Realtime "
                    "模型时生效')")
FC_38 = Source(_FC, "qwen3.8-omni-flash-realtime: docs imply function calling; no trace seen")
FC_NO = Source(_FC, "qwen3-omni-flash-realtime: not listed; 'accepted tool definitions but never "
                    "invoked them'; qwen-omni-turbo-realtime: not listed")
REF_SEMANTIC = Source(f"{_REF} §5.3", "turn_detection.type 'semantic_vad (3.5 and 3.8 only)' "
                                      "(Omni client events)")
REF_IDLE = Source(f"{_REF} §5.3", "idle_timeout_ms '3.5 + server_vad only: … the model proactively "
                                  "starts a new response'")
REF_OMNI_VOICES = Source(f"{_REF} §5.6", "demos use Chelsie with qwen3.5-omni-flash-realtime, but a "
                                         "third-party note says Chelsie/Cherry fail on 3.5 with "
                                         "'Voice … is not supported'")

# --- model series -------------------------------------------------------------------------------

_TTS = re.compile(r"cosyvoice-(v\d+(?:\.\d+)?)(?:-.*)?")
_OMNI = re.compile(r"(qwen3\.5-omni|qwen3\.8-omni|qwen3-omni|qwen-omni-turbo)(?:-.*)?")


def tts_series(model: str) -> str | None:
    """'cosyvoice-v3-flash' → 'cosyvoice-v3'; None for a name outside the CosyVoice families."""
    m = _TTS.fullmatch(model)
    return f"cosyvoice-{m.group(1)}" if m else None


def omni_series(model: str) -> str | None:
    """'qwen3.5-omni-flash-realtime(-snapshot)' → 'qwen3.5-omni'; None if unknown."""
    m = _OMNI.fullmatch(model)
    return m.group(1) if m else None


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One capability in one region ('*' = any) for one model series ('*' = any)."""

    capability: str
    region: str
    series: str
    support: Support
    sources: tuple[Source, ...]
    note: str = ""


V3, V35, V2, V1 = "cosyvoice-v3", "cosyvoice-v3.5", "cosyvoice-v2", "cosyvoice-v1"
Q35, Q38, Q3, QT = "qwen3.5-omni", "qwen3.8-omni", "qwen3-omni", "qwen-omni-turbo"

TABLE: tuple[Row, ...] = (
    # Which CosyVoice models each region serves at all.
    Row("tts_model", "intl", V3, "yes", (S002_AVAILABILITY, S001_MODELS)),
    Row("tts_model", "intl", V35, "no", (S002_AVAILABILITY, S002_V35_NO_SYSTEM, S001_MODELS)),
    Row("tts_model", "intl", V2, "no", (S002_AVAILABILITY, S001_MODELS)),
    Row("tts_model", "cn", V3, "yes", (S002_AVAILABILITY, S001_MODELS)),
    Row("tts_model", "cn", V35, "yes", (S002_AVAILABILITY, S001_MODELS)),
    Row("tts_model", "cn", V2, "yes", (S002_AVAILABILITY, S001_MODELS)),
    # CosyVoice cloning (W1, R7).
    Row("cosyvoice_clone", "intl", V3, "disputed", (S000_NO_INTL_CLONE, S002_NO_INTL_CLONE, S001_CLONE_BOTH),
        "the cloning API and synthesis pages say no; the cloning overview says v3 cloning is "
        "available in Singapore"),
    Row("cosyvoice_clone", "cn", V3, "yes", (S002_CN_CLONE, S001_MODELS),
        "the overview's sentence names v3.5/v2/v1 for Beijing, its model list includes v3"),
    Row("cosyvoice_clone", "cn", V35, "yes", (S002_CN_CLONE, S001_CLONE_BOTH)),
    Row("cosyvoice_clone", "cn", V2, "yes", (S002_CN_CLONE, S001_CLONE_BOTH)),
    # CosyVoice voice design (W2).
    Row("cosyvoice_design", "intl", V3, "no", (S002_NO_INTL_DESIGN, S003_INTL_ENDPOINT)),
    Row("cosyvoice_design", "cn", V35, "yes", (S002_CN_DESIGN, DESIGN_API_MODELS)),
    Row("cosyvoice_design", "cn", V3, "yes", (DESIGN_API_MODELS, S002_CN_DESIGN),
        "the design API lists v3-plus/flash; the synthesis page's compare table (merged cells, "
        "flattened in the stored copy) names designed-voice languages for v3.5 only"),
    Row("cosyvoice_design", "cn", V2, "no", (S002_CN_DESIGN, DESIGN_API_MODELS)),
    # Temporary upload (local file → oss://), needed to clone CosyVoice from a local sample (W1).
    Row("temporary_upload", "intl", "*", "no", (UPLOAD_BEIJING,)),
    Row("temporary_upload", "cn", "*", "yes", (UPLOAD_BEIJING,)),
    # CosyVoice cancel directive (R4).
    Row("cancel_directive", "intl", "*", "no", (REF_CANCEL,)),
    Row("cancel_directive", "cn", V1, "no", (REF_CANCEL,)),
    Row("cancel_directive", "cn", "*", "yes", (REF_CANCEL,)),
    # Qwen-Omni cloning and design.
    Row("qwen_clone", "*", Q35, "yes", (S004_TARGETS,)),
    Row("qwen_clone", "*", "*", "no", (S004_TARGETS,)),
    Row("qwen_design", "*", "*", "no", (REF_QWEN_DESIGN, S004_TARGETS)),
    # Omni session features.
    Row("function_calling", "*", Q35, "yes", (FC_35,)),
    Row("function_calling", "*", Q38, "disputed", (FC_38,), "implied by the docs, never observed"),
    Row("function_calling", "*", "*", "no", (FC_NO,)),
    Row("semantic_vad", "*", Q35, "yes", (REF_SEMANTIC,)),
    Row("semantic_vad", "*", Q38, "yes", (REF_SEMANTIC,)),
    Row("semantic_vad", "*", "*", "no", (REF_SEMANTIC,)),
    Row("idle_timeout", "*", Q35, "yes", (REF_IDLE,), "server_vad only; makes the model speak unprompted"),
    Row("idle_timeout", "*", "*", "no", (REF_IDLE,)),
)

# System voices by TTS series. Only the names the documents show are listed: the full voice list
# was not read, so these are the known names (the first is the model's default), not all of them.
SYSTEM_VOICES: dict[str, tuple[str, ...]] = {
    V3: ("longanyang",),       # S002_LONGANYANG
    V2: ("longxiaochun_v2",),  # REF_VOICE_VERSION
    V1: ("longwan",),          # REF_VOICE_VERSION
    V35: (),                   # S002_V35_NO_SYSTEM: no system voices at all
}
# Omni preset voices that one source shows working on 3.5 and another says 3.5 rejects.
DISPUTED_OMNI_VOICES = {Q35: ("Chelsie", "Cherry")}


# Capabilities whose rows depend on the model: for a model outside the known series the
# documents say nothing, so there is no finding (rather than the catch-all "other models" row).
_PER_MODEL = {"tts_model", "cosyvoice_clone", "cosyvoice_design", "qwen_clone", "function_calling",
              "semantic_vad", "idle_timeout"}


def lookup(capability: str, region: str, series: str | None) -> Row | None:
    """The most specific row for (capability, region, series); None if the table has none."""
    if series is None and capability in _PER_MODEL:
        return None
    candidates = [
        r for r in TABLE
        if r.capability == capability and r.region in (region, "*") and r.series in (series, "*")
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (r.series == "*", r.region == "*"))


def default_system_voice(tts_model: str) -> str | None:
    """The system voice to speak with when no enrolled voice is available (None: there is none)."""
    voices = SYSTEM_VOICES.get(tts_series(tts_model) or "")
    return voices[0] if voices else None


def cancel_supported(region: str, tts_model: str | None = None) -> bool:
    """Does finish-task with `directive: cancel` stop a CosyVoice task (Beijing, v2 and later)?"""
    row = lookup("cancel_directive", region, tts_series(tts_model) if tts_model else None)
    return row is not None and row.support == "yes"


def upload_supported(region: str) -> bool:
    """Does the temporary upload (local file → oss://) exist in this region?"""
    row = lookup("temporary_upload", region, None)
    return row is not None and row.support == "yes"


# --- findings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One row of the table applied to one configuration."""

    level: Level
    key: str  # the config key it concerns, e.g. "voice.design_prompt"
    capability: str
    message: str
    fix: str  # "" when nothing needs changing
    sources: tuple[Source, ...]

    def describe(self) -> str:
        fix = f"; {self.fix}" if self.fix else ""
        return f"{self.key}: {self.message}{fix}"


def _from_row(
    row: Row | None, key: str, what: str, fix: str, *, no_level: Level = "refuse"
) -> Finding | None:
    """yes → ok, no → `no_level` with the fix, disputed → warn with the fix and the dispute."""
    if row is None:
        return None
    where = "" if row.region == "*" else f" in region {row.region}"
    if row.support == "yes":
        return Finding("ok", key, row.capability, f"{what}: supported{where}", "", row.sources)
    if row.support == "no":
        return Finding(no_level, key, row.capability, f"{what}: not supported{where}", fix, row.sources)
    return Finding("warn", key, row.capability,
                   f"{what}: the documents disagree ({row.note}); trying it, the service may refuse",
                   fix, row.sources)


def _preset_findings(mode: str, tts_model: str, omni_model: str, preset: str) -> list[Finding]:
    if mode == "omni":
        disputed = DISPUTED_OMNI_VOICES.get(omni_series(omni_model) or "", ())
        if preset in disputed:
            return [Finding("warn", "voice.preset", "omni_voice",
                            f"'{preset}' on {omni_model}: the documents disagree whether this voice exists",
                            "use voice.preset: Tina (the 3.5 default)", (REF_OMNI_VOICES,))]
        return []
    series = tts_series(tts_model)
    if preset.startswith("cosyvoice-"):
        if preset.startswith(f"{tts_model}-"):
            return []
        return [Finding("refuse", "voice.preset", "system_voices",
                        f"'{preset}' was made for another model than {tts_model}",
                        f"use a voice made for {tts_model}, or set pipeline.tts_model to its model",
                        (REF_TARGET_MATCH, REF_VOICE_VERSION))]
    if series == V35:
        return [Finding("refuse", "voice.preset", "system_voices",
                        f"{tts_model} has no system voices, so '{preset}' cannot speak",
                        "use pipeline.tts_model: cosyvoice-v3-flash, or a cloned/designed voice",
                        (S002_V35_NO_SYSTEM,))]
    if series in (V2, V3, V1) and preset.endswith("_v2") != (series == V2):
        return [Finding("warn", "voice.preset", "system_voices",
                        f"'{preset}' does not look like a {series} voice (v2 voices end in _v2; the "
                        "voice must match the model's version)",
                        f"use a {series} system voice, e.g. {SYSTEM_VOICES[series][0]}",
                        (REF_VOICE_VERSION,))]
    return []


def assess(
    region: str,
    mode: str,
    voice_family: str,
    tts_model: str,
    omni_model: str,
    has_design_prompt: bool,
    has_local_sample: bool,
    preset: str | None,
    *,
    has_sample_url: bool = False,
    turn_detection: str = "server_vad",
    tools: bool = False,
) -> list[Finding]:
    """Every table row that concerns this configuration, as findings.

    `refuse`: the documents agree it cannot work (the loader exits 78 naming `key`). `warn`: they
    disagree, or it works at a cost; the daemon tries. `ok`: supported, listed by `check`.
    """
    out: list[Finding | None] = []
    tts_used = mode == "pipeline" or voice_family == "cosyvoice"
    t_series, o_series = tts_series(tts_model), omni_series(omni_model)
    region_fix = "set dashscope.region: cn"

    # The CosyVoice model itself: pipeline speaks with it; omni only for `say` announcements.
    out.append(_from_row(lookup("tts_model", region, t_series), "pipeline.tts_model",
                         f"CosyVoice model {tts_model}",
                         f"{region_fix}, or use pipeline.tts_model: cosyvoice-v3-flash",
                         no_level="refuse" if tts_used else "warn"))

    if voice_family == "cosyvoice":
        if has_design_prompt:
            row = lookup("cosyvoice_design", region, t_series)
            fix = (region_fix if region != "cn"
                   else "set pipeline.tts_model: cosyvoice-v3.5-plus (or cosyvoice-v3.5-flash)")
            out.append(_from_row(row, "voice.design_prompt", f"CosyVoice voice design for {tts_model}", fix))
        elif has_local_sample or has_sample_url:
            key = "voice.sample" if has_local_sample else "voice.sample_url"
            out.append(_from_row(lookup("cosyvoice_clone", region, t_series), key,
                                 f"CosyVoice cloning for {tts_model}", f"{region_fix}, or use voice.family: qwen "
                                 "in omni mode"))
            if has_local_sample:
                out.append(_from_row(lookup("temporary_upload", region, None), "voice.sample",
                                     "temporary upload of the local sample (oss://)",
                                     f"{region_fix}, or host the sample and set voice.sample_url"))
    elif voice_family == "qwen":
        if has_design_prompt:
            out.append(_from_row(lookup("qwen_design", region, o_series), "voice.design_prompt",
                                 f"Qwen voice design for {omni_model}",
                                 "clone from voice.sample or voice.sample_url, or use mode: pipeline with "
                                 "voice.family: cosyvoice and dashscope.region: cn"))
        elif has_local_sample or has_sample_url:
            out.append(_from_row(lookup("qwen_clone", region, o_series), "omni.model",
                                 f"Qwen voice cloning for {omni_model}",
                                 "set omni.model: qwen3.5-omni-flash-realtime, or use voice.family: preset"))

    # The voice spoken when no enrolled voice is available (voice.preset, else the default).
    if preset:
        out.extend(_preset_findings(mode, tts_model, omni_model, preset))
    elif tts_used and t_series is not None and default_system_voice(tts_model) is None:
        out.append(Finding("warn", "voice.preset", "system_voices",
                           f"{tts_model} has no system voices: if enrollment fails there is no fallback "
                           "voice and the device stays silent",
                           "set voice.preset to a voice made for this model", (S002_V35_NO_SYSTEM,)))
    elif mode == "omni" and t_series is not None and default_system_voice(tts_model) is None:
        out.append(Finding("warn", "pipeline.tts_model", "system_voices",
                           f"{tts_model} has no system voices, so announcements (say) have no voice",
                           "use pipeline.tts_model: cosyvoice-v3-flash", (S002_V35_NO_SYSTEM,)))

    if tts_used:
        row = lookup("cancel_directive", region, t_series)
        if row is not None and row.support == "no":
            # Handled (audit R4): the next run-task pre-empts the task on the same socket.
            out.append(Finding("ok", "dashscope.region", "cancel_directive",
                               f"CosyVoice cancel directive: not supported in region {region}; "
                               "barge-in lets the next task pre-empt the old one on the same "
                               "connection instead", "", (*row.sources, REF_PREEMPT)))
        elif row is not None:
            out.append(_from_row(row, "dashscope.region", "CosyVoice cancel directive (barge-in)", ""))

    if mode == "omni":
        if turn_detection == "semantic_vad":
            out.append(_from_row(lookup("semantic_vad", region, o_series), "omni.turn_detection.type",
                                 f"semantic VAD on {omni_model}",
                                 "use omni.turn_detection.type: server_vad, or omni.model: "
                                 "qwen3.5-omni-flash-realtime"))
        if tools:
            out.append(_from_row(lookup("function_calling", region, o_series), "omni.model",
                                 f"function calling on {omni_model}",
                                 "set omni.model: qwen3.5-omni-flash-realtime (until then the daemon "
                                 "runs without tools)", no_level="warn"))
    return [f for f in out if f is not None]


def refusals(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "refuse"]
