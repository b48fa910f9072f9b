#!/usr/bin/env python3
"""Captions for a kiosk screen, from the voice-agent event stream (docs/integration.md).

    voice-agent events | python3 kiosk_captions.py          # through the CLI
    python3 kiosk_captions.py --socket /run/voice-agent/control.sock   # straight from the socket

Shows what the user is saying (live, from partial transcripts) and what the assistant answers;
a new turn (the wake word, or `listening` again) clears the screen. Standard library only: copy it
to the kiosk and replace `show()` with your display code.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Iterable, Iterator


class Captions:
    """The two caption lines, updated by events; `handle()` returns the screen when it changes."""

    def __init__(self) -> None:
        self.user = ""
        self.assistant = ""

    def handle(self, event: dict) -> str | None:
        kind = event.get("event")
        if kind == "wake" or (kind == "state" and event.get("state") == "listening" and self.assistant):
            self.user = self.assistant = ""
            return self.screen()
        if kind == "transcript":
            text = str(event.get("text", ""))
            if not event.get("final"):
                text += " …"
            if event.get("role") == "user":
                self.user = text
            else:
                self.assistant = text
            return self.screen()
        return None

    def screen(self) -> str:
        return f"You: {self.user}\nAssistant: {self.assistant}"


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


def events_from_lines(lines: Iterable[str]) -> Iterator[dict]:
    for line in lines:
        if line.strip():
            yield json.loads(line)


def show(screen: str) -> None:
    if sys.stdout.isatty():
        sys.stdout.write("\x1b[2J\x1b[H")  # clear the terminal; a kiosk would redraw its widget
    print(screen + "\n---", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", help="read the daemon's control socket instead of stdin")
    args = parser.parse_args(argv)
    source = events_from_socket(args.socket) if args.socket else events_from_lines(sys.stdin)
    captions = Captions()
    try:
        for event in source:
            screen = captions.handle(event)
            if screen is not None:
                show(screen)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
