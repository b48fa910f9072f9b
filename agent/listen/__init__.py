"""Listening front end (SPEC §10): decides locally what microphone audio goes upstream.

Building blocks, each usable alone:
- `wakeword`: wake-word detection over 16 kHz int16 PCM (pymicro-wakeword, imported lazily);
- `vad`: a cheap local voice-activity gate (pymicro-vad, imported lazily);
- `frontend`: a pure state machine turning chunks and events into uplink actions;
- `earcons`: short generated sounds a server VAD does not take for speech.

Wiring (per 16 kHz microphone chunk, before any echo gate): `voiced = gate.process(pcm)` when
`listen.vad`; `actions = fe.chunk(pcm, t_end, speaking, voiced)`; then for each detection of
`detector.process(pcm)`, `actions += fe.wake(det)` — detector and front end must see the same
chunks so their sample counts agree. Service events map to `speech_started`, `turn_ended`,
`answer_finished`; control commands to `listen`, `talk_start`, `talk_stop`. Carry out the
actions in order. This package imports no native engine at import time.
"""

from agent.listen.errors import ListenConfigError

__all__ = ["ListenConfigError"]
