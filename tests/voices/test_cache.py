"""voices.json: round trip, atomic replacement, corrupt/foreign files set aside, the process lock."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from agent import statefile
from agent.voices import cache as cache_mod
from agent.voices.cache import PENDING, READY, CacheEntry, CacheKey, VoiceCache


def _entry(digest: str = "sha256:aa", voice_id: str | None = "v-1", state: str = READY) -> CacheEntry:
    return CacheEntry("qwen", "qwen3.5-omni-flash-realtime", "kiosk", digest, state, voice_id)


@pytest.mark.unit
def test_round_trip_and_mode(tmp_path: Path) -> None:
    c = VoiceCache(tmp_path)
    assert c.load() == []
    c.put(_entry())
    c.put(_entry("sha256:bb", None, PENDING))
    again = VoiceCache(tmp_path)
    entries = again.load()
    assert [(e.digest, e.state, e.voice_id) for e in entries] == [
        ("sha256:aa", READY, "v-1"), ("sha256:bb", PENDING, None)]
    assert again.get(CacheKey("qwen", "qwen3.5-omni-flash-realtime", "kiosk", "sha256:aa")) is not None
    assert stat.S_IMODE(os.stat(tmp_path / "voices.json").st_mode) == 0o600
    doc = json.loads((tmp_path / "voices.json").read_text())
    assert doc["schema"] == "voice-agent/voices" and doc["version"] == 1


@pytest.mark.unit
def test_put_replaces_the_same_key(tmp_path: Path) -> None:
    c = VoiceCache(tmp_path)
    c.put(_entry(voice_id=None, state=PENDING))
    c.put(_entry(voice_id="v-2"))
    assert [(e.state, e.voice_id) for e in VoiceCache(tmp_path).load()] == [(READY, "v-2")]


@pytest.mark.unit
def test_claims_by_other_samples(tmp_path: Path) -> None:
    c = VoiceCache(tmp_path)
    c.put(_entry("sha256:old", "v-old"))
    c.put(_entry("sha256:new", "v-new"))
    key = CacheKey("qwen", "qwen3.5-omni-flash-realtime", "kiosk", "sha256:new")
    assert c.ids_claimed_elsewhere(key) == {"v-old"}
    other_model = CacheKey("qwen", "other-model", "kiosk", "sha256:new")
    assert c.ids_claimed_elsewhere(other_model) == set()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "Expecting property name"),
        (b'{"something": "else"}', "not a voice-agent/voices file"),
        (b'{"schema": "voice-agent/voices", "version": 99, "entries": []}', "version 99"),
        (b'{"schema": "voice-agent/voices", "version": 1, "entries": [{"family": 1}]}', ""),
        (b'[1, 2, 3]', "not a voice-agent/voices file"),
        (b"\xff\xfe\x00garbage", ""),
    ],
)
def test_corrupt_or_foreign_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                 content: bytes, why: str) -> None:
    path = tmp_path / "voices.json"
    path.write_bytes(content)
    c = VoiceCache(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert c.load() == []
    aside = list(tmp_path.glob("voices.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert not path.exists()
    assert "moved it aside" in caplog.text and why in caplog.text
    c.put(_entry())  # and the cache works again
    assert len(VoiceCache(tmp_path).load()) == 1


@pytest.mark.unit
def test_two_corrupt_files_in_the_same_second_are_both_kept(tmp_path: Path) -> None:
    for n in range(2):
        (tmp_path / "voices.json").write_text(f"bad {n}")
        VoiceCache(tmp_path).load()
    assert sorted(p.read_text() for p in tmp_path.glob("voices.json.corrupt-*")) == ["bad 0", "bad 1"]


@pytest.mark.unit
def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = VoiceCache(tmp_path)
    c.put(_entry(voice_id="v-1"))
    before = (tmp_path / "voices.json").read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_mod.os, "replace", boom)
    with pytest.raises(OSError):
        c.put(_entry(voice_id="v-2"))
    assert (tmp_path / "voices.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["voices.json"]  # no temp file left behind


@pytest.mark.unit
def test_atomic_write_syncs_file_then_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def replace(a: str, b: str) -> None:
        events.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(cache_mod.os, "fsync", fsync)
    monkeypatch.setattr(cache_mod.os, "replace", replace)
    statefile.atomic_write(tmp_path / "f.json", b"{}")
    assert events == ["fsync-file", "rename", "fsync-dir"]
    assert (tmp_path / "f.json").read_bytes() == b"{}"


def test_a_killed_writer_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    """Kill -9 a process that rewrites the cache in a loop; the file always parses."""
    import subprocess
    import sys
    import time

    VoiceCache(tmp_path).put(_entry(voice_id="v-0"))
    script = (
        "import sys; from pathlib import Path; from agent.voices.cache import VoiceCache, CacheEntry\n"
        "c = VoiceCache(Path(sys.argv[1])); c.load(); i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    c.put(CacheEntry('qwen', 'm', 'kiosk', 'sha256:aa', 'ready', f'v-{i}', extra={'pad': 'x' * 50000}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    try:
        time.sleep(0.6)
    finally:
        proc.kill()
        proc.wait()
    entries = VoiceCache(tmp_path).load()
    written = [e for e in entries if e.target_model == "m"]
    assert len(entries) == 2 and len(written) == 1 and written[0].voice_id.startswith("v-")
    assert not list(tmp_path.glob("voices.json.corrupt-*"))


@pytest.mark.unit
async def test_the_lock_holder_removes_temp_files_of_killed_writers(tmp_path: Path) -> None:
    VoiceCache(tmp_path).put(_entry())
    (tmp_path / ".voices.json.abc123.tmp").write_text("half a fi")
    async with VoiceCache(tmp_path).locked() as c:
        assert len(c.entries) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voices.json", "voices.json.lock"]


async def test_lock_serialises_two_holders(tmp_path: Path) -> None:
    order: list[str] = []

    async def hold(name: str, delay: float) -> None:
        async with VoiceCache(tmp_path).locked(timeout_s=5):
            order.append(f"{name}-in")
            await asyncio.sleep(delay)
            order.append(f"{name}-out")

    await asyncio.gather(hold("a", 0.3), hold("b", 0.0))
    assert order in (["a-in", "a-out", "b-in", "b-out"], ["b-in", "b-out", "a-in", "a-out"])


@pytest.mark.unit
async def test_lock_times_out(tmp_path: Path) -> None:
    async with VoiceCache(tmp_path).locked():
        with pytest.raises(cache_mod.CacheLocked):
            async with VoiceCache(tmp_path).locked(timeout_s=0.2):
                pass
