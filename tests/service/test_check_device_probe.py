"""`voice-agent check` probes a sound card the way the engine opens it: `negotiate_rate`."""

from __future__ import annotations

import types

import pytest

from agent.audio import devices
from agent.audio.backend import DeviceInfo
from agent.check.local import _check_sounddevice

pytestmark = pytest.mark.unit

ROWS = [
    DeviceInfo(0, "USB mic", "ALSA", 1, 0, 48000.0, default_input=True),
    DeviceInfo(1, "HDMI", "ALSA", 0, 2, 48000.0, default_output=True),
]


def fake_portaudio(accepted: dict[int, set[int]], calls: list[tuple[str, int | None, str, int]]) -> types.ModuleType:
    """A PortAudio whose devices open only at the `accepted` rates; negotiation as in portaudio."""
    pa = types.ModuleType("fake_portaudio")

    def negotiate_rate(device: int | None, kind: str, preferred: int) -> int:
        calls.append(("negotiate", device, kind, preferred))
        return preferred if preferred in accepted[device or 0] else int(ROWS[device or 0].default_samplerate)

    def open_problem(device: int | None, kind: str, rate: int) -> str | None:
        calls.append(("open", device, kind, rate))
        return None if rate in accepted[device or 0] else "Invalid sample rate [PaErrorCode -9997]"

    pa.query = lambda: ROWS  # type: ignore[attr-defined]
    pa.negotiate_rate = negotiate_rate  # type: ignore[attr-defined]
    pa.open_problem = open_problem  # type: ignore[attr-defined]
    return pa


def test_the_preferred_rate_is_negotiated_like_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, int | None, str, int]] = []
    monkeypatch.setattr(devices, "load_portaudio", lambda: fake_portaudio({0: {16000, 48000}, 1: {48000}}, calls))
    mic = _check_sounddevice("input", None, 16000)
    assert mic.ok and mic.detail == "USB mic (#0) opens at 16000 Hz"
    speaker = _check_sounddevice("output", "hdmi", 24000)
    assert speaker.ok and speaker.detail == "HDMI (#1) opens at 48000 Hz (resampled to/from 24000 Hz)"
    assert ("negotiate", 1, "output", 24000) in calls and ("open", 1, "output", 48000) in calls


def test_a_device_that_opens_at_no_rate_fails_with_portaudios_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "load_portaudio", lambda: fake_portaudio({0: set(), 1: set()}, []))
    r = _check_sounddevice("output", 1, 24000)
    assert not r.ok and "HDMI (#1) cannot be opened: Invalid sample rate" in r.detail
    assert r.fix and "voice-agent devices" in r.fix


def test_an_unknown_device_name_lists_the_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "load_portaudio", lambda: fake_portaudio({0: set(), 1: set()}, []))
    r = _check_sounddevice("input", "no-such-card", 16000)
    assert not r.ok and "USB mic" in r.detail
