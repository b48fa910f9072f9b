"""What the device sent upstream, read on the emulator's side (its `on_received` hook).

The listening front end's promise is about what leaves the device, so the tests read it where it
arrives: every `input_audio_buffer.append` the emulator received, per realtime connection, with
its arrival time, decoded back to 16 kHz PCM.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.emulator.observe import ReceivedFrame
from tests.support.audio import locate

RATE = 16000


@dataclass
class Upstream:
    """Collects appended audio and other client events; pass `hooks()` as emulator options."""

    appends: list[tuple[float, bytes]] = field(default_factory=list)
    peers: list[int] = field(default_factory=list)  # the connection of each append
    events: list[tuple[float, str]] = field(default_factory=list)

    def hooks(self) -> dict[str, Any]:
        return {"on_received": self._on_received}

    def _on_received(self, frame: ReceivedFrame, t: float) -> None:
        try:
            event = json.loads(frame.data)
        except ValueError:
            return
        kind = str(event.get("type"))
        self.events.append((t, kind))
        if kind == "input_audio_buffer.append":
            self.appends.append((t, base64.b64decode(event.get("audio", ""))))
            self.peers.append(frame.peer.n)

    @property
    def seconds(self) -> float:
        return sum(len(pcm) for _, pcm in self.appends) / 2 / RATE

    def pcm(self, peer: int | None = None) -> np.ndarray:
        """Everything appended (to connection `peer` only, if given)."""
        return np.frombuffer(b"".join(pcm for (_, pcm), n in zip(self.appends, self.peers, strict=True)
                                      if peer is None or n == peer), dtype=np.int16)

    def first_append_at(self) -> float | None:
        return self.appends[0][0] if self.appends else None

    def sent(self, kind: str) -> list[float]:
        return [t for t, k in self.events if k == kind]


def contains(haystack: np.ndarray, needle: np.ndarray) -> bool:
    """`needle` appears whole in `haystack`, sample for sample up to the file microphone's
    float round trip (±2 LSB), found by cross-correlation."""
    if len(needle) == 0 or len(haystack) < len(needle):
        return False
    idx, corr = locate(haystack, needle)
    diff = haystack[idx : idx + len(needle)].astype(np.int32) - needle.astype(np.int32)
    return corr > 0.999 and int(np.abs(diff).max()) <= 2
