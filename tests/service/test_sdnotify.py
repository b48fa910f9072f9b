"""sd_notify against real datagram sockets (filesystem path and abstract namespace)."""

from __future__ import annotations

import os

import pytest

from agent import sdnotify


@pytest.mark.parametrize("fixture", ["notify_socket", "abstract_notify_socket"])
def test_each_message_arrives(fixture: str, request: pytest.FixtureRequest) -> None:
    rx = request.getfixturevalue(fixture)
    assert sdnotify.ready("config, state and audio ready")
    assert sdnotify.status("idle, voice v1")
    assert sdnotify.watchdog_ping()
    assert sdnotify.stopping()
    assert sdnotify.notify("STATUS=a", "ERRNO=0")
    got = rx.wait_for(5)
    assert got == [
        "READY=1\nSTATUS=config, state and audio ready",
        "STATUS=idle, voice v1",
        "WATCHDOG=1",
        "STOPPING=1",
        "STATUS=a\nERRNO=0",
    ]


def test_status_cannot_inject_extra_lines(notify_socket) -> None:
    """A newline in a status text must not become a second assignment (e.g. READY=1)."""
    sdnotify.status("reconnecting\nREADY=1")
    assert notify_socket.wait_for(1) == ["STATUS=reconnecting READY=1"]


def test_noop_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False
    assert sdnotify.watchdog_ping() is False


def test_unreachable_socket_is_not_fatal(monkeypatch: pytest.MonkeyPatch, short_dir) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "nobody-listens"))
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.status("x") is False


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None, "the watchdog belongs to another process"
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("0", "-5", "abc"):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert sdnotify.watchdog_interval() is None
