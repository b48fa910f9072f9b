"""Audio device listing and selection (`voice-agent devices`, `audio.*.device`).

Selection rules for `StreamSettings.device`:

* `null` → the host's default device;
* an integer, or a string of digits → that PortAudio index (it must have channels in the needed
  direction);
* any other string → case-insensitive substring of the device name; an exact name match wins,
  otherwise the first match in PortAudio order. Names are more stable than indexes across
  reboots and re-plugs, so the watchdog resolves the name again when it reopens a device.

No match is a configuration error whose message lists the devices, so the operator can fix the
config from the log line alone.
`DeviceInfo` lives in `backend` (re-exported here) so the PortAudio backend need not import
this module, which imports it lazily.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TextIO

from agent.audio.backend import AudioConfigError, DeviceInfo

__all__ = ["DeviceInfo", "DeviceNotFoundError", "devices_command", "format_devices", "list_devices",
           "load_portaudio", "resolve_device"]


class DeviceNotFoundError(AudioConfigError):
    """`audio.<kind>.device` matches no device."""


def load_portaudio() -> ModuleType:
    """Import the sounddevice backend, or explain how to get PortAudio."""
    try:
        from agent.audio import portaudio
    except OSError as e:  # sounddevice raises OSError when libportaudio is missing
        raise AudioConfigError(
            f"PortAudio is not available ({e}); install it (Debian/Ubuntu: apt-get install "
            "libportaudio2) or use audio backend 'file' or 'null'"
        ) from None
    except ImportError as e:
        raise AudioConfigError(f"the sounddevice package is not installed ({e})") from None
    return portaudio


def list_devices() -> list[DeviceInfo]:
    """Rows for `voice-agent devices` (raises AudioConfigError without PortAudio)."""
    return load_portaudio().query()


def format_devices(rows: list[DeviceInfo]) -> str:
    """A fixed-width table; `>` marks the default output, `<` the default input."""
    if not rows:
        return "no audio devices found (is a sound server running / are you in the 'audio' group?)\n"
    width = max(len(r.name) for r in rows)
    lines = [f"    {'idx':>3}  {'name':<{width}}  {'in':>3}  {'out':>3}  {'rate':>6}  host api"]
    for r in rows:
        mark = (">" if r.default_output else " ") + ("<" if r.default_input else " ")
        lines.append(
            f"{mark}  {r.index:>3}  {r.name:<{width}}  {r.max_input_channels:>3}  "
            f"{r.max_output_channels:>3}  {r.default_samplerate:>6.0f}  {r.hostapi}"
        )
    return "\n".join(lines) + "\n"


def devices_command(stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """`voice-agent devices`: print the table; exit status 0, or 1 if PortAudio is unusable."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        rows = list_devices()
    except AudioConfigError as e:
        print(f"voice-agent: {e}", file=err)
        return 1
    out.write(format_devices(rows))
    return 0


def _describe(rows: list[DeviceInfo], kind: str) -> str:
    usable = [r for r in rows if r.channels(kind) > 0]
    if not usable:
        return f"no {kind} devices are available"
    return f"{kind} devices: " + ", ".join(f"{r.index} '{r.name}'" for r in usable)


def resolve_device(spec: int | str | None, kind: str, rows: list[DeviceInfo]) -> int | None:
    """Map a config value to a PortAudio device index (None = host default)."""
    if spec is None:
        return None
    key = f"audio.{kind}.device"
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        idx = int(spec)
        for r in rows:
            if r.index == idx:
                if r.channels(kind) <= 0:
                    raise DeviceNotFoundError(f"{key}: device {idx} '{r.name}' has no {kind} channels; {_describe(rows, kind)}")
                return idx
        raise DeviceNotFoundError(f"{key}: no device with index {idx}; {_describe(rows, kind)}")
    needle = spec.strip().lower()
    if not needle:
        raise DeviceNotFoundError(f"{key}: empty device name; {_describe(rows, kind)}")
    matches = [r for r in rows if r.channels(kind) > 0 and needle in r.name.lower()]
    if not matches:
        raise DeviceNotFoundError(f"{key}: no {kind} device matches '{spec}'; {_describe(rows, kind)}")
    exact = [r for r in matches if r.name.lower() == needle]
    return (exact or matches)[0].index
