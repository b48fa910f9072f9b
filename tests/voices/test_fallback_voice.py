"""The device is never mute because enrollment failed (SPEC §13, issue 14 item 2).

End to end: the real daemon against the emulator, whose voice API refuses every request at first
(fault injection) and accepts once the fault is cleared. The daemon serves at once with the
fallback voice, says which capability was refused and what to change, keeps retrying in the
background, and switches to the enrolled voice when it works.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.config import settings_from_dict
from agent.daemon import DaemonTimings
from agent.voices.errors import EnrollmentError, ServiceUnavailable
from agent.voices.keeper import explain, fallback_voice
from tests.support.rig import BYE, rig, settings_for
from tests.support.samples import write_voice_sample

# Enrollment retried quickly, so the switch to the enrolled voice happens within the test.
QUICK_RETRY = DaemonTimings(voice_retry_s=(0.3, 0.6))

REFUSE = "http=403@customization"


def _settings(mode: str, work: Path, preset: str | None = None):
    sample = write_voice_sample(work / "me.wav")
    family = "qwen" if mode == "omni" else "cosyvoice"

    def build(base: str) -> Any:
        s = settings_for(mode, base, work, family=family, sample=sample)
        # cn: where the documents agree a local CosyVoice sample can be cloned (intl is refused).
        return replace(s, dashscope=replace(s.dashscope, region="cn"),
                       voice=replace(s.voice, preset=preset))

    return build


@pytest.mark.parametrize(("mode", "fallback", "enrolled"), [
    ("pipeline", "longanyang", "cosyvoice-v3-flash-kiosk-"),
    ("omni", None, "qwen-omni-vc-kiosk-voice-"),
])
async def test_a_refused_enrollment_serves_with_the_fallback_voice_then_switches(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
    mode: str, fallback: str | None, enrolled: str,
) -> None:
    caplog.set_level(logging.INFO, "voice-agent")
    async with rig(tmp_path, _settings(mode, tmp_path), faults=REFUSE, timings=QUICK_RETRY) as r:
        await r.until(lambda: r.daemon.mode is not None, 10, "serving while enrollment is refused")
        st = r.status
        assert st["voice_fallback"] is True and st["voice"] == fallback
        error = st["last_error"] or ""
        assert "voice enrollment refused" in error and "HTTP 403" in error
        capability = "CosyVoice cloning" if mode == "pipeline" else "Qwen voice cloning"
        assert f"Refused capability: {capability}" in error and "to change:" in error
        assert r.mode.voice == fallback
        await r.answer_soon(BYE)  # not mute: answered with the fallback voice
        assert r.daemon.status.voice_fallback

        r.faults(None)  # the service accepts from now on
        await r.until(lambda: not r.daemon.status.voice_fallback, 15, "the enrolled voice")
        voice = r.daemon.status.voice or ""
        assert voice.startswith(enrolled) and r.mode.voice == voice
        assert r.status["last_error"] is None
        await r.answer_soon(BYE)
        assert "switching from the fallback voice (voice_fallback: false)" in caplog.text
        assert await r.stop() == 0


@pytest.mark.unit
def test_the_fallback_is_the_preset_else_the_models_default() -> None:
    def s(mode: str, **over: Any):
        raw: dict[str, Any] = {"mode": mode, "voice": {"family": "qwen" if mode == "omni" else "cosyvoice"}}
        for k, v in over.items():
            raw.setdefault(k.split("__")[0], {})[k.split("__")[1]] = v
        return settings_from_dict(raw)

    assert fallback_voice(s("omni", voice__preset="Tina")).voice == "Tina"  # type: ignore[union-attr]
    omni = fallback_voice(s("omni"))
    assert omni is not None and omni.voice is None and "default voice of qwen3.5-omni" in omni.describe
    assert fallback_voice(s("pipeline")).voice == "longanyang"  # type: ignore[union-attr]
    v2 = fallback_voice(s("pipeline", pipeline__tts_model="cosyvoice-v2"))
    assert v2 is not None and v2.voice == "longxiaochun_v2"
    assert fallback_voice(s("pipeline", pipeline__tts_model="cosyvoice-v3.5-flash", dashscope__region="cn")) is None


@pytest.mark.unit
def test_a_refusal_names_the_capability_and_the_fix_a_network_failure_does_not() -> None:
    s = settings_from_dict({"mode": "pipeline", "voice": {"family": "cosyvoice", "sample_url": "https://x/y.wav"}})
    text = explain(s, EnrollmentError("create voice failed: HTTP 400 InvalidParameter: no"))
    assert text.startswith("voice enrollment refused: create voice failed")
    assert "Refused capability: CosyVoice cloning for cosyvoice-v3-flash" in text
    assert "to change: set dashscope.region: cn, or use voice.family: qwen" in text
    assert explain(s, ServiceUnavailable("timed out")) == "voice enrollment: timed out"


@pytest.mark.unit
def test_without_any_fallback_voice_the_status_names_voice_preset() -> None:
    from agent.modes import no_voice_message

    assert "set voice.preset" in no_voice_message("cosyvoice-v3.5-flash")


@pytest.mark.unit
def test_a_session_clearing_its_error_leaves_the_voice_problem_visible() -> None:
    from agent.status import Status

    st = Status(mode="omni")
    st.voice_problem("voice enrollment refused: …")
    st.error("realtime session lost")
    st.clear_error_if("realtime session lost")  # the new session proved itself
    assert st.last_error == "voice enrollment refused: …"
    st.voice_problem(None)  # enrolled
    assert st.last_error is None
    st.error("realtime session lost")
    st.voice_problem(None)  # a newer, unrelated problem stays
    assert st.last_error == "realtime session lost"


async def test_a_cached_voice_is_reverified_with_growing_pauses_while_the_service_fails(
        tmp_path: Path) -> None:
    import asyncio

    from agent.account import DashScopeAccount
    from agent.status import Status
    from agent.voices.keeper import VoiceKeeper
    from tests.support.emulator import API_KEY, start_emulator
    from tests.support.rig import FAST_ENSURE

    em = await start_emulator()
    try:
        settings = _settings("omni", tmp_path)(em.base_url)
        (tmp_path / "state").mkdir(exist_ok=True)

        def keeper() -> VoiceKeeper:
            return VoiceKeeper(settings, DashScopeAccount.from_settings(settings, API_KEY), tmp_path / "state",
                               Status(mode="omni"), options=FAST_ENSURE, retry=(0.05, 0.4))

        enrolled = await keeper().first_voice()  # creates the voice and caches it
        em.context.faults.set("http=500@customization")
        k = keeper()
        assert await k.first_voice() == enrolled  # the cached id, unverified: serve with it
        assert k.result is not None and not k.result.verified and not k.status.voice_fallback
        task = asyncio.create_task(k.keep())
        await asyncio.sleep(2.0)
        tries = k.attempts
        assert 3 <= tries <= 12, f"{tries} verification rounds in 2 s: the pauses must grow"
        em.context.faults.clear()
        await asyncio.wait_for(task, 5)  # verified: the keeper stops
        assert k.settled and k.status.voice == enrolled and k.status.last_error is None
    finally:
        await em.stop()


async def test_without_a_fallback_voice_the_daemon_waits_and_names_voice_preset(
        tmp_path: Path) -> None:
    # cosyvoice-v3.5 has no system voices: with no voice.preset there is nothing to speak with.
    build = _settings("pipeline", tmp_path)

    def settings(base: str) -> Any:
        s = build(base)
        return replace(s, pipeline=replace(s.pipeline, tts_model="cosyvoice-v3.5-flash"))

    async with rig(tmp_path, settings, faults=REFUSE, timings=QUICK_RETRY) as r:
        await r.until(lambda: "set voice.preset" in (r.daemon.status.last_error or ""), 10,
                      "the status naming voice.preset")
        assert r.daemon.mode is None and r.status["state"] == "error"
        r.faults(None)
        await r.until(lambda: r.daemon.mode is not None, 15, "serving once enrolled")
        assert (r.daemon.status.voice or "").startswith("cosyvoice-v3.5-flash-kiosk-")
        assert not r.daemon.status.voice_fallback and r.status["last_error"] is None
        assert await r.stop() == 0
