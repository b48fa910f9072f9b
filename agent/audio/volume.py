"""Output volume (SPEC §12): 0–100 on a perceptual curve, a software gain that never clips.

The curve is dB-linear: 100 → 0 dB (unity), 1 → −50 dB, 0 → mute. Loudness is perceived
roughly logarithmically, so equal steps of the level sound like equal steps of loudness, and
−50 dB at level 1 is quiet but still audible on a kiosk speaker.

The gain is at most 1.0: the player can only attenuate. The service already sends full-scale
speech, so any gain above unity would clip its peaks (hard distortion on int16), and a
"louder than the source" setting belongs to the amplifier or the ALSA mixer, not here.

The level is kept in `state_dir/volume.json` ({"level": N}), written atomically with mode 0600
(temp file, fsync, rename); a file that cannot be read as a level is renamed aside
(`volume.json.corrupt-<unix time>`) with a warning and the default (100) is used: a bad file
must never stop the daemon from speaking.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from agent.statefile import atomic_write, set_aside

log = logging.getLogger("voice-agent.volume")

FILE_NAME = "volume.json"
DEFAULT_LEVEL = 100
FLOOR_DB = -50.0  # the gain at level 1


def validate_level(level: object) -> int:
    """The level as an int 0–100, or ValueError with a message fit for a control client."""
    if isinstance(level, bool) or not isinstance(level, int):
        raise ValueError(f"volume level must be an integer 0-100, got {level!r:.40}")
    if not 0 <= level <= 100:
        raise ValueError(f"volume level must be 0-100, got {level}")
    return level


def level_to_db(level: int) -> float:
    """dB of attenuation for a level (−inf for 0)."""
    level = validate_level(level)
    if level == 0:
        return float("-inf")
    return FLOOR_DB * (100 - level) / 99.0


def level_to_gain(level: int) -> float:
    """The linear gain (0.0–1.0) the player multiplies samples by."""
    db = level_to_db(level)
    if db == float("-inf"):
        return 0.0
    return min(1.0, 10.0 ** (db / 20.0))


class VolumeStore:
    """`state_dir/volume.json`: load at start, save on every change."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / FILE_NAME

    def load(self) -> int:
        """The saved level; DEFAULT_LEVEL when there is none or it is unreadable (set aside)."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return DEFAULT_LEVEL
        except OSError as e:
            log.warning("volume: cannot read %s (%s); using %d", self.path, e.strerror or e, DEFAULT_LEVEL)
            return DEFAULT_LEVEL
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            return validate_level(doc.get("level"))
        except (ValueError, RecursionError) as e:
            aside = set_aside(self.path)
            log.warning("volume: %s is not a saved level (%s); moved to %s, using %d",
                        self.path, e, aside.name, DEFAULT_LEVEL)
            return DEFAULT_LEVEL

    def save(self, level: int) -> None:
        """Write atomically with mode 0600 (a crash leaves the old or the new file, never half)."""
        level = validate_level(level)
        atomic_write(self.path, json.dumps({"level": level}).encode())


class Volume:
    """The daemon's volume: the level, its store, and where the gain goes.

    `apply(gain)` is `Player.set_gain`; `on_change(level)` publishes the `volume` event. The
    control socket's `volume` command and the `volume` tool both call `set()`.
    """

    def __init__(
        self,
        store: VolumeStore | None,
        apply: Callable[[float], None],
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._apply = apply
        self._on_change = on_change
        self.level = store.load() if store is not None else DEFAULT_LEVEL
        apply(level_to_gain(self.level))

    def get(self) -> int:
        return self.level

    def set(self, level: object) -> int:
        """Validate, apply at once, persist, announce. Returns the new level.

        A failed save is logged, not raised: the listener still hears the new volume.
        """
        new = validate_level(level)
        self._apply(level_to_gain(new))
        changed = new != self.level
        self.level = new
        if self._store is not None:
            try:
                self._store.save(new)
            except OSError as e:
                log.warning("volume: cannot save %s: %s", self._store.path, e.strerror or e)
        if changed and self._on_change is not None:
            self._on_change(new)
        return new

    def control(self, level: int | None) -> int:
        """The `ControlHandler.volume` shape: None reads, a level sets."""
        return self.level if level is None else self.set(level)
