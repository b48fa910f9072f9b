"""The emulator layer: option presets, the one way to start an emulator, and its fixtures.

Real loopback sockets throughout; only the emulator's waits are shrunk, through
`EmulatorOptions`. Fixtures (override `emulator_options` in a folder's conftest.py to change
that folder's timings, or mark one test `@pytest.mark.emulator(realtime_speed=8.0)`):

- `emulator_options`: the option overrides (a dict; `api_key` is always `API_KEY`);
- `make_emulator`: `await make_emulator(faults=..., **overrides)` → a started `Emulator`,
  stopped after the test;
- `emulator`: one started `Emulator`; `emulator_thread`: one in a thread, for sync clients.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from agent.account import DashScopeAccount
from agent.emulator.context import EmulatorOptions
from agent.emulator.observe import ReceivedFrame
from agent.emulator.server import Emulator, EmulatorThread
from agent.endpoints import Endpoints

API_KEY = "sk-emulator-test"


def account_for(emu: Emulator, key: str = API_KEY, workspace: str | None = None) -> DashScopeAccount:
    """The account a component gets to talk to the emulator `emu` (with `key`)."""
    return account_at(emu.base_url, key, workspace)


def account_at(http_base: str, key: str = API_KEY, workspace: str | None = None) -> DashScopeAccount:
    """An account whose base URLs are `http_base` and its ws:// twin (nothing need listen)."""
    ws_base = "ws" + http_base[len("http"):]
    return DashScopeAccount(key, workspace, endpoints=Endpoints(http_base=http_base, ws_base=ws_base))

# Endpoints whose requests the tests count in the emulator's request log.
REALTIME = "/api-ws/v1/realtime"
INFERENCE = "/api-ws/v1/inference"
GENERATION = "/api/v1/services/aigc/text-generation/generation"
CUSTOMIZATION = "/api/v1/services/audio/tts/customization"

# Presets: what each family of tests needs the emulator to be quick at.
FAST: dict[str, Any] = {  # protocol tests of the emulator itself
    "enroll_delay_s": 0.3,
    "llm_first_token_s": 0.005,
    "llm_token_s": 0.0,
    "realtime_first_delta_s": 0.01,
    "realtime_speed": 50.0,
    "cosyvoice_first_audio_s": 0.01,
}
WS_FAST: dict[str, Any] = {  # WebSocket protocol tests: audio streams at 50x
    "realtime_first_delta_s": 0.01,
    "realtime_speed": 50.0,
    "cosyvoice_first_audio_s": 0.01,
    "cosyvoice_speed": 50.0,
}
PIPELINE_FAST: dict[str, Any] = {  # LLM and synthesis clients
    "llm_first_token_s": 0.01,
    "llm_token_s": 0.002,
    "cosyvoice_first_audio_s": 0.01,
}
RELIABILITY_FAST: dict[str, Any] = {  # the cloud's protocols and pacing, shorter waits
    "realtime_first_delta_s": 0.05,
    "realtime_speed": 8.0,
    "llm_first_token_s": 0.02,
    "llm_token_s": 0.005,
    "cosyvoice_first_audio_s": 0.03,
    "cosyvoice_speed": 8.0,
    "enroll_delay_s": 0.2,
}
ENROLL_FAST: dict[str, Any] = {"enroll_delay_s": 0.3}  # voice enrollment
REALISTIC: dict[str, Any] = {}  # the emulator's defaults: daemon tests that measure timing


def options(**overrides: Any) -> EmulatorOptions:
    """`EmulatorOptions` with the tests' key unless `api_key` is given."""
    return EmulatorOptions(**{"api_key": API_KEY, **overrides})


def new_emulator(faults: str | None = None, **overrides: Any) -> Emulator:
    """An emulator not started yet (for tests that start it later, on a chosen port)."""
    return Emulator(options=options(**overrides), faults=faults)


async def start_emulator(faults: str | None = None, *, port: int = 0, **overrides: Any) -> Emulator:
    """The one way the tests start an emulator: in this event loop, on loopback."""
    em = new_emulator(faults, **overrides)
    await em.start(port=port)
    return em


MakeEmulator = Callable[..., Awaitable[Emulator]]


def marked(request: pytest.FixtureRequest, preset: dict[str, Any]) -> dict[str, Any]:
    """`preset`, then what an `emulator(...)` marker on the test says."""
    marker = request.node.get_closest_marker("emulator")
    return {**preset, **(marker.kwargs if marker else {})}


@pytest.fixture
def emulator_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """`FAST` (a folder's conftest.py may start from another preset), then the marker's."""
    return marked(request, FAST)


@pytest.fixture
async def make_emulator(emulator_options: dict[str, Any]) -> AsyncIterator[MakeEmulator]:
    """`await make_emulator(faults=..., **option_overrides)` → a started Emulator."""
    started: list[Emulator] = []

    async def make(faults: str | None = None, **overrides: Any) -> Emulator:
        em = await start_emulator(faults, **{**emulator_options, **overrides})
        started.append(em)
        return em

    try:
        yield make
    finally:
        for em in started:
            await em.stop()


@pytest.fixture
async def emulator(make_emulator: MakeEmulator) -> Emulator:
    """A running Emulator in the test's event loop (key `API_KEY`), logging every request."""
    em = await make_emulator()
    assert em.context.request_log is not None
    return em


@pytest.fixture
def emulator_thread(emulator_options: dict[str, Any]) -> Iterator[EmulatorThread]:
    """An Emulator in a background thread, for synchronous clients such as the official SDK."""
    with EmulatorThread(options=options(**emulator_options)) as et:
        yield et


@pytest.fixture
def api_key() -> str:
    return API_KEY


class LlmRequests:
    """The `input.messages` of every LLM request the emulator received, in arrival order (pass
    `hooks()` as `emulator_options`): what the daemon really sent as history."""

    def __init__(self) -> None:
        self.messages: list[list[dict[str, Any]]] = []

    def hooks(self) -> dict[str, Any]:
        return {"on_received": self._on_received}

    def _on_received(self, frame: ReceivedFrame, t: float) -> None:
        if frame.peer.endpoint == "llm":
            self.messages.append(json.loads(frame.data)["input"]["messages"])
