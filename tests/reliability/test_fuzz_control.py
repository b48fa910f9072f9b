"""Bad input on the control socket: every line gets one clear reply and the server keeps serving.

Integrators' programs talk to the daemon through this socket (SPEC §6); a buggy client, a
half-written script or random bytes must never hurt it. `parse_request` either accepts a line or
says what is wrong with it; a live `ControlServer` answers every non-blank line of any content
with exactly one JSON reply line, and afterwards still answers a status request — on the same
connection and on a new one.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from agent.control import COMMANDS, ControlServer, RequestError, parse_request


class Handler:
    """A daemon stand-in that accepts everything (the socket layer is under test here)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def status(self) -> dict[str, Any]:
        return {"state": "idle", "connected": True}

    async def say(self, text: str) -> None:
        self.calls.append("say")

    async def ask(self, text: str) -> None:
        self.calls.append("ask")

    async def interrupt(self) -> None:
        self.calls.append("interrupt")

    def mute(self) -> None:
        self.calls.append("mute")

    def unmute(self) -> None:
        self.calls.append("unmute")


json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8,
)
requests = st.fixed_dictionaries(
    {"cmd": st.sampled_from([*COMMANDS, "", "STATUS", "say "]) | json_docs},
    optional={"text": json_docs | st.text(max_size=40), "extra": json_docs},
)
lines = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    requests.map(lambda d: json.dumps(d).encode()),
    json_docs.map(lambda d: json.dumps(d).encode()),
)


@given(lines)
@example(b"[" * 100_000)
@example(b'{"cmd": "say", "text": "' + b"x" * 5000 + b'"}')
@example(b'{"cmd": "say", "text": "   "}')
@example(b"\xff\xfe")
@example(b'{"cmd": ["status"]}')
def test_parse_request_accepts_or_says_what_is_wrong(line: bytes) -> None:
    try:
        cmd, text = parse_request(line)
    except RequestError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert cmd in COMMANDS
    assert (text is not None) == (cmd in ("say", "ask"))


async def _exchange(payload: list[bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="ctl") as d:
        path = Path(d) / "c.sock"
        server = ControlServer(Handler(), path, group="", idle_timeout=5.0)
        await server.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
            body = b"".join(line.replace(b"\n", b" ") + b"\n" for line in payload)
            expected = sum(1 for line in payload if line.replace(b"\n", b" ").rstrip(b"\r").strip())
            writer.write(body + b'{"cmd": "status"}\n')
            await writer.drain()
            for _ in range(expected):
                reply = json.loads(await asyncio.wait_for(reader.readline(), 5.0))
                assert isinstance(reply["ok"], bool)
                if not reply["ok"]:
                    assert isinstance(reply["error"], str) and reply["error"]
            final = json.loads(await asyncio.wait_for(reader.readline(), 5.0))
            assert final["ok"] and final["status"]["state"] == "idle", "the same connection still works"
            writer.close()
            # ... and so does a new one.
            r2, w2 = await asyncio.open_unix_connection(str(path))
            w2.write(b'{"cmd": "status"}\n')
            await w2.drain()
            assert json.loads(await asyncio.wait_for(r2.readline(), 5.0))["ok"]
            w2.close()
        finally:
            await server.close()


@given(st.lists(lines, max_size=8))
@example([b"\x00\x01\x02", b"{", b"}", b"\r", b"   ", b'{"cmd":"interrupt"}\r'])
@example([b'{"cmd": "say", "text": "' + "é".encode() * 3000 + b'"}'])
def test_a_live_server_answers_every_line_and_keeps_serving(payload: list[bytes]) -> None:
    asyncio.run(_exchange(payload))
