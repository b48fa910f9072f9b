"""Retry discipline: under a persistent fault no client of the daemon spins (SPEC §5.3).

"A tight retry loop is a defect": unthrottled reconnects are how always-on voice satellites
leaked memory and flooded servers (anchors §3.6: home-assistant/core#175426, #165095). Every
client that talks to DashScope is put under each persistent fault for `WINDOW_S` seconds with
its **shipped** timings (nothing shrunk), and every connection attempt is recorded:

- refused connections are counted where the client opens them (the websockets `connect` of the
  realtime and synthesis layers, aiohttp's request for HTTP), by port — each case has its own;
- HTTP statuses at the upgrade or request, and sessions the server ends at once, are counted by
  the emulator's request log (it records every request and upgrade on arrival).

All cases run at once in one event loop (one daemon and one emulator each), so the whole module
costs one window. The policy they must obey: back off exponentially from ≤ 1 s (so attempts thin
out over the window), never two attempts within `MIN_GAP_S`, and after a refused key wait
minutes. The LLM is only called for a turn, so the test keeps asking (one question a second) and
checks that each question costs at most one retry and that a refused key blocks the LLM.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from agent.realtime import connection as realtime_connection
from agent.tts import connection as tts_connection
from tests.support.emulator import CUSTOMIZATION, GENERATION, INFERENCE, REALTIME
from tests.support.recovery import RETRIES, RetryRow
from tests.support.rig import BYE, Rig, free_port, rig, settings_for
from tests.support.samples import write_voice_sample

WINDOW_S = 20.0
MIN_GAP_S = 0.2  # the shortest first retry the policies allow is 0.25 s (0.5 s with jitter)


@dataclass(frozen=True)
class Scenario:
    id: str
    service: str  # realtime | asr | synthesis | llm | enrollment
    fault: str  # refused | http-500 | http-401 | closes-at-once
    mode: str
    input: str = "text"
    family: str = "preset"
    spec: str | None = None  # emulator faults
    emulator_options: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 12  # in the window; doubling from 0.5 s gives ~6
    auth: bool = False  # a refused key: at most `AUTH_MAX` attempts in the window

    def path(self) -> str:
        return {"realtime": REALTIME, "asr": REALTIME, "synthesis": INFERENCE,
                "llm": GENERATION, "enrollment": CUSTOMIZATION}[self.service]


AUTH_MAX = 2
CLOSE_AT_ONCE = {"realtime_session_max_s": 0.05}
SCENARIOS = [
    Scenario("realtime-refused", "realtime", "refused", "omni"),
    Scenario("realtime-500", "realtime", "http-500", "omni", spec="http=500@realtime"),
    Scenario("realtime-401", "realtime", "http-401", "omni", spec="http=401@realtime", auth=True),
    Scenario("realtime-closes-at-once", "realtime", "closes-at-once", "omni",
             emulator_options=CLOSE_AT_ONCE),
    Scenario("asr-refused", "asr", "refused", "pipeline", input="mic"),
    Scenario("asr-500", "asr", "http-500", "pipeline", input="mic", spec="http=500@realtime"),
    Scenario("asr-401", "asr", "http-401", "pipeline", input="mic", spec="http=401@realtime",
             auth=True),
    Scenario("asr-closes-at-once", "asr", "closes-at-once", "pipeline", input="mic",
             emulator_options=CLOSE_AT_ONCE),
    Scenario("synthesis-refused", "synthesis", "refused", "pipeline"),
    Scenario("synthesis-500", "synthesis", "http-500", "pipeline", spec="http=500@inference"),
    Scenario("synthesis-401", "synthesis", "http-401", "pipeline", spec="http=401@inference",
             auth=True),
    Scenario("synthesis-closes-at-once", "synthesis", "closes-at-once", "pipeline",
             emulator_options={"cosyvoice_idle_close_s": 0.05}),
    Scenario("llm-refused", "llm", "refused", "pipeline"),
    Scenario("llm-500", "llm", "http-500", "pipeline", spec="http=500@llm"),
    Scenario("llm-401", "llm", "http-401", "pipeline", spec="http=401@llm", auth=True),
    Scenario("enrollment-refused", "enrollment", "refused", "omni", family="qwen", max_attempts=16),
    Scenario("enrollment-500", "enrollment", "http-500", "omni", family="qwen",
             spec="http=500@customization", max_attempts=16),
    Scenario("enrollment-401", "enrollment", "http-401", "omni", family="qwen",
             spec="http=401@customization", auth=True),
]


@dataclass
class Measured:
    attempts: list[float]  # monotonic-ish seconds since the daemon started
    asks: int = 0  # LLM scenarios: questions asked in the window
    alive: bool = True
    status: dict[str, Any] = field(default_factory=dict)
    retry_delays: list[float] = field(default_factory=list)  # "retrying in N s" the daemon said


class AttemptLog:
    """Connection attempts the daemon's clients make, by port (for refused connections)."""

    def __init__(self) -> None:
        self.by_port: dict[int, list[tuple[float, str]]] = {}

    def add(self, url: str) -> None:
        self.by_port.setdefault(urlsplit(url).port or 0, []).append((time.monotonic(), url))

    def wrap_ws(self, connect: Callable[..., Any]) -> Callable[..., Any]:
        def counting(url: str, *args: Any, **kw: Any) -> Any:
            self.add(url)
            return connect(url, *args, **kw)

        return counting

    def wrap_http(self, request: Callable[..., Any]) -> Callable[..., Any]:
        async def counting(session: aiohttp.ClientSession, method: str, url: Any, *a: Any, **kw: Any) -> Any:
            self.add(str(url))
            return await request(session, method, url, *a, **kw)

        return counting


async def run_scenario(sc: Scenario, work: Path, attempts: AttemptLog) -> Measured:
    work.mkdir(parents=True)
    port = free_port() if sc.fault == "refused" else None
    sample = write_voice_sample(work / "me.wav") if sc.family != "preset" else None

    def settings(base: str) -> Any:
        s = settings_for(sc.mode, base, work, input=sc.input, family=sc.family, sample=sample)
        if port is not None:
            closed = f"http://127.0.0.1:{port}"
            if sc.service in ("llm", "enrollment"):
                # HTTP refused; the WebSockets still work
                ws_url = base.replace("http://", "ws://")
                s = replace(s, dashscope=replace(s.dashscope, http_url=closed, ws_url=ws_url))
            else:
                s = replace(s, dashscope=replace(s.dashscope, http_url=closed))
        return s

    async with rig(work, settings, faults=sc.spec, emulator_options=sc.emulator_options,
                   ensure_options=None) as r:
        t0 = r.started
        asks = 0
        if sc.service == "llm":
            asks = await keep_asking(r, t0 + WINDOW_S)
        else:
            await asyncio.sleep(max(0.0, t0 + WINDOW_S - time.monotonic()))
        if port is not None:
            times = [t for t, _ in attempts.by_port.get(port, [])]
            if sc.service in ("realtime", "asr"):
                times = [t for t, u in attempts.by_port.get(port, []) if "/realtime" in u]
            elif sc.service == "synthesis":
                times = [t for t, u in attempts.by_port.get(port, []) if "/inference" in u]
            rel = [t - t0 for t in times]
        else:
            wall0 = time.time() - (time.monotonic() - t0)
            rel = [t - wall0 for t in r.requests(sc.path())]
        said = [float(m.group(1)) for _, text in r.summaries
                if (m := re.search(r"retrying in ([0-9.]+) s", text))]
        return Measured(sorted(x for x in rel if x <= WINDOW_S), asks, r.alive(), r.status, said)


async def keep_asking(r: Rig, until: float) -> int:
    """One question a second, as a busy kiosk would ask; returns how many were asked."""
    asks = 0
    await r.until(lambda: r.daemon.mode is not None and r.mode.tts.connected, 10, "synthesis")
    while time.monotonic() < until - 1.0:
        started = time.monotonic()
        turn = await r.mode.ask(BYE)
        asks += 1
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(turn.done.wait(), 1.0)
        await asyncio.sleep(max(0.0, started + 1.0 - time.monotonic()))
    return asks


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Measured]:
    """Run every scenario at once for one window (shipped timings); attempts per scenario."""
    base = tmp_path_factory.mktemp("retry")
    attempts = AttemptLog()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(realtime_connection, "connect", attempts.wrap_ws(realtime_connection.connect))
        mp.setattr(tts_connection, "connect", attempts.wrap_ws(tts_connection.connect))
        mp.setattr(aiohttp.ClientSession, "_request", attempts.wrap_http(aiohttp.ClientSession._request))

        async def all_scenarios() -> list[Measured]:
            return await asyncio.gather(
                *(run_scenario(sc, base / sc.id, attempts) for sc in SCENARIOS))

        results = asyncio.run(all_scenarios())
    return {sc.id: m for sc, m in zip(SCENARIOS, results, strict=True)}


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


@pytest.mark.parametrize("sc", [s for s in SCENARIOS if s.service != "llm"], ids=lambda s: s.id)
def test_a_persistent_fault_is_retried_with_growing_pauses(
    sc: Scenario, measured: dict[str, Measured]
) -> None:
    m = measured[sc.id]
    assert m.alive, "the daemon keeps running"
    assert m.attempts, "the client did try (the fault was in its way)"
    per_minute = len(m.attempts) * 60.0 / WINDOW_S
    RETRIES.append(RetryRow(sc.service, sc.fault, len(m.attempts), WINDOW_S,
                            min(gaps(m.attempts), default=None),
                            f"retry pauses said: {m.retry_delays} s" if sc.service == "enrollment" else ""))
    if sc.auth:
        assert len(m.attempts) <= AUTH_MAX, (
            f"a refused key is retried after minutes, not {len(m.attempts)} times in "
            f"{WINDOW_S:.0f} s: {m.attempts}")
        assert re.search(r"authentication|api.?key", m.status["last_error"] or "", re.I), (
            f"the status says the key was refused: {m.status['last_error']!r}")
        return
    assert len(m.attempts) <= sc.max_attempts, (
        f"{len(m.attempts)} attempts in {WINDOW_S:.0f} s (~{per_minute:.0f}/min): a tight loop; "
        f"at {[round(t, 2) for t in m.attempts]}")
    assert min(gaps(m.attempts), default=MIN_GAP_S) >= MIN_GAP_S, (
        f"two attempts {min(gaps(m.attempts)):.3f} s apart: {m.attempts}")
    assert m.status["last_error"], "the status says why it keeps failing"
    if sc.service == "enrollment":
        # Each round retries the idempotent list a few times (0.5 s doubling, 5 attempts), so
        # requests come in bursts; what must grow is the daemon's pause between rounds.
        assert len(m.retry_delays) >= 2 and m.retry_delays == sorted(m.retry_delays), (
            f"the pauses between enrollment rounds grow: {m.retry_delays}")
        return
    half = WINDOW_S / 2
    first, second = (sum(1 for t in m.attempts if t < half), sum(1 for t in m.attempts if t >= half))
    assert second < first, (
        f"attempts do not thin out ({first} in the first {half:.0f} s, {second} in the second): "
        "no exponential backoff")


@pytest.mark.parametrize("sc", [s for s in SCENARIOS if s.service == "llm"], ids=lambda s: s.id)
def test_the_llm_costs_at_most_one_retry_per_question_and_a_refused_key_blocks_it(
    sc: Scenario, measured: dict[str, Measured]
) -> None:
    m = measured[sc.id]
    assert m.alive and m.asks >= 10, f"the kiosk kept asking ({m.asks} questions)"
    RETRIES.append(RetryRow(sc.service, sc.fault, len(m.attempts), WINDOW_S,
                            min(gaps(m.attempts), default=None), f"for {m.asks} questions"))
    if sc.auth:
        assert len(m.attempts) <= 1, f"{len(m.attempts)} LLM requests with a refused key"
        assert "retrying in" in (m.status["last_error"] or "")
        return
    assert len(m.attempts) <= 2 * m.asks, f"{len(m.attempts)} LLM requests for {m.asks} questions"
    assert min(gaps(m.attempts), default=MIN_GAP_S) >= 0.1, "the retry waits a moment first"
