"""`voice-agent check --live [--record FILE]` against the emulator (SPEC §3, §13).

A faithful emulator passes every probed row; an emulator that misreports `session.updated`
fails the realtime row naming the field. The recorded wire log never holds the key or raw audio.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.check import check_command
from agent.check.live import format_table, run_live
from agent.cli import main
from agent.config import Settings, settings_from_dict
from agent.emulator.context import EmulatorOptions
from agent.emulator.server import EmulatorThread
from tests.support.emulator import start_emulator

KEY = "sk-livecheck7a1b2c3d4e5f6a7b"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DASHSCOPE_API_KEY", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "RUNTIME_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)


def settings(tmp_path: Path, url: str, mode: str = "omni", **voice: Any) -> Settings:
    raw: dict[str, Any] = {
        "mode": mode,
        "dashscope": {"api_key": KEY, "http_url": url},
        "state_dir": str(tmp_path / "state"),
        "voice": voice or {"family": "preset", "preset": "Tina" if mode == "omni" else "longanyang"},
        "audio": {"input": {"backend": "null"}, "output": {"backend": "null"}},
    }
    return settings_from_dict(raw)


def rows_by_name(rows: list[Any]) -> dict[str, Any]:
    return {r.name: r for r in rows}


def wire_entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def audio_b64_in(text: str) -> bool:
    """A run of base64 long enough to be audio (a 40 ms frame is ~1.7 k characters)."""
    import re

    return re.search(r"[A-Za-z0-9+/]{200,}", text) is not None


async def test_every_probed_row_passes_against_a_faithful_service_omni(tmp_path: Path) -> None:
    emu = await start_emulator(api_key=KEY)
    try:
        record = tmp_path / "wire.jsonl"
        rows = await run_live(settings(tmp_path, emu.base_url), str(record))
    finally:
        await emu.stop()
    table = format_table(rows)
    r = rows_by_name(rows)
    assert all(row.ok or row.skipped for row in rows), table
    assert [n for n, row in r.items() if row.ok] == [
        "key and region", "realtime session", "synthesis", "function calling"]
    assert "voice 'Tina'" in r["realtime session"].detail
    assert "turn_detection server_vad" in r["realtime session"].detail
    assert "bytes of 24 kHz PCM" in r["synthesis"].detail
    assert r["LLM stream"].skipped
    assert "called time(" in r["function calling"].detail  # the default tools.builtin offers it
    assert table.endswith("live probe: all 4 probed rows passed")

    text = record.read_text(encoding="utf-8")
    entries = wire_entries(record)
    assert KEY not in text and KEY[3:] not in text
    assert not audio_b64_in(text), "audio is replaced by its length and digest"
    assert {e["channel"] for e in entries} == {"http", "realtime", "synthesis", "tools"}
    assert all({"t", "channel", "dir", "frame"} <= e.keys() for e in entries)
    opened = [e["frame"] for e in entries if e["dir"] == "open"]
    assert all(o["headers"].get("Authorization") in (None, "Bearer ***") for o in opened)
    sent_update = next(e["frame"] for e in entries if e["channel"] == "realtime" and e["dir"] == "send"
                       and e["frame"].get("type") == "session.update")
    assert sent_update["session"]["voice"] == "Tina"
    audio = [e["frame"] for e in entries if e["channel"] == "synthesis" and e["dir"] == "recv"
             and "bytes" in e["frame"]]
    assert audio and all(len(a["sha256"]) == 64 and a["bytes"] > 0 for a in audio)


async def test_an_enrolled_voice_from_the_cache_is_the_one_the_realtime_row_asks_for(tmp_path: Path) -> None:
    import aiohttp

    from agent.voices.cache import READY, CacheEntry, VoiceCache
    from agent.voices.plan import plan_voice

    emu = await start_emulator(api_key=KEY)
    try:
        s = settings(tmp_path, emu.base_url, family="qwen", name="kiosk",
                     sample_url="https://example.com/kiosk.wav")
        body = {"model": "qwen-voice-enrollment", "input": {
            "action": "create", "target_model": s.omni.model, "preferred_name": "kiosk",
            "audio": {"data": "https://example.com/kiosk.wav"}}}
        async with aiohttp.ClientSession() as http, http.post(
            f"{emu.base_url}/api/v1/services/audio/tts/customization", json=body,
            headers={"Authorization": f"Bearer {KEY}"}) as reply:
            voice = (await reply.json())["output"]["voice"]
        (tmp_path / "state").mkdir(mode=0o700)
        key = plan_voice(s).key
        VoiceCache(tmp_path / "state").put(CacheEntry(key.family, key.target_model, key.name, key.digest,
                                                      READY, voice_id=voice))
        rows = await run_live(s)
    finally:
        await emu.stop()
    row = rows_by_name(rows)["realtime session"]
    assert row.ok and f"voice {voice!r}" in row.detail, row.detail


async def test_pipeline_mode_probes_the_asr_session_and_an_llm_stream(tmp_path: Path) -> None:
    emu = await start_emulator(api_key=KEY)
    try:
        rows = await run_live(settings(tmp_path, emu.base_url, mode="pipeline"))
    finally:
        await emu.stop()
    r = rows_by_name(rows)
    assert all(row.ok or row.skipped for row in rows), format_table(rows)
    assert r["ASR session"].ok and "qwen3-asr-flash-realtime" in r["ASR session"].detail
    assert r["LLM stream"].ok and "chunks" in r["LLM stream"].detail
    assert r["function calling"].ok and "called time(" in r["function calling"].detail


async def test_without_tools_the_function_calling_row_is_skipped_and_says_why(tmp_path: Path) -> None:
    emu = await start_emulator(api_key=KEY)
    try:
        s = settings(tmp_path, emu.base_url)
        rows = await run_live(replace(s, tools=replace(s.tools, builtin=())))
    finally:
        await emu.stop()
    row = rows_by_name(rows)["function calling"]
    assert row.skipped and "no tools are configured" in row.detail


async def test_a_misreported_session_fails_the_realtime_row_naming_each_field(tmp_path: Path) -> None:
    emu = await start_emulator("misreport=voice@realtime,misreport=turn_detection@realtime", api_key=KEY)
    try:
        record = tmp_path / "wire.jsonl"
        rows = await run_live(settings(tmp_path, emu.base_url), str(record))
    finally:
        await emu.stop()
    row = rows_by_name(rows)["realtime session"]
    assert not row.ok and not row.skipped
    assert "voice: asked 'Tina', the server runs with 'Ethan'" in row.detail
    assert "turn_detection.type: asked 'server_vad', the server runs with 'semantic_vad'" in row.detail
    assert row.fix and "--record" in row.fix
    assert "1 of 5 rows failed" in format_table(rows)
    text = record.read_text(encoding="utf-8")
    assert KEY not in text and not audio_b64_in(text)
    updated = [e["frame"] for e in wire_entries(record) if e["frame"].get("type") == "session.updated"]
    assert updated and updated[0]["session"]["voice"] == "Ethan"  # the log shows what came back


async def test_a_refused_session_update_names_the_field(tmp_path: Path) -> None:
    emu = await start_emulator(api_key=KEY)
    try:
        rows = await run_live(settings(tmp_path, emu.base_url, family="preset", preset="Nobody"))
    finally:
        await emu.stop()
    row = rows_by_name(rows)["realtime session"]
    assert not row.ok and "session.update refused, field voice: Voice 'Nobody' is not supported" in row.detail


async def test_a_refused_key_skips_the_rest_and_says_why(tmp_path: Path) -> None:
    emu = await start_emulator(api_key="sk-someoneelse0000000000000")
    try:
        rows = await run_live(settings(tmp_path, emu.base_url))
    finally:
        await emu.stop()
    r = rows_by_name(rows)
    assert not r["key and region"].ok and "region intl" in r["key and region"].detail
    assert r["realtime session"].skipped and "not accepted" in r["realtime session"].detail


def test_the_command_prints_the_table_and_exits_by_the_probed_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # websockets' own handshake dump (DEBUG) reaches no handler in `check` and is silenced by
    # agent.logs in the daemon; everything else is captured down to DEBUG.
    caplog.set_level(logging.INFO, logger="websockets")
    record = tmp_path / "wire.jsonl"
    with EmulatorThread(options=EmulatorOptions(api_key=KEY)) as emu:
        s = settings(tmp_path, emu.base_url)
        code = check_command(s, live=True, record=str(record))
        out, err = capsys.readouterr()
    assert "row" in out and "result" in out and "live probe: all 4 probed rows passed" in out
    assert f"wire log (redacted): {record}" in out
    assert code == 0, out
    assert KEY not in out + err + caplog.text + record.read_text(encoding="utf-8")


def test_the_cli_exits_1_naming_the_field_when_the_service_misreports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "wire.jsonl"
    with EmulatorThread(options=EmulatorOptions(api_key=KEY), faults="misreport=voice@realtime") as emu:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"dashscope: {{api_key: {KEY}, http_url: '{emu.base_url}'}}\n"
                       f"state_dir: '{tmp_path / 'state'}'\n"
                       "voice: {family: preset, preset: Tina}\n"
                       "audio: {input: {backend: 'null'}, output: {backend: 'null'}}\n")
        code = main(["check", "--config", str(cfg), "--live", "--record", str(record)])
    out = capsys.readouterr().out
    assert code == 1
    assert "realtime session" in out and "FAIL" in out and "voice: asked 'Tina', the server runs with 'Ethan'" in out
    assert KEY not in out + record.read_text(encoding="utf-8")


def test_record_without_live_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dashscope: {{api_key: {KEY}}}\nvoice: {{family: preset, preset: Tina}}\n")
    assert main(["check", "--config", str(cfg), "--record", str(tmp_path / "w.jsonl")]) == 2
    assert "--record needs --live" in capsys.readouterr().err


@pytest.mark.unit
def test_the_wire_log_replaces_audio_and_masks_credentials(tmp_path: Path) -> None:
    from agent.check.wirelog import WireLog, digest

    pcm = bytes(range(256)) * 8
    b64 = base64.b64encode(pcm).decode()
    log = WireLog(tmp_path / "w.jsonl", [KEY])
    log.opened("realtime", f"wss://x/api-ws/v1/realtime?model=m&key={KEY}", {"Authorization": f"Bearer {KEY}"})
    log.record("realtime", "send", json.dumps({"type": "input_audio_buffer.append", "audio": b64}))
    log.record("realtime", "recv", json.dumps({"type": "response.audio.delta", "delta": b64}))
    log.record("realtime", "recv", json.dumps({"type": "response.audio_transcript.delta", "delta": "Hi"}))
    log.record("synthesis", "recv", pcm)
    log.record("http", "send", json.dumps({"input": {"audio": {"data": f"data:audio/wav;base64,{b64}"}}}))
    log.record("http", "recv", f'{{"message": "bad key {KEY}"}}')
    log.close()
    text = (tmp_path / "w.jsonl").read_text(encoding="utf-8")
    assert KEY not in text and b64[:100] not in text
    frames = [e["frame"] for e in wire_entries(tmp_path / "w.jsonl")]
    assert frames[0]["headers"] == {"Authorization": "Bearer ***"} and "key=***" in frames[0]["url"]
    assert frames[1]["audio"] == digest(pcm) == frames[2]["delta"] == frames[4]
    assert frames[3]["delta"] == "Hi"  # text is kept
    assert frames[5]["input"]["audio"]["data"] == digest(pcm)
    assert frames[6]["message"] == "bad key ***"
