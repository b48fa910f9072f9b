"""The integration examples in docs/examples run as integrators would run them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from agent.control import ControlServer
from agent.events import EventBus
from tests.service.control_fakes import FakeHandler

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

A_TURN = [
    {"event": "state", "t": 1.0, "state": "idle"},
    {"event": "wake", "t": 2.0, "word": "okay_nabu", "score": 0.91},
    {"event": "state", "t": 2.0, "state": "listening"},
    {"event": "transcript", "t": 2.5, "role": "user", "text": "What's on", "final": False},
    {"event": "transcript", "t": 3.0, "role": "user", "text": "What's on today?", "final": True},
    {"event": "state", "t": 3.1, "state": "thinking"},
    {"event": "state", "t": 3.8, "state": "speaking"},
    {"event": "transcript", "t": 3.8, "role": "assistant", "text": "A concert at eight.", "final": True},
    {"event": "turn", "t": 5.0, "latency_ms": 700.0, "interrupted": False, "heard_ms": None},
    {"event": "state", "t": 5.0, "state": "idle"},
]


def run_example(name: str, *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        input=stdin, capture_output=True, text=True, timeout=30, check=True,
    )
    return done.stdout


def test_kiosk_captions_show_the_live_user_caption_then_the_answer() -> None:
    out = run_example("kiosk_captions.py", stdin="".join(json.dumps(e) + "\n" for e in A_TURN))
    screens = [s.strip() for s in out.split("---") if s.strip()]
    assert screens == [
        "You: \nAssistant:",  # the wake word clears the screen
        "You: What's on …\nAssistant:",
        "You: What's on today?\nAssistant:",
        "You: What's on today?\nAssistant: A concert at eight.",
    ]


def test_led_driver_follows_state_from_the_real_socket(short_dir: Path) -> None:
    class Handler(FakeHandler):
        def __init__(self) -> None:
            super().__init__()
            self.events = EventBus()

    async def main() -> str:
        h = Handler()
        h.events.publish("state", state="idle")
        async with ControlServer(h, short_dir / "c.sock") as server:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(EXAMPLES / "led_state.py"), "--socket", str(server.path),
                stdout=asyncio.subprocess.PIPE,
            )
            assert proc.stdout is not None
            first = await asyncio.wait_for(proc.stdout.readline(), 20)  # subscribed: current state
            for e in A_TURN[2:]:
                fields = {k: v for k, v in e.items() if k not in ("event", "t")}
                h.events.publish(e["event"], **fields)
            h.events.publish("error", message="network down")
        # The server closed: the stream ends, the example exits.
        rest = await asyncio.wait_for(proc.stdout.read(), 20)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        return (first + rest).decode()

    assert asyncio.run(main()).splitlines() == [
        "LED #000028 solid",  # idle
        "LED #00a0ff solid",  # listening
        "LED #ffaa00 pulse",  # thinking
        "LED #ffffff solid",  # speaking
        "LED #000028 solid",  # idle again
        "LED #ff0000 flash",  # an error flashes once ...
        "LED #000028 solid",  # ... and the ring returns to the state
    ]
