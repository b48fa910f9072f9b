"""Energy-based voice activity detection for the emulator's realtime endpoint.

The cloud's server_vad decides when the user started and stopped talking; the emulator must do
the same on the audio the client really appends, or a client's turn-taking, barge-in and
latency code is never exercised. This is a classic energy detector: 20 ms frames, a noise floor
tracked by minimum statistics (so it adapts to a steady fan or hum), an onset needing a few
consecutive loud frames (so clicks do not start turns), and a hangover of `silence_duration_ms`.
Streaming: feed chunks of any size; events come out in order with session-relative timestamps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

FRAME_MS = 20
ONSET_MS = 60  # consecutive active audio needed to declare speech (rejects clicks)
FLOOR_WINDOW_MS = 3000  # minimum-statistics window of the noise floor
ABS_MIN_DB = -50.0  # quieter than this is never speech, whatever the floor
FLOOR_CAP_DB = -30.0  # louder "noise" than this is taken to be speech, not floor
SILENT_DB = -96.0  # energy of digital silence (avoids log(0))

EventKind = Literal["speech_started", "speech_stopped"]


@dataclass(frozen=True)
class VadEvent:
    """One VAD decision.

    `audio_ms` follows the realtime protocol: for speech_started it is where the committed audio
    begins (speech onset minus prefix padding); for speech_stopped it is when the stop was
    decided (last voiced frame plus the silence duration). `speech_ms` is the unpadded onset or
    the end of the last voiced frame, i.e. the real edges of the utterance.
    """

    kind: EventKind
    audio_ms: int
    speech_ms: int


def margin_db(threshold: float) -> float:
    """Map the protocol's threshold ([-1, 1], default 0.5) to dB above the noise floor.

    Higher threshold = less sensitive, like the cloud's: 0.5 → 13.5 dB, 0.2 → 10.8 dB,
    1.0 → 18 dB; very low thresholds bottom out at 3 dB so noise alone cannot trigger.
    """
    t = min(1.0, max(-1.0, float(threshold)))
    return max(3.0, 9.0 + 9.0 * t)


class EnergyVad:
    """Streaming energy VAD over mono int16 PCM."""

    def __init__(
        self,
        rate: int = 16000,
        threshold: float = 0.5,
        prefix_padding_ms: int = 300,
        silence_duration_ms: int = 800,
    ) -> None:
        self.rate = rate
        self.frame_len = rate * FRAME_MS // 1000
        self.margin_db = margin_db(threshold)
        self.prefix_padding_ms = max(0, int(prefix_padding_ms))
        self.silence_frames = max(1, int(silence_duration_ms) // FRAME_MS)
        self.onset_frames = ONSET_MS // FRAME_MS
        self._history: deque[float] = deque(maxlen=FLOOR_WINDOW_MS // FRAME_MS)
        self._pending = np.zeros(0, dtype=np.int16)
        self._frames = 0  # frames processed since the session started
        self._run = 0  # consecutive active frames (while idle) / inactive frames (in speech)
        self._last_voiced_end = 0  # frame index after the last active frame
        self.in_speech = False
        self.speech_start_ms = 0  # unpadded onset of the current/last speech

    @property
    def processed_ms(self) -> int:
        """Audio consumed so far (whole frames), in ms since the session started."""
        return self._frames * FRAME_MS

    @property
    def noise_floor_db(self) -> float:
        if not self._history:
            return SILENT_DB
        return min(min(self._history) + 1.0, FLOOR_CAP_DB)

    def feed(self, pcm: np.ndarray) -> list[VadEvent]:
        """Consume PCM and return the events it caused (possibly none)."""
        data = np.concatenate([self._pending, np.asarray(pcm, dtype=np.int16).ravel()])
        n = data.size // self.frame_len
        self._pending = data[n * self.frame_len :]
        if n == 0:
            return []
        frames = data[: n * self.frame_len].astype(np.float64).reshape(n, self.frame_len)
        rms = np.sqrt(np.mean(frames * frames, axis=1)) / 32768.0
        energies = 20.0 * np.log10(np.maximum(rms, 10 ** (SILENT_DB / 20)))
        events: list[VadEvent] = []
        for e in energies:
            event = self._step(float(e))
            if event is not None:
                events.append(event)
        return events

    def force_stop(self) -> VadEvent | None:
        """End an utterance in progress now (e.g. the session is finishing)."""
        if not self.in_speech:
            return None
        self.in_speech = False
        self._run = 0
        end = self._last_voiced_end * FRAME_MS
        return VadEvent("speech_stopped", self.processed_ms, end)

    def _step(self, energy_db: float) -> VadEvent | None:
        floor = self.noise_floor_db
        self._history.append(energy_db)
        active = energy_db > max(floor + self.margin_db, ABS_MIN_DB)
        self._frames += 1
        if not self.in_speech:
            self._run = self._run + 1 if active else 0
            if self._run >= self.onset_frames:
                self.in_speech = True
                onset = self._frames - self._run
                self._run = 0
                self._last_voiced_end = self._frames
                self.speech_start_ms = onset * FRAME_MS
                start = max(0, self.speech_start_ms - self.prefix_padding_ms)
                return VadEvent("speech_started", start, self.speech_start_ms)
            return None
        if active:
            self._run = 0
            self._last_voiced_end = self._frames
            return None
        self._run += 1
        if self._run >= self.silence_frames:
            self.in_speech = False
            self._run = 0
            return VadEvent("speech_stopped", self.processed_ms, self._last_voiced_end * FRAME_MS)
        return None
