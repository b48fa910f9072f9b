"""The control socket server (SPEC §6): every command, hostile input, concurrency, permissions."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from agent.config import ConfigError, Settings, settings_from_dict
from agent.control import ControlHandler, ControlServer, resolve_socket_path
from agent.secrets import register_secret
from tests.service.control_fakes import Client, FakeHandler

SECRET = "sk-controltest0123456789abcdef"


@pytest.fixture
async def served(short_dir: Path):
    handler = FakeHandler()
    server = ControlServer(
        handler, short_dir / "control.sock", idle_timeout=0.5, write_timeout=0.5, queue_timeout=0.5
    )
    await server.start()
    try:
        yield server, handler
    finally:
        await server.close()


def test_fake_handler_satisfies_the_protocol() -> None:
    assert isinstance(FakeHandler(), ControlHandler)


async def test_every_command(served) -> None:
    server, handler = served
    c = await Client.connect(server.path)
    reply = await c.request({"cmd": "status"})
    assert reply == {"ok": True, "status": handler.status_doc}
    assert await c.request({"cmd": "say", "text": "Hello there"}) == {"ok": True}
    assert await c.request({"cmd": "ask", "text": "What time is it?"}) == {"ok": True}
    assert await c.request({"cmd": "interrupt"}) == {"ok": True}
    assert await c.request({"cmd": "mute"}) == {"ok": True}
    assert await c.request({"cmd": "unmute"}) == {"ok": True}
    await c.close()
    assert handler.calls == [
        ("status", None),
        ("say", "Hello there"),
        ("ask", "What time is it?"),
        ("interrupt", None),
        ("mute", None),
        ("unmute", None),
    ]


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"{not json\n", "malformed JSON"),
        (b"[1, 2]\n", "must be a JSON object"),
        (b'"status"\n', "must be a JSON object"),
        (b'{"command": "status"}\n', 'missing "cmd"'),
        (b'{"cmd": 5}\n', 'missing "cmd"'),
        (b'{"cmd": "reboot"}\n', "unknown cmd 'reboot'"),
        (b'{"cmd": "say"}\n', "needs a non-empty"),
        (b'{"cmd": "ask", "text": "   "}\n', "needs a non-empty"),
        (b'{"cmd": "say", "text": ["a"]}\n', "needs a non-empty"),
        (b'{"cmd": "say", "text": "' + b"x" * 4097 + b'"}\n', "text too long: 4097 bytes"),
        (b"\xff\xfe\x00\x01binary\x80\n", "not UTF-8"),
        (b"[" * 100000 + b"\n", "too long"),
        (b"[" * 5000 + b"\n", "malformed JSON"),  # deep nesting must not crash the parser
    ],
)
async def test_bad_requests_get_errors_and_the_connection_keeps_serving(served, raw, fragment) -> None:
    server, handler = served
    c = await Client.connect(server.path)
    await c.send_raw(raw)
    reply = await c.reply()
    assert reply["ok"] is False and fragment in reply["error"], reply
    if b"x" * 4097 not in raw and len(raw) < server.max_line:
        assert await c.request({"cmd": "status"}) == {"ok": True, "status": handler.status_doc}
    await c.close()
    c2 = await Client.connect(server.path)  # and the server as a whole is fine
    assert (await c2.request({"cmd": "interrupt"}))["ok"] is True
    await c2.close()
    assert not [name for name, _ in handler.calls if name in ("say", "ask")]


async def test_text_limit_counts_utf8_bytes(served) -> None:
    server, handler = served
    c = await Client.connect(server.path)
    ok_text = "é" * 2048  # 4096 bytes
    assert (await c.request({"cmd": "say", "text": ok_text}))["ok"] is True
    reply = await c.request({"cmd": "say", "text": ok_text + "é"})
    assert reply["ok"] is False and "text too long" in reply["error"]
    await c.close()


async def test_oversized_line_is_refused_and_the_client_dropped(served) -> None:
    server, _ = served
    c = await Client.connect(server.path)
    await c.send_raw(b'{"cmd": "say", "text": "' + b"y" * (server.max_line + 10))  # no newline yet
    reply = await c.reply()
    assert reply["ok"] is False and "too long" in reply["error"]
    assert await c.closed_by_server()
    c2 = await Client.connect(server.path)
    assert (await c2.request({"cmd": "status"}))["ok"] is True
    await c2.close()


async def test_blank_lines_crlf_and_pipelined_requests(served) -> None:
    server, handler = served
    c = await Client.connect(server.path)
    await c.send_raw(b'\n\r\n{"cmd": "mute"}\r\n{"cmd": "unmute"}\n{"cmd": "status"}\n')
    assert await c.reply() == {"ok": True}
    assert await c.reply() == {"ok": True}
    assert (await c.reply())["ok"] is True
    await c.close()
    assert [n for n, _ in handler.calls] == ["mute", "unmute", "status"]


async def test_last_line_without_newline_is_answered(served) -> None:
    """`printf '{"cmd":"status"}' | nc -U` sends no newline and half-closes."""
    server, _ = served
    c = await Client.connect(server.path)
    await c.send_raw(b'{"cmd": "status"}')
    c.writer.write_eof()
    assert (await c.reply())["ok"] is True
    c = await Client.connect(server.path)
    await c.send_raw(b'{"cmd": "sta')  # half a request, then EOF
    c.writer.write_eof()
    reply = await c.reply()
    assert reply["ok"] is False and "malformed JSON" in reply["error"]


async def test_silent_and_half_line_clients_are_dropped(served) -> None:
    server, _ = served
    idle = await Client.connect(server.path)
    half = await Client.connect(server.path)
    await half.send_raw(b'{"cmd": "st')
    assert await idle.closed_by_server(timeout=3)
    reply = await half.reply()
    assert reply["ok"] is False and "timed out" in reply["error"]
    assert await half.closed_by_server()
    c = await Client.connect(server.path)
    assert (await c.request({"cmd": "status"}))["ok"] is True
    await c.close()


async def test_client_that_never_reads_is_dropped(served) -> None:
    server, handler = served
    handler.status_doc = {"state": "idle", "blob": "z" * 2_000_000}  # replies bigger than buffers
    slow = await Client.connect(server.path)
    await slow.send_raw(b'{"cmd": "status"}\n' * 5)
    await asyncio.sleep(1.5)  # > write_timeout: the server gives up on it
    handler.status_doc = {"state": "idle"}
    c = await Client.connect(server.path)
    assert (await c.request({"cmd": "status"})) == {"ok": True, "status": {"state": "idle"}}
    await c.close()
    slow.writer.transport.abort()


async def test_twenty_concurrent_clients(served) -> None:
    server, handler = served

    async def one(i: int) -> dict[str, Any]:
        c = await Client.connect(server.path)
        try:
            return await c.request({"cmd": "say", "text": f"client {i}"})
        finally:
            await c.close()

    replies = await asyncio.gather(*(one(i) for i in range(20)))
    assert all(r["ok"] for r in replies), replies
    assert sorted(t for n, t in handler.calls if n == "say") == sorted(f"client {i}" for i in range(20))


async def test_concurrency_is_bounded(served) -> None:
    """20 clients on a handler that does not return: 16 are served at once, 4 wait in the queue
    and are told to retry when the queue timeout passes; the 16 finish when the handler does."""
    server, handler = served
    handler.gate = asyncio.Event()
    clients = [await Client.connect(server.path) for _ in range(20)]
    for i, c in enumerate(clients):
        await c.send_raw(json.dumps({"cmd": "say", "text": f"n{i}"}).encode() + b"\n")
    await asyncio.sleep(0.2)
    assert len(handler.calls) == server.max_clients == 16
    await asyncio.sleep(server.queue_timeout + 0.3)
    handler.gate.set()
    replies = await asyncio.gather(*(c.reply() for c in clients))
    ok = [r for r in replies if r["ok"]]
    busy = [r for r in replies if not r["ok"]]
    assert len(ok) == 16
    assert len(busy) == 4 and all("too many clients" in r["error"] for r in busy)
    assert len(handler.calls) == 16
    for c in clients:
        await c.close()
    await asyncio.sleep(0.05)
    c = await Client.connect(server.path)
    assert (await c.request({"cmd": "status"}))["ok"] is True
    await c.close()


async def test_waiting_clients_get_a_slot(served) -> None:
    """A short burst beyond the limit waits for a slot instead of failing."""
    server, handler = served
    handler.gate = asyncio.Event()
    clients = [await Client.connect(server.path) for _ in range(18)]
    for c in clients:
        await c.send_raw(b'{"cmd": "say", "text": "x"}\n')
    await asyncio.sleep(0.1)
    assert len(handler.calls) == 16

    async def reply_and_leave(c: Client) -> dict[str, Any]:
        try:
            return await c.reply()
        finally:
            await c.close()  # like the CLI: one request, then gone, freeing the slot

    handler.gate.set()
    replies = await asyncio.gather(*(reply_and_leave(c) for c in clients))
    assert all(r["ok"] for r in replies), replies
    assert len(handler.calls) == 18


async def test_handler_errors_become_redacted_error_replies(served) -> None:
    server, handler = served
    register_secret(SECRET)
    handler.fail_with = RuntimeError(f"upstream said: bad key {SECRET}")
    c = await Client.connect(server.path)
    await c.send_raw(b'{"cmd": "say", "text": "hi"}\n')
    line = await asyncio.wait_for(c.reader.readline(), 3)
    assert SECRET.encode() not in line
    reply = json.loads(line)
    assert reply["ok"] is False and "say failed" in reply["error"] and "***" in reply["error"]
    handler.fail_with = None
    assert (await c.request({"cmd": "say", "text": "again"}))["ok"] is True
    await c.close()


async def test_status_that_cannot_be_serialised_is_an_error(served) -> None:
    server, handler = served
    handler.status_doc = {"loop": None}
    handler.status_doc["loop"] = handler.status_doc  # circular
    c = await Client.connect(server.path)
    reply = await c.request({"cmd": "status"})
    assert reply["ok"] is False and "status failed" in reply["error"]
    await c.close()


async def test_slow_handler_times_out(short_dir: Path) -> None:
    handler = FakeHandler()
    handler.say_delay = 2.0
    async with ControlServer(handler, short_dir / "c.sock", handler_timeout=0.2) as server:
        c = await Client.connect(server.path)
        reply = await c.request({"cmd": "say", "text": "long"})
        assert reply["ok"] is False and "timed out" in reply["error"]
        await c.close()


async def test_socket_mode_0600(served) -> None:
    server, _ = served
    st = os.stat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert [p.name for p in server.path.parent.iterdir()] == ["control.sock"], "no temp leftovers"


async def test_group_socket_mode_0660(short_dir: Path, monkeypatch) -> None:
    gid = os.getgid()
    monkeypatch.setenv("VOICE_AGENT_CONTROL_GROUP", str(gid))
    async with ControlServer(FakeHandler(), short_dir / "g.sock") as server:
        st = os.stat(server.path)
        assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == gid
    monkeypatch.setenv("VOICE_AGENT_CONTROL_GROUP", "no-such-group-voice-agent")
    with pytest.raises(ConfigError, match="no such group"):
        await ControlServer(FakeHandler(), short_dir / "h.sock").start()


async def test_socket_path_appears_only_once_it_accepts(short_dir: Path, monkeypatch) -> None:
    """A client that waits for the file and then connects must not be refused (it was, for a
    few ms, when the bound socket was renamed into place before listen())."""
    seen: list[bool] = []
    real_rename = os.rename

    def rename(src: str, dst: os.PathLike[str]) -> None:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(src)
            seen.append(True)
        except ConnectionRefusedError:
            seen.append(False)
        finally:
            probe.close()
        real_rename(src, dst)

    monkeypatch.setattr("agent.control.os.rename", rename)
    async with ControlServer(FakeHandler(), short_dir / "control.sock"):
        pass
    assert seen == [True]


async def test_stale_socket_is_replaced(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # a crashed daemon's leftover: the file exists, nobody listens
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    async with ControlServer(FakeHandler(), path) as server:
        c = await Client.connect(path)
        assert (await c.request({"cmd": "status"}))["ok"] is True
        await c.close()
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
    assert not path.exists(), "removed on close"


async def test_live_socket_and_non_socket_are_not_touched(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    async with ControlServer(FakeHandler(), path):
        inode = os.stat(path).st_ino
        with pytest.raises(ConfigError, match="in use by a running process"):
            await ControlServer(FakeHandler(), path).start()
        assert os.stat(path).st_ino == inode
        c = await Client.connect(path)
        assert (await c.request({"cmd": "status"}))["ok"] is True
        await c.close()
    regular = short_dir / "notasocket"
    regular.write_text("precious")
    with pytest.raises(ConfigError, match="is not a socket"):
        await ControlServer(FakeHandler(), regular).start()
    assert regular.read_text() == "precious"


async def test_close_leaves_a_successors_socket_alone(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    first = ControlServer(FakeHandler(), path)
    await first.start()
    os.rename(path, short_dir / "moved.sock")  # someone else's socket now sits at the path
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(path))
    await first.close()
    assert path.exists()
    other.close()


async def test_bad_socket_paths(short_dir: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        await ControlServer(FakeHandler(), short_dir / "missing" / "c.sock").start()
    with pytest.raises(ConfigError, match="too long"):
        await ControlServer(FakeHandler(), short_dir / ("x" * 120)).start()


def test_resolve_socket_path(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/voice-agent")
    s = settings_from_dict({"control": {"socket": "/srv/va.sock"}})
    assert resolve_socket_path(s) == Path("/srv/va.sock")
    assert resolve_socket_path(Settings()) == Path("/run/voice-agent/control.sock")
    monkeypatch.delenv("RUNTIME_DIRECTORY")
    s = settings_from_dict({"state_dir": str(tmp_path)})
    assert resolve_socket_path(s) == tmp_path / "control.sock"
