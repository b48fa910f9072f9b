"""Fixtures for the service tests: a real sd_notify receiver and short socket directories."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class NotifyReceiver:
    """A Unix datagram socket standing in for systemd's notify socket.

    It runs in its own thread and timestamps each datagram on arrival, so tests can see when pings
    stopped even while the test's event loop was blocked.
    """

    def __init__(self, address: str) -> None:
        self.env_value = address
        bind_to: str | bytes = b"\0" + address[1:].encode() if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind_to)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def snapshot(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.messages)

    def payloads(self) -> list[str]:
        return [m for _, m in self.snapshot()]

    def ping_times(self) -> list[float]:
        return [t for t, m in self.snapshot() if "WATCHDOG=1" in m.split("\n")]

    def wait_for(self, count: int, timeout: float = 2.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.snapshot()) < count:
            time.sleep(0.01)
        return self.payloads()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory (Unix socket paths are limited to 107 bytes; pytest's tmp_path is long)."""
    d = tempfile.mkdtemp(prefix="va-", dir="/tmp")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def notify_socket(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyReceiver]:
    """A filesystem-path NOTIFY_SOCKET receiver, exported in the environment."""
    rx = NotifyReceiver(str(short_dir / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", rx.env_value)
    try:
        yield rx
    finally:
        rx.close()


@pytest.fixture
def abstract_notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyReceiver]:
    rx = NotifyReceiver(f"@voice-agent-test-{os.getpid()}-{time.monotonic_ns()}")
    monkeypatch.setenv("NOTIFY_SOCKET", rx.env_value)
    try:
        yield rx
    finally:
        rx.close()
