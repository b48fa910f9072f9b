"""The daemon's integration surface (SPEC §12) in one object: events, volume, metrics.

The daemon owns one `Integration` for its life and wires it in four places:

* `Status`: the integration connects `status.publish` to its bus (state changes and errors,
  and the modes' transcripts and turns, go out through it) and keeps `status.volume` current;
* the player: `integration.attach_player(engine.player)` once the audio engine exists (the saved
  volume is applied before the first answer plays);
* the control socket: its handler exposes `events = integration.events` and
  `volume(level) = integration.volume(level)` (`control.IntegrationHandler`);
* the life cycle: `await integration.start()` after the audio engine, `await integration.close()`
  at shutdown (ends every event stream, stops the metrics endpoint).

Modes publish the other events on `integration.events` (wake, transcript, turn, tool).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from agent.audio.volume import Volume, VolumeStore
from agent.events import EventBus
from agent.status import Status

if TYPE_CHECKING:
    from agent.audio.playout import Player
    from agent.metrics import Metrics

log = logging.getLogger("voice-agent.integration")


class Integration:
    """Events, volume and metrics for one daemon (see the module docstring for the wiring)."""

    def __init__(
        self, status: Status, state_dir: Path | None, metrics_listen: tuple[str, int] | None = None
    ) -> None:
        """`metrics_listen` is `metrics.parse_listen(settings.metrics.listen)` (None: off)."""
        self.status = status
        self.events = EventBus()
        status.publish = self.events.publish
        self._player: Player | None = None
        self._gain = 1.0
        store = VolumeStore(state_dir) if state_dir is not None else None
        self._volume = Volume(store, self._apply_gain, self._volume_changed)
        status.volume = self._volume.level
        self.events.publish("volume", level=self._volume.level)  # the first line for subscribers
        self._metrics_listen = metrics_listen
        self.metrics: Metrics | None = None

    def attach_player(self, player: Player) -> None:
        """The player the volume acts on; it gets the current gain at once."""
        self._player = player
        player.set_gain(self._gain)

    def volume(self, level: int | None) -> int:
        """`ControlHandler.volume` and the `volume` tool: read (None) or set 0–100."""
        return self._volume.control(level)

    def _apply_gain(self, gain: float) -> None:
        self._gain = gain
        if self._player is not None:
            self._player.set_gain(gain)

    def _volume_changed(self, level: int) -> None:
        log.info("volume %d", level)
        self.status.volume = level
        self.events.publish("volume", level=level)

    @property
    def level(self) -> int:
        """For `status` (SPEC §6 `volume`)."""
        return self._volume.level

    async def start(self) -> None:
        """Bind the bus to the running loop (events from other threads are handed over to it)
        and start the metrics endpoint if `metrics.listen` is set (after the audio engine)."""
        self.events.bind_loop()
        if self._metrics_listen is None:
            return
        from agent.metrics import Metrics

        host, port = self._metrics_listen
        player = self._player
        self.metrics = Metrics(
            self.status,
            self.events,
            received_s=(lambda: player.received_frames / player.rate) if player is not None else None,
            responses=player.finished_responses if player is not None else None,
        )
        await self.metrics.start(host, port)

    async def close(self) -> None:
        """Shutdown: event streams end after their queued lines; metrics stop."""
        self.events.close()
        if self.metrics is not None:
            await self.metrics.close()
            self.metrics = None
