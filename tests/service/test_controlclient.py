"""`voice-agent status|say|ask|interrupt|mute|unmute`: the CLI side of the control socket."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from agent.config import Settings
from agent.control import ControlServer
from agent.controlclient import candidate_socket_paths, control_command, find_socket
from tests.service.control_fakes import FakeHandler


@pytest.fixture(autouse=True)
def _no_runtime_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY", "XDG_RUNTIME_DIR", "VOICE_AGENT_CONFIG"):
        monkeypatch.delenv(name, raising=False)


async def run_cli(*args) -> int:
    return await asyncio.to_thread(control_command, *args)


async def test_status_prints_pretty_json(short_dir: Path, capsys) -> None:
    handler = FakeHandler()
    handler.status_doc = {"state": "idle", "audio": {"input_ok": True}, "last_error": None}
    async with ControlServer(handler, short_dir / "c.sock") as server:
        rc = await run_cli("status", None, str(server.path), None)
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""
    assert json.loads(out) == handler.status_doc
    assert out.startswith("{\n  ")  # indented for people


@pytest.mark.parametrize(
    "cmd, text, expected",
    [
        ("say", "Welcome to the museum", "speaking"),
        ("ask", "What is on today?", "asked"),
        ("interrupt", None, "interrupted"),
        ("mute", None, "microphone muted"),
        ("unmute", None, "microphone unmuted"),
    ],
)
async def test_commands_print_a_confirmation(short_dir: Path, capsys, cmd, text, expected) -> None:
    handler = FakeHandler()
    async with ControlServer(handler, short_dir / "c.sock") as server:
        rc = await run_cli(cmd, text, str(server.path), None)
    out, _ = capsys.readouterr()
    assert rc == 0
    assert out.strip() == f"voice-agent: {expected}"
    assert handler.calls == [(cmd, text)]


async def test_error_reply_goes_to_stderr(short_dir: Path, capsys) -> None:
    handler = FakeHandler()
    handler.fail_with = RuntimeError("synthesis unavailable")
    async with ControlServer(handler, short_dir / "c.sock") as server:
        rc = await run_cli("say", "hello", str(server.path), None)
        too_long = await run_cli("say", "x" * 5000, str(server.path), None)
    out, err = capsys.readouterr()
    assert rc == 1 and too_long == 1 and out == ""
    assert "say failed: synthesis unavailable" in err
    assert "text too long" in err


def test_not_running_no_socket(short_dir: Path, capsys) -> None:
    path = short_dir / "control.sock"
    assert control_command("status", None, str(path), None) == 1
    _, err = capsys.readouterr()
    assert err.strip() == f"voice-agent is not running (no control socket at {path})"


def test_not_running_stale_socket(short_dir: Path, capsys) -> None:
    path = short_dir / "control.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # connection refused from now on
    assert control_command("interrupt", None, str(path), None) == 1
    _, err = capsys.readouterr()
    assert err.strip() == f"voice-agent is not running (no control socket at {path})"


def test_server_that_closes_without_reply(short_dir: Path, capsys) -> None:
    path = short_dir / "control.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    import threading

    def accept_and_hang_up() -> None:
        conn, _ = s.accept()
        conn.recv(1024)
        conn.close()

    t = threading.Thread(target=accept_and_hang_up)
    t.start()
    assert control_command("status", None, str(path), None) == 1
    t.join(2)
    s.close()
    _, err = capsys.readouterr()
    assert "closed the connection without a reply" in err


async def test_socket_from_config(short_dir: Path, capsys) -> None:
    sock = short_dir / "from-config.sock"
    cfg = short_dir / "config.yaml"
    cfg.write_text(f"control:\n  socket: {sock}\n")
    async with ControlServer(FakeHandler(), sock):
        rc = await run_cli("mute", None, None, str(cfg))
    assert rc == 0
    assert capsys.readouterr().out.strip() == "voice-agent: microphone muted"


def test_bad_explicit_config_is_exit_78(short_dir: Path, capsys) -> None:
    cfg = short_dir / "config.yaml"
    cfg.write_text("control:\n  sockett: /x\n")
    assert control_command("status", None, None, str(cfg)) == 78
    assert "control.sockett" in capsys.readouterr().err


async def test_finds_the_user_units_socket(short_dir: Path, monkeypatch, capsys) -> None:
    """A shell has no $RUNTIME_DIRECTORY: look where voice-agent-user.service puts it."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_dir))
    monkeypatch.chdir(short_dir)  # no ./config/voice-agent.yaml here: defaults apply
    (short_dir / "voice-agent").mkdir()
    path = short_dir / "voice-agent" / "control.sock"
    state = Settings()
    assert path in candidate_socket_paths(state)
    assert Path("/run/voice-agent/control.sock") in candidate_socket_paths(state)
    async with ControlServer(FakeHandler(), path):
        assert await asyncio.to_thread(find_socket, None, None) == path
        assert await run_cli("status", None, None, None) == 0
