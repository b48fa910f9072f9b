"""State shared by every emulator handler: options, fault plan, in-memory stores, auth check.

One `EmulatorContext` per running emulator. HTTP and WebSocket handlers receive it explicitly
(no globals), so several emulators can run side by side in one test process.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from agent.emulator.faults import FaultPlan
from agent.emulator.observe import ConnectionHook, Observer, ReceivedHook, SentHook

DEFAULT_API_KEY = "sk-emulator"


@dataclass
class EmulatorOptions:
    """Timing knobs. Defaults feel like the cloud; tests shrink them to stay fast."""

    api_key: str = DEFAULT_API_KEY
    enroll_delay_s: float = 2.0  # CosyVoice clone: DEPLOYING -> OK after this long
    llm_first_token_s: float = 0.15
    llm_token_s: float = 0.02
    realtime_first_delta_s: float = 0.2
    realtime_chunk_ms: int = 100
    realtime_speed: float = 4.0  # audio deltas are streamed this many times faster than real time
    cosyvoice_first_audio_s: float = 0.15
    cosyvoice_text_gap_s: float = 23.0
    cosyvoice_idle_close_s: float = 60.0
    # added by the WS/speech helper: CosyVoice audio pacing (× real time) and the realtime
    # session cap (the cloud closes a realtime socket after 120 minutes; tests shrink it)
    cosyvoice_speed: float = 4.0
    realtime_session_max_s: float = 7200.0
    voice_quota: int = 1000  # per model family, like the per-account cloud quota
    # intl | cn: follow that region's capability rows (see region.py); None: everything everywhere
    region: str | None = None
    # Observation hooks (see observe.py): what is sent, and when; None = not observed.
    on_sent: SentHook | None = field(default=None, repr=False, compare=False)
    on_connection: ConnectionHook | None = field(default=None, repr=False, compare=False)
    on_received: ReceivedHook | None = field(default=None, repr=False, compare=False)


@dataclass
class StoredUpload:
    """A file posted to the emulated OSS bucket, addressable as `oss://<key>`."""

    data: bytes
    content_type: str
    model: str  # the model named in getPolicy; the real service binds the file to it
    created: float


@dataclass
class Stores:
    """In-memory state; lost when the emulator stops (the cloud's is not, integrators beware)."""

    cosy_voices: dict[str, dict[str, Any]] = field(default_factory=dict)
    qwen_voices: dict[str, dict[str, Any]] = field(default_factory=dict)
    design_voices: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: dict[str, StoredUpload] = field(default_factory=dict)  # OSS key -> file


class EmulatorContext:
    def __init__(
        self, options: EmulatorOptions | None = None, faults: FaultPlan | str | None = None
    ) -> None:
        self.options = options or EmulatorOptions()
        self.faults = faults if isinstance(faults, FaultPlan) else FaultPlan(faults)
        self.stores = Stores()
        self.base_url = ""  # set by Emulator.start(); needed for upload_host
        self.log = logging.getLogger("agent.emulator")
        self.observer = Observer(self.options)

    # kept as attributes too so handlers can write ctx.voices / ctx.uploads
    @property
    def voices(self) -> dict[str, dict[str, Any]]:
        return self.stores.cosy_voices

    @property
    def uploads(self) -> dict[str, StoredUpload]:
        return self.stores.uploads

    def check_auth(self, request: Any) -> bool:
        """True when the request carries `Authorization: Bearer <the one accepted key>`."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        return scheme.lower() == "bearer" and token.strip() == self.options.api_key

    @staticmethod
    def new_request_id() -> str:
        return str(uuid.uuid4())
