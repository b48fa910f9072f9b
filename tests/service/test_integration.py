"""The integration surface wired together: Status → events, control volume → player, metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.audio.playout import Player
from agent.audio.virtual import VirtualClock, VirtualOutput
from agent.audio.volume import level_to_gain
from agent.control import ControlServer, IntegrationHandler
from agent.integration import Integration
from agent.status import AgentState, Status
from tests.service.control_fakes import Client, FakeHandler
from tests.support.integration import scrape, value


class Handler(FakeHandler):
    """A control handler the way the daemon builds it from its Integration."""

    def __init__(self, integration: Integration) -> None:
        super().__init__()
        self.integration = integration
        self.events = integration.events

    def volume(self, level: int | None) -> int:
        return self.integration.volume(level)


def player() -> tuple[Player, VirtualOutput]:
    clk = VirtualClock(0.0)
    p = Player(clock=clk)
    return p, VirtualOutput(p, clk, block=240, latency=0.0)


async def test_volume_set_over_the_socket_reaches_the_player_and_survives_a_restart(tmp_path: Path,
                                                                                   short_dir: Path) -> None:
    status = Status(mode="omni")
    integ = Integration(status, tmp_path)
    p, _ = player()
    integ.attach_player(p)
    assert p.gain_target == 1.0
    handler = Handler(integ)
    assert isinstance(handler, IntegrationHandler)
    async with ControlServer(handler, short_dir / "c.sock") as server:
        sub = await Client.connect(server.path)
        assert await sub.request({"cmd": "subscribe"}) == {"ok": True}
        first = await sub.reply()
        assert (first["event"], first["level"]) == ("volume", 100)  # replayed: the current level
        c = await Client.connect(server.path)
        assert await c.request({"cmd": "volume", "level": 30}) == {"ok": True, "volume": 30}
        assert p.gain_target == level_to_gain(30)
        event: dict[str, Any] = await sub.reply()
        assert (event["event"], event["level"]) == ("volume", 30)
        await c.close()
        await sub.close()
    await integ.close()

    again = Integration(Status(mode="omni"), tmp_path)  # a restart
    p2, _ = player()
    again.attach_player(p2)
    assert again.level == 30 and p2.gain_target == level_to_gain(30)


async def test_state_changes_reach_subscribers_and_metrics_move(tmp_path: Path, short_dir: Path) -> None:
    status = Status(mode="omni")
    integ = Integration(status, tmp_path, metrics_listen=("127.0.0.1", 0))
    p, dev = player()
    integ.attach_player(p)
    await integ.start()
    assert integ.metrics is not None
    async with ControlServer(Handler(integ), short_dir / "c.sock") as server:
        sub = await Client.connect(server.path)
        assert await sub.request({"cmd": "subscribe"}) == {"ok": True}
        assert (await sub.reply())["event"] == "volume"  # replayed: the current level
        for state in ("idle", "listening", "listening", "thinking", "speaking", "idle"):
            status.set_state(AgentState(state), "why")  # the modes' calls
        status.error("network down")
        got = [await sub.reply() for _ in range(6)]
        assert [e.get("state") or e.get("message") for e in got] == [
            "idle", "listening", "thinking", "speaking", "idle", "network down"]

        status.turns = 4
        p.begin("r1")
        p.feed("r1", np.full(12000, 1000, dtype=np.int16))  # 0.5 s received
        p.end("r1")
        dev.run_until(1.0)
        integ.events.publish("turn", latency_ms=640.0, interrupted=False, heard_ms=None)
        _, _, body = await scrape(integ.metrics.port)
        assert value(body, "voice_agent_turns_total") == 4
        assert value(body, "voice_agent_errors_total") == 1
        assert value(body, "voice_agent_audio_received_seconds_total") == 0.5
        assert value(body, "voice_agent_voice_to_voice_latency_seconds_count") == 1
        assert value(body, "voice_agent_playout_added_latency_seconds_count") == 1
        await sub.close()
    await integ.close()
    assert integ.metrics is None
