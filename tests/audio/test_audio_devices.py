"""Device selection rules, the `devices` listing, and that nothing imports sounddevice eagerly."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from agent.audio import devices as devmod
from agent.audio.devices import DeviceInfo, DeviceNotFoundError, format_devices, resolve_device
from agent.config import ConfigError

ROWS = [
    DeviceInfo(0, "HDA Intel PCH: ALC3246 Analog (hw:0,0)", "ALSA", 2, 2, 48000.0),
    DeviceInfo(1, "USB Audio Device: - (hw:1,0)", "ALSA", 1, 0, 44100.0),
    DeviceInfo(2, "pulse", "ALSA", 32, 32, 44100.0, default_input=True, default_output=True),
    DeviceInfo(3, "Speaker Pulse Out", "ALSA", 0, 2, 48000.0),
]


@pytest.mark.unit
def test_resolve_by_default_index_and_numeric_string():
    assert resolve_device(None, "output", ROWS) is None
    assert resolve_device(0, "output", ROWS) == 0
    assert resolve_device("2", "input", ROWS) == 2


@pytest.mark.unit
def test_resolve_by_substring_respects_direction_and_prefers_exact():
    assert resolve_device("usb", "input", ROWS) == 1
    assert resolve_device("PULSE", "output", ROWS) == 2  # exact name beats "Speaker Pulse Out"
    assert resolve_device("speaker", "output", ROWS) == 3


@pytest.mark.unit
def test_no_match_lists_devices_and_is_a_config_error():
    with pytest.raises(DeviceNotFoundError) as e:
        resolve_device("usb", "output", ROWS)  # the USB device has no output channels
    msg = str(e.value)
    assert "audio.output.device" in msg and "'usb'" in msg
    assert "0 'HDA Intel PCH" in msg and "3 'Speaker Pulse Out'" in msg
    assert isinstance(e.value, ConfigError)
    with pytest.raises(DeviceNotFoundError, match="no device with index 9"):
        resolve_device(9, "input", ROWS)
    with pytest.raises(DeviceNotFoundError, match="has no input channels"):
        resolve_device(3, "input", ROWS)


@pytest.mark.unit
def test_format_devices_table():
    text = format_devices(ROWS)
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["idx", "name", "in", "out", "rate"]
    assert "><" in lines[3] and "pulse" in lines[3]
    assert "44100" in lines[2]
    assert "no audio devices" in format_devices([])


@pytest.mark.unit
def test_devices_command_exit_status(monkeypatch):
    monkeypatch.setattr(devmod, "list_devices", lambda: ROWS)
    out = io.StringIO()
    assert devmod.devices_command(out, io.StringIO()) == 0
    assert "USB Audio Device" in out.getvalue()

    def broken():
        raise devmod.AudioConfigError("PortAudio is not available (x)")

    monkeypatch.setattr(devmod, "list_devices", broken)
    err = io.StringIO()
    assert devmod.devices_command(io.StringIO(), err) == 1
    assert "PortAudio is not available" in err.getvalue()


def test_audio_package_and_file_engine_do_not_import_sounddevice():
    code = (
        "import sys, asyncio\n"
        "from agent.audio import AudioEngine\n"
        "from agent.config import AudioSettings, StreamSettings\n"
        "async def m():\n"
        "    e = AudioEngine(AudioSettings(input=StreamSettings(backend='null'), output=StreamSettings(backend='null')))\n"
        "    await e.start(); await asyncio.sleep(0.05); await e.stop()\n"
        "asyncio.run(m())\n"
        "print('sounddevice' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_negotiate_rate_falls_back_to_device_default(monkeypatch):
    pa = pytest.importorskip("agent.audio.portaudio", exc_type=OSError)
    sd = pa.sd

    def check(device=None, samplerate=None, **kw):
        if samplerate != 48000:
            raise sd.PortAudioError("Invalid sample rate")

    monkeypatch.setattr(sd, "check_output_settings", check)
    monkeypatch.setattr(sd, "check_input_settings", check)
    monkeypatch.setattr(sd, "query_devices", lambda device=None, kind=None: {"default_samplerate": 48000.0})
    assert pa.negotiate_rate(None, "output", 24000) == 48000
    assert pa.negotiate_rate(None, "input", 16000) == 48000
    monkeypatch.setattr(sd, "check_output_settings", lambda **kw: None)
    assert pa.negotiate_rate(None, "output", 24000) == 24000
