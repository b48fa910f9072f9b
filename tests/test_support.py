"""The fixture layer's own rules: the unit tier's guard, the settings builder, emulator options."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.emulator import speech
from tests.support.emulator import FAST
from tests.support.settings import build_settings
from tests.support.unit import UnitTierViolation, io_forbidden

pytestmark = pytest.mark.unit


def test_a_unit_test_cannot_connect_or_bind_a_socket() -> None:
    with socket.socket() as s:
        with pytest.raises(UnitTierViolation, match="connect a socket"):
            s.connect(("127.0.0.1", 9))
        with pytest.raises(UnitTierViolation, match="bind a socket"):
            s.bind(("127.0.0.1", 0))


def test_a_unit_test_cannot_start_a_process() -> None:
    with pytest.raises(UnitTierViolation, match="start a subprocess"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)


def test_a_unit_test_cannot_start_a_shell_even_to_run_espeak() -> None:
    with pytest.raises(UnitTierViolation, match="start a subprocess"):
        subprocess.run("espeak-ng --version", shell=True, check=False)


def test_a_unit_test_may_ask_the_emulator_voice_for_speech_it_has_never_made() -> None:
    """espeak-ng is allowed: whether speech is cached must not decide whether a unit test passes."""
    speech._synthesize_cached.cache_clear()
    pcm = speech.synthesize("A sentence no other test speaks.", 16000)
    assert pcm.size > 16000 // 4 and abs(pcm).max() > 1000


async def test_a_unit_test_cannot_start_an_asyncio_process() -> None:
    with pytest.raises(UnitTierViolation, match="start a subprocess"):
        await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")


def test_the_guard_puts_back_what_it_replaced() -> None:
    before = socket.socket.connect  # this test is itself `unit`: the fixture's guard
    with io_forbidden():
        assert socket.socket.connect is not before
    assert socket.socket.connect is before


def test_settings_are_built_from_a_document_with_section_overrides(tmp_path: Path) -> None:
    (tmp_path / "user.wav").write_bytes(b"")  # the file input must exist
    s = build_settings("pipeline", base_url="http://127.0.0.1:9", work=tmp_path,
                       pipeline__input="text", audio__echo="half_duplex")
    assert s.mode == "pipeline" and s.pipeline.input == "text"
    assert s.audio.echo == "half_duplex" and s.audio.input.backend == "file"
    assert s.audio.input.path == str(tmp_path / "user.wav")
    assert s.voice.preset == "longanyang" and s.dashscope.http_url == "http://127.0.0.1:9"


def test_null_audio_settings_keep_no_files(tmp_path: Path) -> None:
    s = build_settings("omni", base_url="http://127.0.0.1:9", work=tmp_path, audio="null")
    assert s.audio.input.backend == "null" and s.audio.output.backend == "null"
    assert s.voice.preset == "Tina"


@pytest.mark.emulator(realtime_speed=8.0)
def test_an_emulator_marker_overrides_the_folder_preset(emulator_options: dict[str, Any]) -> None:
    assert emulator_options["realtime_speed"] == 8.0
    assert emulator_options["realtime_first_delta_s"] == FAST["realtime_first_delta_s"]
