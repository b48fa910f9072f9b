"""`SynthesisManager`: the socket pool plus `begin()`, which starts a `SynthesisStream`.

The dependency runs one way: manager → stream → connection (the socket and its pool). The
connection delivers frames to whichever stream claimed it (`FrameSink`); the stream uses the
pool's public lane and socket API; nothing calls back up. See `agent.tts.connection` for the
recovery rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from agent.capabilities import cancel_supported
from agent.config import Settings
from agent.endpoints import resolve_endpoints
from agent.tts.connection import SocketPool
from agent.tts.protocol import SynthesisParams
from agent.tts.stream import SynthesisStream

_PARAM_FIELDS = {f.name for f in fields(SynthesisParams)} - {"model", "voice", "extra"}


class SynthesisManager(SocketPool):
    """Owns the synthesis socket; `begin()` starts a `SynthesisStream` (one task, or a chain)."""

    @classmethod
    def from_settings(cls, settings: Settings, api_key: str, **kw: Any) -> SynthesisManager:
        ep = resolve_endpoints(settings.dashscope)
        kw.setdefault("cancel_directive",
                      cancel_supported(settings.dashscope.region, settings.pipeline.tts_model))
        return cls(ep.inference_ws, api_key, workspace=settings.dashscope.workspace, **kw)

    async def begin(
        self, voice: str, model: str, params: Mapping[str, Any] | None = None
    ) -> SynthesisStream:
        """Start a synthesis task (run-task sent; text may follow at once).

        Waits for the lane: one synthesis at a time, in the order asked. A stream still running
        from an earlier `begin()` is cancelled first: a new utterance supersedes the old one, as
        a new run-task does on the server. The stream releases the lane when it ends.
        `params`: volume, rate, pitch, format, sample_rate, or any extra run-task parameter.
        """
        extra = {k: v for k, v in (params or {}).items() if k not in _PARAM_FIELDS}
        known = {k: v for k, v in (params or {}).items() if k in _PARAM_FIELDS}
        sp = SynthesisParams(model=model, voice=voice, extra=extra, **known)
        if self.holder is not None and not self.holder.ended:
            await self.holder.cancel()
        await self.lease()
        stream = SynthesisStream(self, sp)
        self.holder = stream
        try:
            await stream.start()
        except BaseException:
            stream.abort()
            raise
        return stream


__all__ = ["SynthesisManager"]
