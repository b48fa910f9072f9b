"""Listening front end (SPEC §10): decides locally what microphone audio goes upstream.

Building blocks, each usable alone:
- `wakeword`: wake-word detection over 16 kHz int16 PCM (pymicro-wakeword, imported lazily);
- `vad`: a cheap local voice-activity gate (pymicro-vad, imported lazily);
- `frontend`: a pure state machine turning chunks and events into uplink actions;
- `earcons`: short generated sounds a server VAD does not take for speech.

This package imports no native engine at import time, so `listen.mode: always` costs nothing.
"""

from agent.listen.errors import ListenConfigError

__all__ = ["ListenConfigError"]
