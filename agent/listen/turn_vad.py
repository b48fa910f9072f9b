"""Speech per chunk for the end-of-turn decider: a VAD that lets go of speech promptly.

The end of a turn is measured from the moment the VAD stops hearing speech, so what matters here
is the offset lag, not only accuracy. bench/turn.py measured on synthesized speech: pymicro-vad
(the front end's gate) keeps scoring >= 0.5 for ~650 ms after speech ends (it smooths over a
long context: fine for gating the uplink, too slow for ending turns); WebRTC's GMM VAD lets go
within 0–110 ms for 0.2 ms of CPU per audio second; Silero v6 within ~60 ms for ~46 ms. WebRTC
(`webrtcvad-wheels`, MIT, in the `[turn]` extra) is the default; pymicro-vad stays available.
No hang-over: the decider counts the silence itself. Engines are imported lazily.
"""

from __future__ import annotations

from typing import Any

from agent.listen.errors import ListenConfigError

RATE = 16000
ENGINES = ("webrtc", "micro")
KEY = "listen.end_of_turn"


class SpeechFrames:
    """Whether a chunk of 16 kHz int16 PCM held speech, per VAD engine, frames re-cut inside.

    A chunk too short to complete a frame keeps the previous verdict (nothing new was heard).
    """

    def __init__(self, engine: str = "webrtc", aggressiveness: int = 2) -> None:
        self.engine = engine
        self._pending = b""
        self._last = False
        if engine == "webrtc":
            try:
                import webrtcvad
            except ImportError as exc:
                raise ListenConfigError(KEY, "needs webrtcvad-wheels: pip install 'voice-agent[turn]'") from exc
            self._vad: Any = webrtcvad.Vad(aggressiveness)
            self._frame_bytes = 320 * 2  # 20 ms
        elif engine == "micro":
            from agent.listen.vad import VadGate

            self._gate = VadGate(hangover_ms=0)
        else:
            raise ValueError(f"unknown VAD engine {engine!r} (one of {', '.join(ENGINES)})")

    def __call__(self, pcm: bytes) -> bool:
        if self.engine == "micro":
            self._gate.process(pcm)
            return self._gate.last_chunk_speech
        data = self._pending + pcm if self._pending else pcm
        n = len(data) // self._frame_bytes
        if n:
            fb = self._frame_bytes
            # every frame goes through the VAD (its state adapts per frame): no short-circuit
            self._last = any([self._vad.is_speech(data[i * fb : (i + 1) * fb], RATE) for i in range(n)])
        self._pending = bytes(data[n * self._frame_bytes :])
        return self._last

    def reset(self) -> None:
        """Forget partial frames and the last verdict (a new turn, a reopened microphone)."""
        self._pending = b""
        self._last = False
        if self.engine == "micro":
            self._gate.reset()
