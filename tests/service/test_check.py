"""`voice-agent check` against the emulator: a passing device and each kind of failure.

Every test also proves the API key never reaches the output (stdout, stderr, log records).
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import wave
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.check import KEY_REJECTED_FIX, CheckResult, check_command, format_checklist, run_checks
from agent.config import Settings, settings_from_dict
from agent.emulator.context import EmulatorOptions
from agent.emulator.server import Emulator, EmulatorThread
from tests.support.emulator import start_emulator

KEY = "sk-checktest5f3a9c0d2e7b41aa"
WRONG_KEY = "sk-wrongwrong0123456789abcd"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DASHSCOPE_API_KEY", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "RUNTIME_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def emulator():
    emu = await start_emulator(api_key=KEY)
    try:
        yield emu
    finally:
        await emu.stop()


def write_wav(path: Path, rate: int = 16000, seconds: float = 0.5) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(struct.pack("<h", 0) * int(rate * seconds))


def make_settings(tmp_path: Path, url: str, **over: Any) -> Settings:
    wav = tmp_path / "in.wav"
    if not wav.exists():
        write_wav(wav)
    raw: dict[str, Any] = {
        "dashscope": {"api_key": KEY, "http_url": url},
        "state_dir": str(tmp_path / "state"),
        "voice": {"family": "qwen", "name": "kiosk", "sample_url": "https://example.com/kiosk.wav"},
        "audio": {
            "input": {"backend": "file", "path": str(wav)},
            "output": {"backend": "file", "path": str(tmp_path / "out.wav")},
        },
    }
    for dotted, value in over.items():
        node = raw
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return settings_from_dict(raw)


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name.split(" ")[0] if r.name.startswith("reach") else r.name: r for r in results}


def assert_no_key(*texts: str) -> None:
    for t in texts:
        assert KEY not in t and WRONG_KEY not in t


async def create_qwen_voice(emu: Emulator, name: str, target: str) -> str:
    body = {
        "model": "qwen-voice-enrollment",
        "input": {
            "action": "create",
            "target_model": target,
            "preferred_name": name,
            "audio": {"data": "https://example.com/sample.wav"},
        },
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as s, s.post(
        f"{emu.base_url}/api/v1/services/audio/tts/customization", json=body, headers=headers
    ) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["output"]["voice"]


async def test_all_pass_with_an_enrolled_voice(emulator, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    s = make_settings(tmp_path, emulator.base_url)
    voice = await create_qwen_voice(emulator, "kiosk", s.omni.model)
    await create_qwen_voice(emulator, "other", s.omni.model)  # not ours
    results = await run_checks(s)
    text = format_checklist(results)
    assert all(r.ok for r in results), text
    r = by_name(results)
    assert voice in r["voice"].detail
    assert "from dashscope.api_key" in r["API key"].detail
    assert "WAV 16000 Hz, 1 ch" in r["audio input"].detail
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"
    assert text.endswith(f"all {len(results)} checks passed")
    assert_no_key(text, caplog.text)


async def test_voice_ids_match_like_enrollment_regardless_of_case(emulator, tmp_path: Path) -> None:
    # Enrollment reuses a listed voice case-insensitively; check must find the same voice (R13).
    s = make_settings(tmp_path, emulator.base_url, voice__sample_url=None)
    voice = await create_qwen_voice(emulator, "KIOSK", s.omni.model)
    assert "-KIOSK-voice-" in voice
    r = by_name(await run_checks(s))["voice"]
    assert r.ok and voice in r.detail


async def test_capability_rows_of_the_configuration_are_listed_with_their_fixes(emulator, tmp_path: Path) -> None:
    s = make_settings(tmp_path, emulator.base_url, mode="pipeline",
                      voice={"family": "cosyvoice", "name": "kiosk", "sample_url": "https://example.com/k.wav"})
    results = await run_checks(s)
    rows = {r.name: r for r in results if r.name.startswith("capability ")}
    assert rows["capability tts_model"].ok and not rows["capability tts_model"].warning
    clone = rows["capability cosyvoice_clone"]
    assert clone.ok and clone.warning and "the documents disagree" in clone.detail
    assert clone.fix is not None and "set dashscope.region: cn" in clone.fix
    text = format_checklist(results)
    assert "! capability cosyvoice_clone" in text and "fix: set dashscope.region: cn" in text
    assert "with a warning: the documents disagree" in text.splitlines()[-1]


async def test_voice_not_enrolled_yet_passes_when_it_can_be_created(emulator, tmp_path: Path) -> None:
    s = make_settings(tmp_path, emulator.base_url)
    r = by_name(await run_checks(s))["voice"]
    assert r.ok and "not enrolled yet" in r.detail


async def test_voice_missing_without_a_source_fails(emulator, tmp_path: Path) -> None:
    s = make_settings(tmp_path, emulator.base_url, voice__sample_url=None)
    await create_qwen_voice(emulator, "kiosk", "qwen3-tts-vc-realtime-2026-01-15")  # other model
    r = by_name(await run_checks(s))["voice"]
    assert not r.ok and "does not exist" in r.detail and r.fix and "voice.sample" in r.fix


async def test_wrong_key_is_reported_as_rejected(emulator, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    s = make_settings(tmp_path, emulator.base_url, dashscope__api_key=WRONG_KEY)
    results = await run_checks(s)
    r = by_name(results)
    assert not r["key accepted"].ok and "401" in r["key accepted"].detail
    assert r["key accepted"].fix == KEY_REJECTED_FIX
    assert r["voice"].skipped
    assert r["reach"].ok and r["config"].ok
    assert_no_key(format_checklist(results), caplog.text)


async def test_unreachable_endpoint(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = make_settings(tmp_path, f"http://127.0.0.1:{port}")
    results = await run_checks(s, timeout=2)
    r = by_name(results)
    assert not r["reach"].ok and "connection refused" in r["reach"].detail
    assert r["reach"].fix and "emulator" in r["reach"].fix
    assert r["key accepted"].skipped and r["voice"].skipped
    text = format_checklist(results)
    assert "1 of 13 checks failed, 2 skipped" in text


async def test_unresolvable_host(tmp_path: Path) -> None:
    s = make_settings(tmp_path, "https://voice-agent-check.invalid")
    r = by_name(await run_checks(s, timeout=2))["reach"]
    assert not r.ok and ("resolve" in r.detail or "DNS" in r.detail)


async def test_missing_key(emulator, tmp_path: Path) -> None:
    s = make_settings(tmp_path, emulator.base_url, dashscope__api_key=None)
    r = by_name(await run_checks(s))
    assert not r["API key"].ok and "no API key found" in r["API key"].detail
    assert r["API key"].fix and "LoadCredential" in r["API key"].fix
    assert r["key accepted"].skipped


async def test_key_from_systemd_credential(emulator, tmp_path: Path, monkeypatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "dashscope-api-key").write_text(KEY + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    s = make_settings(tmp_path, emulator.base_url, dashscope__api_key=None)
    r = by_name(await run_checks(s))
    assert r["API key"].ok and "systemd credential dashscope-api-key" in r["API key"].detail
    assert r["key accepted"].ok


async def test_unwritable_state_dir(emulator, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    s = make_settings(tmp_path, emulator.base_url, state_dir=str(blocker / "state"))
    r = by_name(await run_checks(s))["state dir"]
    assert not r.ok and "state_dir" in r.detail and r.fix


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a 0500 directory")
async def test_read_only_state_dir(emulator, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    s = make_settings(tmp_path, emulator.base_url, state_dir=str(ro))
    r = by_name(await run_checks(s))["state dir"]
    assert not r.ok and "not writable" in r.detail


async def test_bad_audio_files(emulator, tmp_path: Path) -> None:
    not_wav = tmp_path / "notes.wav"
    not_wav.write_text("this is not audio")
    s = make_settings(
        tmp_path,
        emulator.base_url,
        audio__input={"backend": "file", "path": str(not_wav)},
        audio__output={"backend": "file", "path": str(tmp_path / "no-such-dir" / "out.wav")},
    )
    r = by_name(await run_checks(s))
    assert not r["audio input"].ok and "not a WAV" in r["audio input"].detail
    assert not r["audio output"].ok and "does not exist" in r["audio output"].detail


async def test_sound_card_not_found(emulator, tmp_path: Path) -> None:
    s = make_settings(
        tmp_path,
        emulator.base_url,
        audio__input={"backend": "sounddevice", "device": "no-such-card-xyz"},
        audio__output={"backend": "null"},
    )
    r = by_name(await run_checks(s))
    assert not r["audio input"].ok
    assert "no input device matches" in r["audio input"].detail or "PortAudio" in r["audio input"].detail
    assert r["audio output"].ok


def test_check_command_exit_codes_and_output(tmp_path: Path, capsys, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with EmulatorThread(options=EmulatorOptions(api_key=KEY)) as emu:
        good = make_settings(tmp_path, emu.base_url)
        assert check_command(good) == 0
        out_ok, err_ok = capsys.readouterr()
        bad = make_settings(tmp_path, emu.base_url, dashscope__api_key=WRONG_KEY)
        assert check_command(bad) == 1
        out_bad, err_bad = capsys.readouterr()
    assert "all 13 checks passed" in out_ok
    assert "key rejected" in out_bad and "region" in out_bad
    assert_no_key(out_ok, err_ok, out_bad, err_bad, caplog.text)


@pytest.mark.unit
def test_ascii_fallback() -> None:
    class Latin1:
        encoding = "ascii"

    text = format_checklist([CheckResult("x", True, "fine"), CheckResult("y", False, "bad", "do z")], Latin1())
    assert text.splitlines()[0].startswith("OK x") and "FAIL y" in text and "fix: do z" in text


async def test_listen_row_names_the_wake_word_engine_and_model_or_the_key_that_fails(
    emulator, tmp_path: Path
) -> None:
    ok = by_name(await run_checks(make_settings(
        tmp_path, emulator.base_url, listen__mode="wake_word", listen__wake_word="hey_jarvis")))
    assert ok["listen"].ok
    assert "microWakeWord" in ok["listen"].detail and "hey_jarvis" in ok["listen"].detail
    missing = tmp_path / "nope.json"
    bad = by_name(await run_checks(make_settings(
        tmp_path, emulator.base_url, listen__mode="wake_word", listen__wake_word=str(missing))))
    assert not bad["listen"].ok and "listen.wake_word" in bad["listen"].detail


async def test_listen_row_reports_the_local_end_of_turn_or_the_missing_extra(
    emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    settings = make_settings(tmp_path, emulator.base_url, listen__end_of_turn="local")
    ok = by_name(await run_checks(settings))
    assert ok["listen"].ok and "end of turn local" in ok["listen"].detail
    monkeypatch.setitem(sys.modules, "webrtcvad", None)  # as if the [turn] extra were missing
    bad = by_name(await run_checks(settings))
    assert not bad["listen"].ok and "listen.end_of_turn" in bad["listen"].detail
