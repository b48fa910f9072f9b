#!/usr/bin/env python3
"""An LED ring that follows the assistant's state, from the voice-agent event stream.

    voice-agent events | python3 led_state.py
    python3 led_state.py --socket /run/voice-agent/control.sock

Each `state` event sets a colour and a pattern; an `error` event flashes red once; the stream
starts with the current state, so the ring is right from the first line. Standard library only:
replace `Ring.set()` with your LED library (rpi_ws281x, a /sys/class/leds file, a serial port).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Iterable, Iterator

# state -> (colour as RGB, pattern)
LOOK: dict[str, tuple[tuple[int, int, int], str]] = {
    "starting": ((0, 0, 0), "off"),
    "idle": ((0, 0, 40), "solid"),
    "listening": ((0, 160, 255), "solid"),
    "thinking": ((255, 170, 0), "pulse"),
    "speaking": ((255, 255, 255), "solid"),
    "reconnecting": ((255, 90, 0), "blink"),
    "error": ((255, 0, 0), "blink"),
}


class Ring:
    """The LED hardware. This one prints; a real one writes the colour to the LEDs."""

    def __init__(self) -> None:
        self.current: tuple[tuple[int, int, int], str] | None = None

    def set(self, rgb: tuple[int, int, int], pattern: str) -> None:
        if (rgb, pattern) == self.current:
            return
        self.current = (rgb, pattern)
        print(f"LED #{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x} {pattern}", flush=True)


def follow(events: Iterable[dict], ring: Ring) -> None:
    state = "starting"
    for event in events:
        kind = event.get("event")
        if kind == "state":
            state = str(event.get("state"))
            ring.set(*LOOK.get(state, LOOK["idle"]))
        elif kind == "error":
            ring.set((255, 0, 0), "flash")
            ring.set(*LOOK.get(state, LOOK["idle"]))


def events_from_socket(path: str) -> Iterator[dict]:
    """Subscribe on the control socket and yield each event (the first line is the ok reply)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(b'{"cmd": "subscribe"}\n')
        with sock.makefile("r", encoding="utf-8") as lines:
            reply = json.loads(lines.readline() or "{}")
            if not reply.get("ok"):
                raise SystemExit(f"voice-agent refused: {reply.get('error', 'no reply')}")
            for line in lines:
                yield json.loads(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", help="read the daemon's control socket instead of stdin")
    args = parser.parse_args(argv)
    if args.socket:
        events: Iterable[dict] = events_from_socket(args.socket)
    else:
        events = (json.loads(line) for line in sys.stdin if line.strip())
    try:
        follow(events, Ring())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
