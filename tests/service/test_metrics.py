"""`metrics.listen` (SPEC §12): the address check and the Prometheus endpoint over real HTTP."""

from __future__ import annotations

import asyncio
import builtins
import sys

import pytest

from agent.audio.stats import ResponseStats
from agent.events import EventBus
from agent.metrics import Metrics, parse_listen, require_prometheus
from agent.status import Status
from tests.support.integration import scrape, value


@pytest.mark.unit
@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
        ("[::1]:9464", ("::1", 9464)),
        ("kiosk-7.local:65535", ("kiosk-7.local", 65535)),
        (" localhost:9464 ", ("localhost", 9464)),
    ],
)
def test_valid_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    "text, why",
    [
        ("", "HOST:PORT"),
        ("9464", "HOST:PORT"),
        (":9464", "HOST:PORT"),
        ("127.0.0.1:", "port"),
        ("127.0.0.1:0", "1-65535"),
        ("127.0.0.1:70000", "1-65535"),
        ("127.0.0.1:http", "port"),
        ("::1:9464", r"\[ADDR\]:PORT"),
        ("[::1]9464", r"\[ADDR\]:PORT"),
        ("[nope]:9464", "not an IPv6"),
        ("bad host:9464", "not a host name"),
    ],
)
def test_invalid_listen_addresses_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as e:
        parse_listen(text)
    assert str(e.value).startswith("metrics.listen")


@pytest.mark.unit
def test_missing_extra_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_prometheus(name: str, *args, **kwargs):
        if name.startswith("prometheus_client"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "prometheus_client", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_prometheus)
    with pytest.raises(ImportError, match=r"voice-agent\[metrics\]"):
        require_prometheus()


def response(rid: str, added_s: float, interrupted: bool = False) -> ResponseStats:
    return ResponseStats(
        response_id=rid, received_ms=500.0, played_ms=500.0, gaps=0, gap_ms=0.0,
        first_arrival=10.0, first_output=10.0 + added_s, first_audible=10.0 + added_s,
        output_end=11.0, lateness_ms=0.0, q_star_ms=0.0, interrupted=interrupted, finished=True,
    )


async def test_endpoint_serves_text_format_and_counters_move_with_status() -> None:
    status = Status(mode="omni")
    bus = EventBus()
    received = [0.0]
    finished: list[ResponseStats] = []
    status.audio_status = lambda: {"underruns": 2, "input_ok": True, "output_ok": True}
    m = Metrics(status, bus, received_s=lambda: received[0], responses=lambda: list(finished))
    await m.start("127.0.0.1", 0)
    try:
        code, headers, body = await scrape(m.port)
        assert code == "HTTP/1.1 200 OK"
        assert headers["Content-Type"].startswith("text/plain; version=")
        assert value(body, "voice_agent_turns_total") == 0
        assert "process_cpu_seconds_total" in body and "python_info" in body

        status.turns += 3
        status.barge_ins += 1
        status.reconnects += 2
        received[0] = 12.5
        bus.publish("wake", word="okay_nabu", score=0.9)
        bus.publish("tool", name="time", arguments={}, ok=True, ms=2.0)
        bus.publish("tool", name="timer", arguments={"s": 5}, ok=False, ms=1.0)
        bus.publish("error", message="network down")
        bus.publish("turn", latency_ms=900.0, interrupted=False, heard_ms=None)
        bus.publish("turn", latency_ms=None, interrupted=True, heard_ms=300.0)
        finished += [response("a", 0.08), response("b", 0.12), response("c", 0.05, interrupted=True)]

        _, _, body = await scrape(m.port)
        assert value(body, "voice_agent_turns_total") == 3
        assert value(body, "voice_agent_barge_ins_total") == 1
        assert value(body, "voice_agent_reconnects_total") == 2
        assert value(body, "voice_agent_underruns_total") == 2
        assert value(body, "voice_agent_audio_received_seconds_total") == 12.5
        assert value(body, "voice_agent_audio_sent_seconds_total") == 0
        assert value(body, "voice_agent_wakes_total") == 1
        assert value(body, "voice_agent_tool_calls_total") == 2
        assert value(body, "voice_agent_tool_errors_total") == 1
        assert value(body, "voice_agent_errors_total") == 1
        assert value(body, "voice_agent_voice_to_voice_latency_seconds_count") == 1
        assert value(body, 'voice_agent_voice_to_voice_latency_seconds_bucket{le="1.0"}') == 1
        assert value(body, 'voice_agent_voice_to_voice_latency_seconds_bucket{le="0.75"}') == 0
        assert value(body, "voice_agent_playout_added_latency_seconds_count") == 2
        assert value(body, 'voice_agent_playout_added_latency_seconds_bucket{le="0.1"}') == 1

        _, _, body = await scrape(m.port)  # a response is observed once, however often scraped
        assert value(body, "voice_agent_playout_added_latency_seconds_count") == 2
    finally:
        await m.close()


async def test_other_paths_and_methods_are_refused() -> None:
    m = Metrics(Status(mode="pipeline"))
    await m.start("127.0.0.1", 0)
    try:
        assert (await scrape(m.port, "/"))[0] == "HTTP/1.1 404 Not Found"
        reader, writer = await asyncio.open_connection("127.0.0.1", m.port)
        writer.write(b"POST /metrics HTTP/1.1\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 405")
        writer.close()
        # A client that never finishes its request does not block the next scrape.
        _, idle = await asyncio.open_connection("127.0.0.1", m.port)
        assert (await scrape(m.port))[0] == "HTTP/1.1 200 OK"
        idle.close()
    finally:
        await m.close()
