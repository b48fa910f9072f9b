"""ensure_voice against the emulator on loopback, both families, asserting on its request log.

The request log records every request on arrival (before injected latency), so "one create" means
one create reached the server, whatever the client believed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.account import DashScopeAccount
from agent.emulator.server import Emulator
from agent.voices import (
    AuthError,
    Busy,
    EnrollmentError,
    QuotaError,
    SampleError,
    ServiceUnavailable,
    ensure_voice,
)
from agent.voices.cache import PENDING, READY, VoiceCache
from tests.support.emulator import API_KEY
from tests.support.samples import speech
from tests.support.samples import write_sample as write_wav
from tests.support.voices import creates, fast_options, make_settings, run, store

QWEN_MODEL = "qwen3.5-omni-flash-realtime"
COSY_MODEL = "cosyvoice-v3-flash"
CUSTOMIZATION = "/api/v1/services/audio/tts/customization"


def fail_creates(em: Emulator, status: int, times: int) -> None:
    """Answer the next `times` create requests with `status` (the fault grammar scopes by route,
    not by action, so wrap the plan: the request log's newest record is the request at hand)."""
    real = em.context.faults.for_connection
    left = [times]

    def for_connection(kind: str, request: object = None):
        cf = real(kind, request)
        recs = em.context.request_log.records()
        if (request is not None and kind == "customization" and left[0] > 0 and recs
                and recs[-1].action in ("create", "create_voice") and cf.http_status is None):
            left[0] -= 1
            cf.http_status = status
            cf.rules.append(f"http={status}")
        return cf

    em.context.faults.for_connection = for_connection  # type: ignore[method-assign]


def sample(tmp_path: Path, name: str = "me.wav", rate: int = 24000, variant: int = 0) -> str:
    (tmp_path / "state").mkdir(exist_ok=True)
    return str(write_wav(tmp_path / name, speech(12.0, rate, variant), rate))


# --- the main path, both families ------------------------------------------------------------------


@pytest.mark.parametrize("family", ["qwen", "cosyvoice"])
async def test_first_start_creates_one_second_start_none_and_listing_heals_a_lost_cache(
        emulator: Emulator, tmp_path: Path, family: str) -> None:
    path = sample(tmp_path)
    first = await run(emulator, tmp_path, family, sample=path)
    assert first.outcome == "created" and first.verified
    assert len(creates(emulator)) == 1 and list(store(emulator, family)) == [first.voice_id]
    model = QWEN_MODEL if family == "qwen" else COSY_MODEL
    assert first.target_model == model
    if family == "qwen":
        assert first.voice_id.startswith("qwen-omni-vc-kiosk-voice-")
    else:
        assert first.voice_id.startswith(f"{COSY_MODEL}-kiosk-") and first.status == "OK"

    second = await run(emulator, tmp_path, family, sample=path)
    assert (second.voice_id, second.outcome, second.verified) == (first.voice_id, "cached", True)
    assert len(creates(emulator)) == 1

    (tmp_path / "state" / "voices.json").unlink()
    third = await run(emulator, tmp_path, family, sample=path)
    assert (third.voice_id, third.outcome) == (first.voice_id, "reused")
    assert len(creates(emulator)) == 1 and len(store(emulator, family)) == 1
    entry = VoiceCache(tmp_path / "state").load()[0]
    assert (entry.state, entry.voice_id, entry.target_model) == (READY, first.voice_id, model)


@pytest.mark.parametrize("family", ["qwen", "cosyvoice"])
async def test_a_changed_sample_creates_a_new_voice_and_keeps_the_old(
        emulator: Emulator, tmp_path: Path, family: str, caplog: pytest.LogCaptureFixture) -> None:
    path = sample(tmp_path)
    old = await run(emulator, tmp_path, family, sample=path)
    write_wav(Path(path), speech(12.0, 24000, variant=1), 24000)  # re-recorded, same file name
    with caplog.at_level(logging.INFO):
        new = await run(emulator, tmp_path, family, sample=path)
    assert new.outcome == "created" and new.voice_id != old.voice_id
    assert set(store(emulator, family)) == {old.voice_id, new.voice_id}
    assert f"voice-agent voices delete {old.voice_id}" in caplog.text
    # the old voice is not mistaken for the new sample's, with or without the cache
    again = await run(emulator, tmp_path, family, sample=path)
    assert (again.voice_id, again.outcome) == (new.voice_id, "cached")
    assert len(creates(emulator)) == 2


async def test_qwen_request_carries_a_compliant_data_uri(emulator: Emulator, tmp_path: Path) -> None:
    """A 16 kHz stereo sample is converted (the emulator, like the service, wants ≥ 24 kHz)."""
    (tmp_path / "state").mkdir()
    x = speech(12.0, 16000)
    path = write_wav(tmp_path / "st16.wav", np.stack([x, x * 0.3], axis=1), 16000)
    res = await run(emulator, tmp_path, "qwen", sample=str(path), language="en")
    rec = emulator.context.stores.qwen_voices[res.voice_id]
    assert rec["resource_link"].startswith("data:audio/wav;base64,")
    assert (rec["preferred_name"], rec["target_model"], rec["language"]) == ("kiosk", QWEN_MODEL, "en")


async def test_cosyvoice_uploads_a_local_sample_and_sends_the_oss_url(emulator: Emulator, tmp_path: Path) -> None:
    res = await run(emulator, tmp_path, "cosyvoice", sample=sample(tmp_path))
    log = emulator.context.request_log
    policy = log.find(path="/api/v1/uploads")
    assert len(policy) == 1 and policy[0].model == "voice-enrollment" and policy[0].action == "getPolicy"
    assert len(log.find(path="/_oss/upload")) == 1
    link = emulator.context.stores.cosy_voices[res.voice_id]["resource_link"]
    assert link.startswith("oss://") and link.endswith("/me.wav")
    (key,) = emulator.context.stores.uploads
    assert emulator.context.stores.uploads[key].data == (tmp_path / "me.wav").read_bytes()


async def test_cosyvoice_sample_url_skips_the_upload(emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    res = await run(emulator, tmp_path, "cosyvoice", sample_url="https://example.com/me.wav")
    assert res.outcome == "created" and res.status == "OK"
    assert emulator.context.request_log.find(path="/api/v1/uploads") == []
    assert emulator.context.stores.cosy_voices[res.voice_id]["resource_link"] == "https://example.com/me.wav"


async def test_cosyvoice_polls_deploying_until_ok(emulator: Emulator, tmp_path: Path) -> None:
    emulator.context.options.enroll_delay_s = 0.6
    res = await run(emulator, tmp_path, "cosyvoice", sample=sample(tmp_path))
    queries = emulator.context.request_log.find(action="query_voice")
    assert res.status == "OK" and len(queries) >= 3  # DEPLOYING at least twice, then OK
    gaps = np.diff([q.time for q in queries])
    assert np.all(gaps >= 0.04) and gaps[-1] >= gaps[0]  # backoff, not a tight loop
    assert VoiceCache(tmp_path / "state").load()[0].state == READY


async def test_cosyvoice_deploy_timeout_is_retryable_and_resumes(emulator: Emulator, tmp_path: Path) -> None:
    emulator.context.options.enroll_delay_s = 0.8
    path = sample(tmp_path)
    with pytest.raises(EnrollmentError) as e:
        await run(emulator, tmp_path, "cosyvoice", sample=path, options=fast_options(deploy_timeout_s=0.2))
    assert e.value.retryable and "still DEPLOYING" in str(e.value)
    res = await run(emulator, tmp_path, "cosyvoice", sample=path)  # picks up the same voice
    assert res.outcome == "cached" and res.status == "OK" and len(creates(emulator)) == 1


async def test_cosyvoice_undeployed_is_a_final_clear_error(emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    url = "https://example.com/undeployed-sample.wav"  # the emulator's review rejects this
    with pytest.raises(EnrollmentError) as e:
        await run(emulator, tmp_path, "cosyvoice", sample_url=url)
    msg = str(e.value)
    assert "UNDEPLOYED" in msg and "voice-agent voices delete" in msg and not e.value.retryable
    (vid,) = emulator.context.stores.cosy_voices
    assert vid in msg
    with pytest.raises(EnrollmentError, match="UNDEPLOYED"):  # next start: same answer, no new voice
        await run(emulator, tmp_path, "cosyvoice", sample_url=url)
    assert len(creates(emulator)) == 1


async def test_cosyvoice_design_saves_the_preview(emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    res = await run(emulator, tmp_path, "cosyvoice", design_prompt="A calm, warm female announcer", language="en")
    assert res.voice_id.startswith(f"{COSY_MODEL}-vd-kiosk-") and res.outcome == "created"
    assert res.preview_path == tmp_path / "state" / f"voice-preview-{res.voice_id}.wav"
    with wave.open(str(res.preview_path)) as w:
        assert w.getnframes() > w.getframerate()  # more than a second of speech
    rec = emulator.context.stores.cosy_voices[res.voice_id]
    assert rec["voice_prompt"] == "A calm, warm female announcer" and "assistant" in rec["preview_text"]
    again = await run(emulator, tmp_path, "cosyvoice", design_prompt="A calm, warm female announcer", language="en")
    assert (again.outcome, again.preview_path) == ("cached", res.preview_path)


@pytest.mark.parametrize(("language", "hint", "word"), [(None, "en", "assistant"), ("zh", "zh", "语音助手")])
async def test_design_hints_the_language_of_its_preview_text(
        emulator: Emulator, tmp_path: Path, language: str | None, hint: str, word: str) -> None:
    # S003: language_hints defaults to zh and must match preview_text (audit R5): an English
    # preview is never sent under the default Chinese hint.
    (tmp_path / "state").mkdir()
    res = await run(emulator, tmp_path, "cosyvoice", design_prompt="A calm announcer", language=language)
    rec = emulator.context.stores.cosy_voices[res.voice_id]
    assert rec["language_hints"] == [hint] and word in rec["preview_text"]


# --- recovery -----------------------------------------------------------------------------------


async def test_several_matches_prefer_the_newest(emulator: Emulator, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = sample(tmp_path)
    a = await run(emulator, tmp_path, "qwen", sample=path)
    emulator.context.stores.qwen_voices[a.voice_id]["created"] -= 60
    (tmp_path / "state" / "voices.json").unlink()
    b = await run(emulator, tmp_path, "qwen", sample=path, options=None)
    assert b.voice_id == a.voice_id
    # a second voice of the same name appears (e.g. enrolled by another device), newer
    (tmp_path / "state" / "voices.json").unlink()
    write_wav(Path(path), speech(12.0, 24000, variant=1), 24000)
    c = await run(emulator, tmp_path, "qwen", sample=path)  # no cache: creates nothing, reuses a
    assert c.outcome == "reused" and c.voice_id == a.voice_id
    emulator.context.stores.qwen_voices["qwen-omni-vc-kiosk-voice-29990101000000000-beef"] = {
        **emulator.context.stores.qwen_voices[a.voice_id],
        "voice": "qwen-omni-vc-kiosk-voice-29990101000000000-beef",
        "created": emulator.context.stores.qwen_voices[a.voice_id]["created"] + 120,
    }
    (tmp_path / "state" / "voices.json").unlink()
    with caplog.at_level(logging.INFO):
        d = await run(emulator, tmp_path, "qwen", sample=path)
    assert d.voice_id == "qwen-omni-vc-kiosk-voice-29990101000000000-beef"
    assert "2 voices match" in caplog.text and a.voice_id in caplog.text
    assert len(creates(emulator)) == 1


async def test_a_cached_voice_deleted_at_the_service_is_replaced(emulator: Emulator, tmp_path: Path) -> None:
    path = sample(tmp_path)
    first = await run(emulator, tmp_path, "cosyvoice", sample=path)
    del emulator.context.stores.cosy_voices[first.voice_id]
    second = await run(emulator, tmp_path, "cosyvoice", sample=path)
    assert second.outcome == "created" and second.voice_id != first.voice_id
    assert len(creates(emulator)) == 2


@pytest.mark.parametrize("family", ["qwen", "cosyvoice"])
async def test_throttled_then_success(emulator: Emulator, tmp_path: Path, family: str) -> None:
    emulator.context.faults.set("http=429@customization*2")
    res = await run(emulator, tmp_path, family, sample=sample(tmp_path))
    assert res.outcome == "created"
    lists = emulator.context.request_log.find(action="list" if family == "qwen" else "list_voice")
    assert len(lists) >= 3  # two throttled, then answered
    assert len(creates(emulator)) == 1


async def test_throttled_create_is_retried_after_a_list(emulator: Emulator, tmp_path: Path) -> None:
    """A 429 on create is a definite "no": try again, but only after listing."""
    fail_creates(emulator, 429, times=1)
    res = await run(emulator, tmp_path, "qwen", sample=sample(tmp_path))
    assert res.outcome == "created" and len(emulator.context.stores.qwen_voices) == 1
    actions = [r.action for r in emulator.context.request_log.records() if r.path == CUSTOMIZATION]
    assert actions == ["list", "create", "list", "create"]


@pytest.mark.parametrize("family", ["qwen", "cosyvoice"])
async def test_a_create_that_times_out_is_found_by_listing(emulator: Emulator, tmp_path: Path, family: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    path = sample(tmp_path)
    emulator.context.faults.set("latency=0.6s@customization")
    opts = fast_options(settle_delays_s=(0.1, 0.3, 0.6))
    opts.client.create_timeout_s = 0.3  # shorter than the server's latency
    with caplog.at_level(logging.INFO):
        res = await run(emulator, tmp_path, family, sample=path, options=opts)
    assert res.outcome == "created" and res.verified
    assert "no answer within 0.3 s; checking whether it was created" in caplog.text
    assert f"the create did go through: found {res.voice_id}" in caplog.text
    assert len(creates(emulator)) == 1 and list(store(emulator, family)) == [res.voice_id]
    emulator.context.faults.clear()
    again = await run(emulator, tmp_path, family, sample=path)
    assert (again.voice_id, again.outcome) == (res.voice_id, "cached")


async def test_failing_creates_are_retried_once_after_listing_then_reported(
        emulator: Emulator, tmp_path: Path) -> None:
    """500 on create (outcome unknown), nothing listed after settling: one more create, then a
    retryable error that keeps the intent for the next attempt; never a loop."""
    fail_creates(emulator, 500, times=100)
    with pytest.raises(ServiceUnavailable, match="was not created") as e:
        await run(emulator, tmp_path, "qwen", sample=sample(tmp_path), options=fast_options(settle_delays_s=(0.05,)))
    assert e.value.retryable
    actions = [r.action for r in emulator.context.request_log.records() if r.path == CUSTOMIZATION]
    assert actions == ["list", "create", "list", "create", "list"]
    (entry,) = VoiceCache(tmp_path / "state").load()
    assert entry.state == PENDING and entry.voice_id is None


# --- local rejection: nothing is sent ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["too_long", "too_large", "8khz", "not_audio", "empty"])
@pytest.mark.parametrize("family", ["qwen", "cosyvoice"])
async def test_invalid_samples_are_rejected_before_any_request(emulator: Emulator, tmp_path: Path,
                                                               family: str, kind: str) -> None:
    (tmp_path / "state").mkdir()
    path = tmp_path / "bad.wav"
    if kind == "too_long":
        write_wav(path, np.tile(speech(13.0, 16000), 5), 16000)
    elif kind == "too_large":
        write_wav(path, np.stack([speech(30.0, 48000)] * 2, axis=1), 48000, fmt="float")
    elif kind == "8khz":
        write_wav(path, speech(12.0, 8000), 8000)
    elif kind == "not_audio":
        path.write_text(json.dumps({"hello": "world"}))
    else:
        path.write_bytes(b"")
    with pytest.raises(SampleError) as e:
        await run(emulator, tmp_path, family, sample=str(path))
    assert str(e.value).startswith("voice.sample: ")
    assert emulator.context.request_log.records() == []


# --- auth, quota, no network --------------------------------------------------------------------------


async def test_wrong_key_says_what_to_check_and_never_shows_the_key(emulator: Emulator, tmp_path: Path) -> None:
    settings = make_settings(emulator.base_url, tmp_path / "state", api_key="sk-wrongkey-9876543210",
                             sample=sample(tmp_path))
    with pytest.raises(AuthError) as e:
        await ensure_voice(settings, DashScopeAccount.from_settings(settings, "sk-wrongkey-9876543210"),
                           tmp_path / "state", log=logging.getLogger("t"), options=fast_options())
    assert "dashscope.api_key" in str(e.value) and "region" in str(e.value)
    assert "sk-wrongkey-9876543210" not in str(e.value)
    assert len(emulator.context.request_log.records()) == 1  # 401 is not retried


async def test_voice_quota_full(emulator: Emulator, tmp_path: Path) -> None:
    emulator.context.options.voice_quota = 0
    with pytest.raises(QuotaError) as e:
        await run(emulator, tmp_path, "qwen", sample=sample(tmp_path))
    assert "voice-agent voices list" in str(e.value) and "voice-agent voices delete ID" in str(e.value)
    assert VoiceCache(tmp_path / "state").load() == []  # a definite "no" leaves no intent behind


async def test_no_network_uses_the_cache_unverified_or_the_preset(emulator: Emulator, tmp_path: Path) -> None:
    path = sample(tmp_path)
    online = await run(emulator, tmp_path, "qwen", sample=path)
    base = emulator.base_url
    await emulator.stop()
    settings = make_settings(base, tmp_path / "state", sample=path)
    opts = fast_options()
    opts.client.retries = 1
    offline = await ensure_voice(settings, DashScopeAccount.from_settings(settings, API_KEY), tmp_path / "state",
                                 log=logging.getLogger("t"), options=opts)
    assert (offline.voice_id, offline.outcome, offline.verified) == (online.voice_id, "cached", False)
    assert "cannot reach the service" in offline.note

    (tmp_path / "state" / "voices.json").unlink()
    with pytest.raises(ServiceUnavailable) as e:
        await ensure_voice(settings, DashScopeAccount.from_settings(settings, API_KEY), tmp_path / "state",
                           log=logging.getLogger("t"), options=opts)
    assert e.value.retryable
    with_preset = make_settings(base, tmp_path / "state", sample=path, preset="Tina")
    fb = await ensure_voice(with_preset, DashScopeAccount.from_settings(with_preset, API_KEY), tmp_path / "state",
                            log=logging.getLogger("t"), options=opts)
    assert (fb.voice_id, fb.outcome, fb.verified) == ("Tina", "fallback-preset", False)


@pytest.mark.unit
async def test_preset_family_needs_no_service(tmp_path: Path) -> None:
    settings = make_settings("http://127.0.0.1:9", tmp_path / "state", family="preset", preset="Tina")
    res = await ensure_voice(settings, DashScopeAccount.from_settings(settings, API_KEY), tmp_path / "state",
                             log=logging.getLogger("t"))
    assert (res.voice_id, res.outcome, res.verified) == ("Tina", "preset", True)


async def test_existing_voice_without_a_sample_is_reused_else_config_error(emulator: Emulator, tmp_path: Path) -> None:
    from agent.config import ConfigError

    (tmp_path / "state").mkdir()
    with pytest.raises(ConfigError, match="nothing to create it from"):
        await run(emulator, tmp_path, "qwen")
    made = await run(emulator, tmp_path, "qwen", sample=sample(tmp_path))
    (tmp_path / "state" / "voices.json").unlink()
    res = await run(emulator, tmp_path, "qwen")  # e.g. a second device sharing the voice
    assert (res.voice_id, res.outcome) == (made.voice_id, "reused")


async def test_concurrent_ensures_create_one_voice(emulator: Emulator, tmp_path: Path) -> None:
    """The daemon and `voices ensure` at the same moment: the cache lock serialises them."""
    path = sample(tmp_path)
    a, b = await asyncio.gather(run(emulator, tmp_path, "cosyvoice", sample=path),
                                run(emulator, tmp_path, "cosyvoice", sample=path))
    assert a.voice_id == b.voice_id and sorted([a.outcome, b.outcome]) == ["cached", "created"]
    assert len(creates(emulator)) == 1


async def test_a_lock_held_too_long_is_a_retryable_busy_error(emulator: Emulator, tmp_path: Path) -> None:
    path = sample(tmp_path)
    async with VoiceCache(tmp_path / "state").locked():
        with pytest.raises(Busy) as e:
            await run(emulator, tmp_path, "qwen", sample=path, options=fast_options(lock_timeout_s=0.2))
        assert e.value.retryable and "another voice-agent process" in str(e.value)
        fb = await run(emulator, tmp_path, "qwen", sample=path, preset="Tina",
                       options=fast_options(lock_timeout_s=0.2))
        assert (fb.voice_id, fb.outcome) == ("Tina", "fallback-preset")
    assert emulator.context.request_log.records() == []


async def test_sample_url_the_service_cannot_download(emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    with pytest.raises(SampleError) as e:
        await run(emulator, tmp_path, "qwen", sample_url="https://example.com/download_failed.wav")
    assert str(e.value).startswith("voice.sample_url: ") and "publicly reachable" in str(e.value)
    assert VoiceCache(tmp_path / "state").load() == []


async def test_the_request_log_is_served_over_http(emulator: Emulator, tmp_path: Path) -> None:
    import aiohttp

    await run(emulator, tmp_path, "qwen", sample=sample(tmp_path))
    async with aiohttp.ClientSession() as http:
        url = f"{emulator.base_url}/_emulator/requests"
        async with http.get(url) as resp:
            assert resp.status == 401
        async with http.get(url, headers={"Authorization": f"Bearer {API_KEY}"}) as resp:
            doc = await resp.json()
    actions = [(r["path"], r["model"], r["action"]) for r in doc["requests"]]
    assert actions == [(CUSTOMIZATION, "qwen-voice-enrollment", "list"),
                       (CUSTOMIZATION, "qwen-voice-enrollment", "create"),
                       ("/_emulator/requests", None, None), ("/_emulator/requests", None, None)]
