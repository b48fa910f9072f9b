"""Audio engine: jitter-buffered player, microphone, and sounddevice/file/null backends.

Importing this package never imports `sounddevice` (PortAudio may be missing); only opening a
`sounddevice` backend does. See docs/audio.md for the design.
"""

from agent.audio.activity import Activity, OutputActivity, OutputTap, PlayoutActivity
from agent.audio.backend import AudioConfigError, AudioError
from agent.audio.devices import (
    DeviceInfo,
    DeviceNotFoundError,
    devices_command,
    format_devices,
    list_devices,
    resolve_device,
)
from agent.audio.engine import AudioEngine
from agent.audio.microphone import MIC_RATE, MicFrame, Microphone, MicrophoneClosed
from agent.audio.playout import SOURCE_RATE, Player
from agent.audio.stats import PlayerStats, PlayState, ResponseStats

__all__ = [
    "MIC_RATE",
    "SOURCE_RATE",
    "Activity",
    "AudioConfigError",
    "AudioEngine",
    "AudioError",
    "DeviceInfo",
    "DeviceNotFoundError",
    "MicFrame",
    "Microphone",
    "MicrophoneClosed",
    "OutputActivity",
    "OutputTap",
    "PlayState",
    "Player",
    "PlayerStats",
    "PlayoutActivity",
    "ResponseStats",
    "devices_command",
    "format_devices",
    "list_devices",
    "resolve_device",
]
