"""What the daemon needs from a mode (omni or pipeline), and the records both modes publish.

The daemon starts exactly one mode and treats it through `Mode` only: the control socket's
`say`/`ask`/`interrupt`, voice changes after re-verification and shutdown must behave the same
whichever mode runs. `Turn` (one exchange) and `Announcement` (one `say`) are shared so the demo,
the tests and the logs read both modes alike.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from agent.capabilities import default_system_voice
from agent.llm_history import ToolExchange


def cosyvoice_system_voice(tts_model: str) -> str | None:
    """The CosyVoice system voice used when no enrolled CosyVoice voice is available: in omni mode
    (whose enrolled voice belongs to the Omni model) and while pipeline mode has no enrolled voice.

    It depends on the model (audit R11): v3 `longanyang`, v2 `longxiaochun_v2`; v3.5 has no system
    voices at all (None), so only `voice.preset` or an enrolled voice can speak there.
    """
    return default_system_voice(tts_model)


def no_voice_message(tts_model: str) -> str:
    """Why nothing can be spoken with `tts_model`, and what to set (names voice.preset)."""
    return (f"{tts_model} has no system voices and no voice is enrolled yet: set voice.preset to a "
            f"voice made for {tts_model} (or use pipeline.tts_model: cosyvoice-v3-flash)")


_COSYVOICE_VOICE = re.compile(r"(long|loong)[a-z0-9_]+|cosyvoice-[a-z0-9.-]+")


def is_cosyvoice_voice(name: str | None) -> bool:
    """System voices are named long…/loong… (longanyang, longxiaochun_v2); clones cosyvoice-…."""
    return name is not None and _COSYVOICE_VOICE.fullmatch(name) is not None


@dataclass
class Turn:
    """What one exchange looked like, for logs, the demo and the status.

    Times are `time.monotonic()` seconds; `*_ms` fields are durations. The pipeline-only fields
    stay None in omni mode (the Omni model does LLM and synthesis in one step).
    """

    heard: str = ""
    answered: str = ""
    speech_end_at: float | None = None
    latency_ms: float | None = None  # end of user speech → first answer sample at the output
    response_id: str | None = None
    interrupted: bool = False
    heard_ms: float | None = None  # of the answer, when the user cut it off
    error: str | None = None  # why it failed (LLM, synthesis, the response, the session); else None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # --- pipeline mode ---
    llm_first_token_ms: float | None = None  # LLM request sent → first text delta
    synthesis_first_audio_ms: float | None = None  # first text sent to CosyVoice → first audio
    llm_finished_at: float | None = None  # the LLM stream's final event arrived
    pieces: list[tuple[float, str]] = field(default_factory=list)  # (sent at, text) to synthesis
    tools: ToolExchange | None = None  # the calls made and their results, for the LLM history

    @property
    def text_sent(self) -> str:
        """Everything handed to the synthesizer, in order."""
        return "".join(text for _, text in self.pieces)


@dataclass
class Announcement:
    """One `say`: text spoken verbatim through CosyVoice, without the LLM."""

    text: str
    response_id: str | None = None
    interrupted: bool = False
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Mode(Protocol):
    """The surface the daemon and the control socket use; OmniMode and PipelineMode provide it."""

    turn_listeners: list[asyncio.Queue[Turn]]

    async def run(self) -> None:
        """Serve until stopped (or cancelled); never returns because of a network failure."""

    async def stop(self, timeout: float = 2.0) -> None:
        """End sessions politely (bounded by `timeout`), for SIGTERM."""

    async def ask(self, text: str) -> object:
        """Run a turn with `text` as the user's words."""

    async def say(self, text: str) -> Announcement:
        """Queue `text` to be spoken verbatim; returns at once (`done` is set when played)."""

    async def interrupt(self) -> None:
        """Barge-in from software: silence the answer now."""

    async def set_voice(self, voice: str | None) -> None:
        """Speak with another voice from now on."""


def publish_turn(publish: Callable[..., None], turn: Turn) -> None:
    """The SPEC §12 `turn` event for a finished exchange (both modes publish it alike)."""
    publish("turn", latency_ms=None if turn.latency_ms is None else round(turn.latency_ms, 1),
            interrupted=turn.interrupted, heard_ms=turn.heard_ms)
