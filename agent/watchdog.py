"""The systemd watchdog: ping `WATCHDOG=1` only while the daemon is really alive.

A process that merely exists is not alive. An always-on voice device is alive when
(1) its asyncio event loop runs — this task runs *on* the loop, so a blocked loop sends nothing,
and it also measures how late each of its own ticks fires, so a loop that keeps stalling for
longer than `max_loop_lag_s` stops the pings even between stalls; and
(2) its audio callback runs — PortAudio calls it from its own thread, which can hang inside a
driver while the loop looks fine. The callback increments a counter; the watchdog reads it
through `audio_heartbeat()` and stops pinging when it has not advanced for `audio_stall_s`.

Contract with the daemon (the daemon decides, the watchdog only reads):
- `audio_heartbeat() -> int`: a counter the audio callback increments (reading an int written by
  another thread is safe under the GIL). Any change counts as progress.
- `is_audio_expected() -> bool`: True while an audio stream is supposed to be running. The daemon
  returns False while it has closed the stream on purpose — device gone and being reopened with
  backoff (SPEC §5.6), null backends, shutdown — so a known, handled outage does not get the
  service killed. While it returns False the stall timer is held at zero, and a stream that comes
  back gets a full `audio_stall_s` to produce its first callback.

When pings stop, systemd kills the service after `WatchdogSec=` and `Restart=on-failure` starts
it again: the cure for a wedged driver or a deadlocked loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from agent import sdnotify

log = logging.getLogger("voice-agent.watchdog")


class Watchdog:
    """Pings systemd at half the watchdog interval while the loop and the audio are alive."""

    def __init__(
        self,
        interval_s: float | None = None,
        *,
        audio_heartbeat: Callable[[], int] | None = None,
        is_audio_expected: Callable[[], bool] | None = None,
        audio_stall_s: float = 5.0,
        max_loop_lag_s: float | None = None,
        ping: Callable[[], bool] = sdnotify.watchdog_ping,
    ) -> None:
        """`interval_s` defaults to what systemd asked for (`$WATCHDOG_USEC`); None = disabled.

        `max_loop_lag_s` defaults to a quarter of the interval: a loop that is that late on a
        tick is too sluggish to serve audio and the control socket in time.
        """
        self.interval_s = sdnotify.watchdog_interval() if interval_s is None else interval_s
        self._heartbeat = audio_heartbeat
        self._audio_expected = is_audio_expected or (lambda: audio_heartbeat is not None)
        self.audio_stall_s = audio_stall_s
        self.max_loop_lag_s = max_loop_lag_s
        self._ping = ping
        self._task: asyncio.Task[None] | None = None
        self.pings = 0
        self.last_lag_s = 0.0
        self.unhealthy_reason: str | None = None
        self._probe_failed = False  # log a broken probe once, not on every tick

    @property
    def enabled(self) -> bool:
        return bool(self.interval_s and self.interval_s > 0)

    def start(self) -> asyncio.Task[None] | None:
        """Start pinging on the running loop; None when systemd asked for no watchdog."""
        if not self.enabled or self._task is not None:
            return self._task
        self._task = asyncio.get_running_loop().create_task(self.run(), name="watchdog")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        if not self.enabled:
            return
        assert self.interval_s is not None
        ping_every = self.interval_s / 2
        # Tick faster than we ping, so a recovered loop pings again well before the deadline and
        # the loop lag is sampled often.
        tick = min(ping_every / 2, 1.0)
        max_lag = self.max_loop_lag_s if self.max_loop_lag_s is not None else self.interval_s / 4
        last_beat = self._read_heartbeat()
        last_progress = time.monotonic()
        last_ping: float | None = None
        expected_at = time.monotonic() + tick
        while True:
            await asyncio.sleep(max(0.0, expected_at - time.monotonic()))
            now = time.monotonic()
            self.last_lag_s = max(0.0, now - expected_at)
            expected_at = now + tick

            beat = self._read_heartbeat()
            if beat != last_beat or not self._expected():
                last_beat, last_progress = beat, now
            stalled_for = now - last_progress

            if self.last_lag_s > max_lag:
                reason = f"event loop lagging {self.last_lag_s:.1f} s (limit {max_lag:.1f} s)"
            elif stalled_for > self.audio_stall_s:
                reason = f"audio callback stalled for {stalled_for:.1f} s"
            else:
                reason = None
            self._set_reason(reason)

            if reason is None and (last_ping is None or now - last_ping >= ping_every):
                if self._ping():
                    self.pings += 1
                last_ping = now

    def _read_heartbeat(self) -> int | None:
        if self._heartbeat is None:
            return None
        try:
            return self._heartbeat()
        except Exception:  # a broken probe must read as "no progress", not kill the watchdog
            self._log_probe_failure("audio_heartbeat")
            return None

    def _expected(self) -> bool:
        if self._heartbeat is None:
            return False
        try:
            return bool(self._audio_expected())
        except Exception:
            self._log_probe_failure("is_audio_expected")
            return True

    def _log_probe_failure(self, name: str) -> None:
        if not self._probe_failed:
            self._probe_failed = True
            log.exception("watchdog: the %s probe failed (treated as no audio progress)", name)

    def _set_reason(self, reason: str | None) -> None:
        if reason == self.unhealthy_reason:
            return
        if reason is not None and self.unhealthy_reason is None:
            log.warning("watchdog: not pinging systemd: %s", reason)
        elif reason is None:
            log.info("watchdog: healthy again, pinging systemd")
        self.unhealthy_reason = reason
