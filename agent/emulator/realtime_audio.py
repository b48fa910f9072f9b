"""The realtime session's input audio: timeline, uncommitted buffer, resampling and VAD.

Everything is kept at 16 kHz on one session timeline (ms since the first appended sample), so
VAD timestamps (`audio_start_ms`/`audio_end_ms`) and committed segments line up exactly with
what the client sent. In server_vad mode only a short tail is kept while nobody speaks; in
manual mode the buffer is capped so a client that never commits cannot exhaust memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr

from agent.emulator.vad import ONSET_MS, EnergyVad, VadEvent

RATE = 16000
MAX_MANUAL_BUFFER_S = 300


class InputAudio:
    def __init__(self) -> None:
        self._buf = np.zeros(0, dtype=np.int16)
        self._buf_start = 0  # session sample index of _buf[0]
        self._total = 0  # samples appended since the session started (16 kHz)
        self._vad: EnergyVad | None = None
        self._vad_offset_ms = 0
        self._padding_ms = 300
        self._in_rate = RATE
        self._resampler: soxr.ResampleStream | None = None
        self.appended_any = False

    @property
    def total_ms(self) -> int:
        return self._total * 1000 // RATE

    @property
    def buffered_ms(self) -> int:
        return self._buf.size * 1000 // RATE

    @property
    def in_speech(self) -> bool:
        return self._vad is not None and self._vad.in_speech

    def configure(self, turn_detection: dict[str, Any] | None, in_rate: int) -> None:
        """Apply the session's turn detection and input rate (a new VAD starts from now)."""
        if in_rate != self._in_rate:
            self._in_rate = in_rate
            self._resampler = (
                None if in_rate == RATE else soxr.ResampleStream(in_rate, RATE, 1, dtype="int16")
            )
        if turn_detection is None:
            self._vad = None
            return
        self._padding_ms = int(turn_detection.get("prefix_padding_ms", 300) or 0)
        self._vad = EnergyVad(
            rate=RATE,
            threshold=float(turn_detection.get("threshold", 0.5)),
            prefix_padding_ms=self._padding_ms,
            silence_duration_ms=int(turn_detection.get("silence_duration_ms", 800)),
        )
        self._vad_offset_ms = self.total_ms

    def append(self, pcm: np.ndarray) -> list[VadEvent]:
        """Add client audio (at the session's input rate); VAD events on the session timeline."""
        if self._resampler is not None:
            pcm = self._resampler.resample_chunk(pcm.astype(np.int16))
        pcm = np.asarray(pcm, dtype=np.int16)
        self.appended_any = True
        self._buf = np.concatenate([self._buf, pcm])
        self._total += pcm.size
        events: list[VadEvent] = []
        if self._vad is not None:
            off = self._vad_offset_ms
            events = [
                VadEvent(e.kind, e.audio_ms + off, e.speech_ms + off) for e in self._vad.feed(pcm)
            ]
        return events

    def take(self, start_ms: int, end_ms: int) -> np.ndarray:
        """The audio between two session times; everything before `end_ms` is consumed."""
        a = max(0, start_ms * RATE // 1000 - self._buf_start)
        b = max(0, end_ms * RATE // 1000 - self._buf_start)
        segment = self._buf[a:b].copy()
        self._buf = self._buf[b:]
        self._buf_start += b
        return segment

    def take_all(self) -> np.ndarray:
        segment = self._buf
        self._buf_start += segment.size
        self._buf = np.zeros(0, dtype=np.int16)
        return segment

    def clear(self, turn_detection: dict[str, Any] | None) -> None:
        """Drop uncommitted audio and any utterance in progress."""
        self.take_all()
        self.configure(turn_detection, self._in_rate)

    def force_stop(self) -> VadEvent | None:
        """End an utterance in progress (the session is finishing)."""
        if self._vad is None:
            return None
        event = self._vad.force_stop()
        if event is None:
            return None
        off = self._vad_offset_ms
        return VadEvent(event.kind, event.audio_ms + off, event.speech_ms + off)

    def trim(self) -> None:
        """Forget audio no utterance can need any more (call after handling `append`'s events)."""
        if self._vad is not None:
            if self._vad.in_speech:
                return
            keep = (self._padding_ms + ONSET_MS + 200) * RATE // 1000
        else:
            keep = MAX_MANUAL_BUFFER_S * RATE
        excess = self._buf.size - keep
        if excess > 0:
            self._buf = self._buf[excess:]
            self._buf_start += excess
