"""sd_notify(3) over its documented datagram protocol, without libsystemd.

systemd (Type=notify) hands the service a Unix datagram socket in `$NOTIFY_SOCKET`: a filesystem
path, or an abstract-namespace name written with a leading `@`. Each message is one datagram of
newline-separated `KEY=VALUE` lines (`READY=1`, `STATUS=...`, `WATCHDOG=1`, `STOPPING=1`).

Everything here is best effort and never raises: outside systemd (no `$NOTIFY_SOCKET`) the calls
are no-ops, and a notification that cannot be delivered must not take the daemon down. The socket
is non-blocking so a congested receiver can never stall the event loop (the watchdog pings from it).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("voice-agent.sdnotify")


def _address(value: str) -> str | bytes | None:
    """Turn `$NOTIFY_SOCKET` into a socket address; None for kinds we don't speak (e.g. vsock:)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace
    if value.startswith("/"):
        return value
    return None


def notify(*lines: str) -> bool:
    """Send one notification made of `lines` (e.g. "READY=1", "STATUS=idle").

    Returns True when the datagram was handed to the socket, False when not under systemd or on
    any error (logged at debug level only: the caller can do nothing about it).
    """
    target = os.environ.get("NOTIFY_SOCKET")
    if not target or not lines:
        return False
    address = _address(target)
    if address is None:
        log.debug("unsupported NOTIFY_SOCKET %r", target)
        return False
    payload = "\n".join(line.replace("\n", " ") for line in lines).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(payload, address)
    except OSError as e:
        log.debug("sd_notify to %s failed: %s", target, e)
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    """Tell systemd start-up is complete (SPEC §5.1: config, state and audio ready, not the cloud)."""
    return notify("READY=1", *([f"STATUS={status_text}"] if status_text else []))


def status(text: str) -> bool:
    """One line of human-readable progress, shown by `systemctl status`."""
    return notify(f"STATUS={text}")


def watchdog_ping() -> bool:
    """Reset the service watchdog timer (WatchdogSec=)."""
    return notify("WATCHDOG=1")


def stopping(status_text: str | None = None) -> bool:
    """Tell systemd a clean shutdown has begun, so it does not mistake it for a hang."""
    return notify("STOPPING=1", *([f"STATUS={status_text}"] if status_text else []))


def watchdog_interval() -> float | None:
    """The watchdog timeout in seconds if systemd expects pings from *this* process, else None.

    `$WATCHDOG_USEC` is the timeout; `$WATCHDOG_PID`, when set, names the process it applies to
    (a child that inherited the environment must not think it owns the watchdog).
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 1_000_000
