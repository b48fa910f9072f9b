"""`voice-agent status|say|ask|interrupt|mute|unmute`: one request to the running daemon.

The client is plain blocking sockets: it sends one line, reads one line, and exits, so it starts
fast and works from shell scripts. Finding the socket mirrors the daemon (SPEC §4), with one
addition: a shell has no `$RUNTIME_DIRECTORY`, so when neither `--socket` nor `control.socket`
is given the client also looks where the shipped units put it (`/run/voice-agent/control.sock`
for the system unit, `$XDG_RUNTIME_DIR/voice-agent/control.sock` for the user unit).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from agent.config import EX_CONFIG, ConfigError, Settings, load_settings
from agent.control import MAX_LINE, SOCKET_NAME, resolve_socket_path
from agent.secrets import redact

CONNECT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 40.0  # longer than the server's handler timeout, so its error reply arrives

_CONFIRM = {
    "say": "speaking",
    "ask": "asked",
    "interrupt": "interrupted",
    "mute": "microphone muted",
    "unmute": "microphone unmuted",
}


class NotRunning(Exception):
    """No daemon behind the socket path."""


def candidate_socket_paths(settings: Settings) -> list[Path]:
    """Where the daemon's socket may be, most specific first (see the module docstring)."""
    first = resolve_socket_path(settings)
    if settings.control.socket:
        return [first]
    paths = [first]
    if not os.environ.get("RUNTIME_DIRECTORY"):
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg:
            paths.append(Path(xdg) / "voice-agent" / SOCKET_NAME)
        paths.append(Path("/run/voice-agent") / SOCKET_NAME)
    unique: list[Path] = []
    for p in paths:
        if p not in unique:
            unique.append(p)
    return unique


def find_socket(socket_path: str | None, settings_path: str | None) -> Path:
    """`--socket`, else the config's path, else the first candidate that exists."""
    if socket_path:
        return Path(socket_path).expanduser()
    settings = _load_settings(settings_path)
    candidates = candidate_socket_paths(settings)
    for p in candidates:
        if p.exists():
            return p
    return candidates[0]


def _load_settings(settings_path: str | None) -> Settings:
    """An explicit --config must load; the implicit default may be absent or root-only (the
    system config is often 0640) and then the defaults are enough to find the socket."""
    if settings_path:
        return load_settings(settings_path)
    try:
        return load_settings(None)
    except ConfigError:
        return Settings()


def request(path: Path, doc: dict[str, Any], timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
    """Send one request, return the decoded reply. Raises NotRunning, OSError or ValueError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
            raise NotRunning(str(path)) from e
        sock.settimeout(timeout)
        sock.sendall(json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n")
        buf = bytearray()
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > 16 * MAX_LINE:
                raise ValueError("reply too long")
    line = bytes(buf).split(b"\n", 1)[0]
    if not line:
        raise ValueError("the daemon closed the connection without a reply")
    reply = json.loads(line.decode("utf-8"))
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ValueError("unexpected reply from the daemon")
    return reply


def control_command(cmd: str, text: str | None, socket_path: str | None, settings_path: str | None) -> int:
    """Run one control command; print the result. Exit 0 ok, 1 error, 78 bad --config."""
    try:
        path = find_socket(socket_path, settings_path)
    except ConfigError as e:
        print(f"voice-agent: configuration error: {redact(str(e))}", file=sys.stderr)
        return EX_CONFIG
    doc: dict[str, Any] = {"cmd": cmd}
    if text is not None:
        doc["text"] = text
    try:
        reply = request(path, doc)
    except NotRunning:
        print(f"voice-agent is not running (no control socket at {path})", file=sys.stderr)
        return 1
    except PermissionError:
        print(
            f"voice-agent: permission denied on {path}: run as the daemon's user, or as a member "
            "of its control group ($VOICE_AGENT_CONTROL_GROUP, see docs/service.md)",
            file=sys.stderr,
        )
        return 1
    except TimeoutError:
        print(f"voice-agent: no reply from the daemon at {path} (timed out)", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"voice-agent: control socket {path}: {redact(str(e))}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"voice-agent: {redact(str(reply.get('error') or 'request failed'))}", file=sys.stderr)
        return 1
    if cmd == "status":
        print(json.dumps(reply.get("status", {}), indent=2, ensure_ascii=False))
    else:
        print(f"voice-agent: {_CONFIRM.get(cmd, 'ok')}")
    return 0
