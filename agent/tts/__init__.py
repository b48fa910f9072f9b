"""CosyVoice duplex speech synthesis: a Sans-I/O protocol core and an asyncio connection manager.

`agent.tts.protocol` holds every protocol rule without I/O; `agent.tts.connection` keeps a warm,
reused WebSocket and hands out `SynthesisStream`s (`agent.tts.stream`). See docs/pipeline.md.
"""

from agent.tts.connection import RateLimiter, SynthesisManager
from agent.tts.errors import SynthesisAuthError, SynthesisError
from agent.tts.protocol import SynthesisParams, SynthesisTask, TaskState
from agent.tts.stream import SynthesisStream

__all__ = [
    "RateLimiter",
    "SynthesisAuthError",
    "SynthesisError",
    "SynthesisManager",
    "SynthesisParams",
    "SynthesisStream",
    "SynthesisTask",
    "TaskState",
]
