"""The capability table: what the vendor documents say each region and model can do.

Each test is one rule of the table as `assess()` applies it to a configuration: documents that
agree something cannot work give a refusal naming the key and the fix; documents that disagree
give a warning that says so and cites both sides.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.capabilities import (
    TABLE,
    Finding,
    assess,
    cancel_supported,
    default_system_voice,
    lookup,
    omni_series,
    refusals,
    tts_series,
    upload_supported,
)

pytestmark = pytest.mark.unit

DEFAULTS: dict[str, Any] = {
    "region": "intl",
    "mode": "pipeline",
    "voice_family": "cosyvoice",
    "tts_model": "cosyvoice-v3-flash",
    "omni_model": "qwen3.5-omni-flash-realtime",
    "has_design_prompt": False,
    "has_local_sample": False,
    "preset": None,
}


def findings(**overrides: Any) -> list[Finding]:
    return assess(**{**DEFAULTS, **overrides})


def only(found: list[Finding], capability: str) -> Finding:
    matching = [f for f in found if f.capability == capability]
    assert len(matching) == 1, found
    return matching[0]


def cited_files(f: Finding) -> str:
    return " ".join(s.where for s in f.sources)


def test_cosyvoice_design_in_intl_is_refused_with_the_region_fix() -> None:
    f = only(findings(has_design_prompt=True), "cosyvoice_design")
    assert f.level == "refuse"
    assert f.key == "voice.design_prompt"
    assert f.fix == "set dashscope.region: cn"
    assert "002_d94e52fcc25c55b2.txt" in cited_files(f)


def test_cosyvoice_cloning_in_intl_is_a_warning_because_documents_disagree() -> None:
    f = only(findings(has_sample_url=True), "cosyvoice_clone")
    assert f.level == "warn"
    assert f.key == "voice.sample_url"
    assert "documents disagree" in f.message
    assert "set dashscope.region: cn" in f.fix
    files = cited_files(f)
    assert "000_ebed7f82bbcc202c.txt" in files  # the cloning API: not in Singapore
    assert "001_e195bb62868c127a.txt" in files  # the cloning overview: Singapore (v3 series)


def test_cloning_a_local_sample_in_intl_is_refused_because_the_upload_is_beijing_only() -> None:
    found = findings(has_local_sample=True)
    f = only(found, "temporary_upload")
    assert f.level == "refuse"
    assert f.key == "voice.sample"
    assert "set dashscope.region: cn" in f.fix and "voice.sample_url" in f.fix
    assert "get-temporary-file-url" in cited_files(f)
    assert only(found, "cosyvoice_clone").level == "warn"


def test_cosyvoice_cloning_from_a_local_sample_in_cn_is_supported() -> None:
    found = findings(region="cn", has_local_sample=True)
    assert only(found, "cosyvoice_clone").level == "ok"
    assert only(found, "temporary_upload").level == "ok"
    assert refusals(found) == []


def test_cosyvoice_design_in_cn_is_supported_for_v35() -> None:
    f = only(findings(region="cn", tts_model="cosyvoice-v3.5-plus", has_design_prompt=True),
             "cosyvoice_design")
    assert f.level == "ok"


def test_cosyvoice_design_with_v3_in_cn_is_supported_as_the_design_api_lists_it() -> None:
    f = only(findings(region="cn", has_design_prompt=True), "cosyvoice_design")
    assert f.level == "ok"
    assert "cosyvoice-clone-design-api" in cited_files(f)


def test_cosyvoice_design_with_v2_is_refused_with_the_model_fix() -> None:
    f = only(findings(region="cn", tts_model="cosyvoice-v2", has_design_prompt=True), "cosyvoice_design")
    assert f.level == "refuse"
    assert f.fix == "set pipeline.tts_model: cosyvoice-v3.5-plus (or cosyvoice-v3.5-flash)"


def test_beijing_only_tts_models_in_intl_are_refused_with_the_region_fix() -> None:
    for model in ("cosyvoice-v3.5-plus", "cosyvoice-v3.5-flash", "cosyvoice-v2"):
        f = only(findings(tts_model=model), "tts_model")
        assert (f.level, f.key) == ("refuse", "pipeline.tts_model"), model
        assert f.fix.startswith("set dashscope.region: cn")


def test_a_beijing_only_tts_model_in_omni_mode_is_a_warning_because_only_announcements_use_it() -> None:
    f = only(findings(mode="omni", voice_family="qwen", tts_model="cosyvoice-v2"), "tts_model")
    assert f.level == "warn"


def test_v35_tts_model_has_no_system_voice() -> None:
    assert default_system_voice("cosyvoice-v3.5-plus") is None
    assert default_system_voice("cosyvoice-v3.5-flash") is None


def test_v3_models_default_to_longanyang_and_v2_to_a_v2_voice() -> None:
    assert default_system_voice("cosyvoice-v3-flash") == "longanyang"
    assert default_system_voice("cosyvoice-v3-plus") == "longanyang"
    assert default_system_voice("cosyvoice-v2") == "longxiaochun_v2"
    assert default_system_voice("some-other-tts") is None


def test_cancel_directive_is_beijing_only() -> None:
    assert cancel_supported("cn")
    assert cancel_supported("cn", "cosyvoice-v3-flash")
    assert cancel_supported("cn", "cosyvoice-v2")
    assert not cancel_supported("intl")
    assert not cancel_supported("intl", "cosyvoice-v3-flash")


def test_cancel_directive_needs_cosyvoice_v2_or_later() -> None:
    assert not cancel_supported("cn", "cosyvoice-v1")


def test_barge_in_in_intl_pipeline_pre_empts_on_the_same_connection() -> None:
    f = only(findings(), "cancel_directive")
    assert (f.level, f.key) == ("ok", "dashscope.region")
    assert "not supported in region intl" in f.message and "same connection" in f.message
    assert any("§4.4" in s.where for s in f.sources)
    assert only(findings(region="cn"), "cancel_directive").level == "ok"


def test_temporary_upload_is_beijing_only() -> None:
    assert upload_supported("cn")
    assert not upload_supported("intl")


def test_a_system_voice_preset_on_v35_is_refused() -> None:
    f = only(findings(region="cn", tts_model="cosyvoice-v3.5-flash", voice_family="preset",
                      preset="longanyang"), "system_voices")
    assert (f.level, f.key) == ("refuse", "voice.preset")
    assert "no system voices" in f.message


def test_a_v2_voice_on_a_v3_model_is_a_warning() -> None:
    f = only(findings(voice_family="preset", preset="longxiaochun_v2"), "system_voices")
    assert f.level == "warn"
    assert "longanyang" in f.fix


def test_a_v3_voice_on_a_v3_model_raises_nothing() -> None:
    found = findings(voice_family="preset", preset="longanyang")
    assert [f for f in found if f.capability == "system_voices"] == []


def test_a_cloned_voice_preset_made_for_another_model_is_refused() -> None:
    f = only(findings(voice_family="preset", preset="cosyvoice-v3-plus-myvoice-abc123"), "system_voices")
    assert (f.level, f.key) == ("refuse", "voice.preset")
    same_model = findings(voice_family="preset", preset="cosyvoice-v3-flash-myvoice-abc123")
    assert [f for f in same_model if f.capability == "system_voices"] == []


def test_a_v35_cosyvoice_voice_without_preset_warns_that_there_is_no_fallback_voice() -> None:
    f = only(findings(region="cn", tts_model="cosyvoice-v3.5-plus", has_design_prompt=True),
             "system_voices")
    assert (f.level, f.key) == ("warn", "voice.preset")
    assert "no fallback voice" in f.message


def test_omni_announcements_with_a_v35_tts_model_warn_that_they_have_no_voice() -> None:
    f = only(findings(region="cn", mode="omni", voice_family="qwen", tts_model="cosyvoice-v3.5-plus"),
             "system_voices")
    assert (f.level, f.key) == ("warn", "pipeline.tts_model")


def test_qwen_cloning_works_with_qwen35_omni_in_either_region() -> None:
    for region in ("intl", "cn"):
        for model in ("qwen3.5-omni-flash-realtime", "qwen3.5-omni-plus-realtime"):
            f = only(findings(region=region, mode="omni", voice_family="qwen", omni_model=model,
                              has_local_sample=True), "qwen_clone")
            assert f.level == "ok", (region, model)


def test_qwen_cloning_with_an_older_omni_model_is_refused_with_the_model_fix() -> None:
    f = only(findings(mode="omni", voice_family="qwen", omni_model="qwen3-omni-flash-realtime",
                      has_sample_url=True), "qwen_clone")
    assert (f.level, f.key) == ("refuse", "omni.model")
    assert f.fix.startswith("set omni.model: qwen3.5-omni-flash-realtime")


def test_qwen_voice_design_is_refused_with_the_cloning_fix() -> None:
    f = only(findings(mode="omni", voice_family="qwen", has_design_prompt=True), "qwen_design")
    assert (f.level, f.key) == ("refuse", "voice.design_prompt")
    assert "voice.sample" in f.fix


def test_qwen_cloning_needs_no_temporary_upload() -> None:
    found = findings(mode="omni", voice_family="qwen", has_local_sample=True)
    assert [f for f in found if f.capability == "temporary_upload"] == []
    assert refusals(found) == []


def test_semantic_vad_is_refused_on_omni_models_before_35() -> None:
    f = only(findings(mode="omni", voice_family="qwen", omni_model="qwen3-omni-flash-realtime",
                      turn_detection="semantic_vad"), "semantic_vad")
    assert (f.level, f.key) == ("refuse", "omni.turn_detection.type")
    assert "server_vad" in f.fix
    ok = only(findings(mode="omni", voice_family="qwen", turn_detection="semantic_vad"), "semantic_vad")
    assert ok.level == "ok"


def test_function_calling_on_an_unsupported_omni_model_is_only_a_warning() -> None:
    f = only(findings(mode="omni", voice_family="qwen", omni_model="qwen3-omni-flash-realtime",
                      tools=True), "function_calling")
    assert (f.level, f.key) == ("warn", "omni.model")
    assert "without tools" in f.fix
    assert only(findings(mode="omni", voice_family="qwen", tools=True), "function_calling").level == "ok"


def test_function_calling_on_qwen38_is_a_warning_because_it_was_never_observed() -> None:
    f = only(findings(mode="omni", voice_family="qwen", omni_model="qwen3.8-omni-flash-realtime",
                      tools=True), "function_calling")
    assert f.level == "warn"
    assert "documents disagree" in f.message


def test_an_omni_voice_the_sources_disagree_on_is_a_warning() -> None:
    f = only(findings(mode="omni", voice_family="preset", preset="Chelsie"), "omni_voice")
    assert (f.level, f.key) == ("warn", "voice.preset")
    tina = findings(mode="omni", voice_family="preset", preset="Tina")
    assert [f for f in tina if f.capability == "omni_voice"] == []


def test_models_outside_the_known_series_give_no_finding_about_the_model() -> None:
    found = findings(mode="omni", voice_family="qwen", omni_model="qwen9-omni-future",
                     tts_model="future-tts", has_local_sample=True, turn_detection="semantic_vad", tools=True)
    assert found == []


def test_the_default_configurations_are_not_refused() -> None:
    assert refusals(findings(mode="omni", voice_family="qwen")) == []
    assert refusals(findings(voice_family="preset", preset="longanyang")) == []


def test_every_refusal_names_its_key_its_fix_and_a_source() -> None:
    cases = [
        findings(has_design_prompt=True),
        findings(has_local_sample=True),
        findings(tts_model="cosyvoice-v3.5-plus"),
        findings(mode="omni", voice_family="qwen", has_design_prompt=True),
        findings(mode="omni", voice_family="qwen", omni_model="qwen3-omni-flash-realtime",
                 has_sample_url=True, turn_detection="semantic_vad"),
    ]
    refused = [f for found in cases for f in refusals(found)]
    assert len(refused) >= 5
    for f in refused:
        assert f.key and f.fix and f.sources, f
        assert f.describe().startswith(f"{f.key}: ")


def test_every_row_cites_a_source_and_disputed_rows_explain_the_dispute() -> None:
    for row in TABLE:
        assert row.sources, row
        if row.support == "disputed":
            assert row.note, row


def test_lookup_prefers_the_row_for_the_model_over_the_catch_all() -> None:
    assert lookup("qwen_clone", "cn", "qwen3.5-omni").support == "yes"  # type: ignore[union-attr]
    assert lookup("qwen_clone", "cn", "qwen3-omni").support == "no"  # type: ignore[union-attr]
    assert lookup("qwen_clone", "cn", None) is None


def test_model_names_map_to_their_series() -> None:
    assert tts_series("cosyvoice-v3.5-flash") == "cosyvoice-v3.5"
    assert tts_series("cosyvoice-v3-plus") == "cosyvoice-v3"
    assert tts_series("cosyvoice-v2") == "cosyvoice-v2"
    assert tts_series("qwen-tts") is None
    assert omni_series("qwen3.5-omni-plus-realtime-2026-03-15") == "qwen3.5-omni"
    assert omni_series("qwen3-omni-flash-realtime") == "qwen3-omni"
    assert omni_series("qwen-omni-turbo-realtime") == "qwen-omni-turbo"
