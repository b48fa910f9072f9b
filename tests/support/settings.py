"""The one settings builder of the tests, and its fixture.

Settings are built from a raw document through `agent.config.settings_from_dict`, exactly as a
config file would be, never by assigning attributes (the settings are frozen). Overrides are
`section__key=value` (`pipeline__input="text"`, `audio__echo="half_duplex"`) or `section=value`
(replacing a whole section or a top-level key).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from agent.config import Settings, settings_from_dict
from tests.support.emulator import API_KEY

Audio = Literal["file", "null", "none"]

PRESET_VOICE = {"omni": "Tina", "pipeline": "longanyang"}


def _audio(work: Path, audio: Audio) -> dict[str, Any]:
    if audio == "file":  # the scripted user in, the speaker recorded
        return {"audio": {
            "input": {"backend": "file", "path": str(work / "user.wav")},
            "output": {"backend": "file", "path": str(work / "speaker.wav")},
            "echo": "none",
        }}
    if audio == "null":  # silence in (a ScriptedMic speaks on demand), nothing kept out
        return {"audio": {"input": {"backend": "null"}, "output": {"backend": "null"}, "echo": "none"}}
    return {}


def build_settings(
    mode: str = "omni",
    *,
    base_url: str,
    work: Path,
    api_key: str = API_KEY,
    audio: Audio = "file",
    voice: dict[str, Any] | None = None,
    origin: str = "<test>",
    **overrides: Any,
) -> Settings:
    """Daemon settings for `mode` against the emulator at `base_url`, state under `work`.

    `audio="file"`/`"null"` also puts the control socket in `work` and logs at info; `"none"`
    leaves audio, control and logging at their defaults (enrollment tests)."""
    raw: dict[str, Any] = {
        "mode": mode,
        "dashscope": {"http_url": base_url, "api_key": api_key},
        "voice": voice if voice is not None else {"family": "preset", "preset": PRESET_VOICE[mode]},
        "state_dir": str(work / "state"),
        **_audio(work, audio),
    }
    if mode == "pipeline":
        raw["pipeline"] = {"input": "mic"}
    if audio != "none":
        raw["control"] = {"socket": str(work / "control.sock")}
        raw["log"] = {"level": "info"}
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            raw.setdefault(section, {})[name] = value
        else:
            raw[section] = value
    return settings_from_dict(raw, origin)


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def settings_factory(tmp_path: Path) -> SettingsFactory:
    """`settings_factory(mode="omni", base_url=..., **section__key)` with state in `tmp_path`."""

    def make(mode: str = "omni", *, base_url: str, work: Path = tmp_path, **kw: Any) -> Settings:
        return build_settings(mode, base_url=base_url, work=work, **kw)

    return make
