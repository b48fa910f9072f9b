"""CosyVoice duplex speech synthesis: a Sans-I/O protocol core and an asyncio connection manager.

`agent.tts.protocol` holds every protocol rule without I/O; `agent.tts.connection` keeps a warm,
reused WebSocket and the synthesis lane; `agent.tts.manager` hands out `SynthesisStream`s
(`agent.tts.stream`). Dependencies run one way: manager → stream → connection → protocol.
See docs/pipeline.md.
"""

from agent.tts.connection import RateLimiter
from agent.tts.errors import SynthesisAuthError, SynthesisError
from agent.tts.manager import SynthesisManager
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
