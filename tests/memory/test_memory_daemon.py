"""Memory end to end (SPEC §11): the real daemon against the emulator on loopback.

What was said survives a session rotation and a restart, `forget` clears it (in memory, on
disk and in the pipeline's LLM history), and a corrupt memory file is set aside. In omni mode
the emulator, like the documented service, accepts user text items but refuses assistant ones,
so the daemon's fallback (the turns summarised into the session's instructions) is what runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.config import Settings
from agent.conversation.seed import SUMMARY_HEADER
from agent.daemon import DaemonControl
from agent.emulator.answers import answer_for
from agent.emulator.observe import SentFrame
from agent.memory import FILENAME
from tests.support.daemon import RunDaemon
from tests.support.emulator import REALTIME
from tests.support.rig import BYE, JOKE, rig, settings_for


class Frames:
    """What the emulator sent on each realtime connection, decoded (the `on_sent` hook)."""

    def __init__(self) -> None:
        self.by_peer: dict[int, list[dict[str, Any]]] = {}

    def on_sent(self, frame: SentFrame, t: float) -> None:
        if frame.peer.endpoint == "realtime" and frame.kind == "text":
            assert isinstance(frame.data, str)
            self.by_peer.setdefault(frame.peer.n, []).append(json.loads(frame.data))

    def of(self, peer: int, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.by_peer.get(peer, []) if e.get("type") == kind]

    def peers(self) -> list[int]:
        return sorted(self.by_peer)


def omni(tmp_path: Path, rotate_s: float | None = None) -> Callable[[str], Settings]:
    def settings(base: str) -> Settings:
        s = settings_for("omni", base, tmp_path)
        if rotate_s is None:
            return s
        # below the validated minimum of one minute, so set after loading
        return replace(s, omni=replace(s.omni, session_max_minutes=rotate_s / 60))

    return settings


def seeded(frames: Frames, peer: int, user_text: str) -> tuple[bool, bool]:
    """(the user's words came back as an item, the summary reached the instructions)."""
    items = [e["item"] for e in frames.of(peer, "conversation.item.created")]
    as_item = any(i.get("role") == "user" and i["content"][0].get("text") == user_text for i in items)
    updated = [e["session"].get("instructions", "") for e in frames.of(peer, "session.updated")]
    in_instructions = any(SUMMARY_HEADER in text and user_text in text for text in updated)
    return as_item, in_instructions


async def test_omni_memory_survives_a_session_rotation(tmp_path: Path) -> None:
    frames = Frames()
    async with rig(tmp_path, omni(tmp_path, rotate_s=3.0),
                   emulator_options={"on_sent": frames.on_sent}) as r:
        await r.until(lambda: r.daemon.status.connected, 10, "the first session")
        await r.answer(JOKE)
        await r.until(lambda: r.daemon.status.memory_turns == 1, 20, "the turn remembered")
        sessions = len(r.requests(REALTIME))
        await r.until(lambda: len(r.requests(REALTIME)) > sessions, 20, "a rotated session")
        await r.until(lambda: r.daemon.status.connected, 10, "the new session")
        await r.until(lambda: all(seeded(frames, frames.peers()[-1], JOKE)), 10,
                      "the turn carried into the new session")
        status = r.status
        await r.answer()  # the new session serves
        assert await r.stop() == 0
    assert status["memory_turns"] == 1 and status["last_error"] is None
    # The assistant item was refused by the emulator: the seed's error never became a failure.
    assert frames.of(frames.peers()[-1], "error"), "the emulator refuses assistant items"


async def test_omni_memory_survives_a_restart_and_forget_clears_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "voice-agent")
    async with rig(tmp_path, omni(tmp_path)) as r:
        await r.until(lambda: r.daemon.status.connected, 10, "the first session")
        await r.answer(JOKE)
        await r.until(lambda: r.daemon.status.memory_turns == 1, 20, "the turn remembered")
        assert await r.stop() == 0
    path = tmp_path / "state" / FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["turns"][0]["user"] == JOKE

    frames = Frames()
    # Server frames are late, so the question below is sent before the seed is acknowledged.
    async with rig(tmp_path, omni(tmp_path), faults="latency=300ms@realtime",
                   emulator_options={"on_sent": frames.on_sent}) as r:
        assert r.daemon.status.memory_turns == 1  # loaded before the first session
        await r.until(lambda: r.daemon.status.connected, 10, "the session after the restart")
        # Asked at once, while the seed's items are still being acknowledged: the answer is to
        # this question, not to the remembered one.
        await r.answer(BYE)
        turn = await asyncio.wait_for(r.turns.get(), 20)
        assert turn.heard == BYE and turn.answered == answer_for(BYE)
        await r.until(lambda: seeded(frames, 1, JOKE)[0], 10, "the remembered turn sent as an item")
        await r.until(lambda: seeded(frames, 1, JOKE)[1], 10, "the refused items summarised")
        sessions = len(r.requests(REALTIME))
        await DaemonControl(r.daemon).forget()
        assert r.daemon.status.memory_turns == 0 and r.status["memory_turns"] == 0
        assert not path.exists()
        # The service keeps the session's context, so the daemon starts a fresh session (when
        # quiet) that carries nothing.
        await r.until(lambda: len(r.requests(REALTIME)) > sessions, 15, "a fresh session")
        await r.until(lambda: len(frames.peers()) > 1 and frames.of(frames.peers()[-1],
                                                                    "session.updated"),
                      10, "the fresh session configured")
        await asyncio.sleep(1.0)  # what a seed would have sent has arrived by now
        assert seeded(frames, frames.peers()[-1], JOKE) == (False, False)
        assert await r.stop() == 0
    assert not path.exists()
    assert "carrying them in the instructions instead" in caplog.text


async def test_a_corrupt_memory_file_is_set_aside_and_the_daemon_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "voice-agent.memory")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / FILENAME).write_text('{"turns": [{"user": ')
    async with rig(tmp_path, omni(tmp_path)) as r:
        await r.until(lambda: r.daemon.status.connected, 10, "the session")
        assert r.daemon.status.memory_turns == 0
        await r.answer(JOKE)
        await r.until(lambda: r.daemon.status.memory_turns == 1, 20, "a new memory")
        assert await r.stop() == 0
    aside = [p.name for p in state.iterdir() if p.name.startswith(f"{FILENAME}.corrupt-")]
    assert len(aside) == 1
    assert "moved aside" in caplog.text
    assert json.loads((state / FILENAME).read_text())["turns"][0]["user"] == JOKE


# --- pipeline mode, through the control socket ---------------------------------------------------


@pytest.fixture
def daemon_mode() -> str:
    return "pipeline"


async def control(work: Path, cmd: str, text: str | None = None) -> dict[str, Any]:
    from agent.controlclient import request

    doc = {"cmd": cmd} if text is None else {"cmd": cmd, "text": text}
    return await asyncio.to_thread(request, work / "control.sock", doc, 10.0)


async def test_pipeline_history_is_seeded_after_a_restart_and_forget_clears_it(
    daemon: RunDaemon, tmp_path: Path
) -> None:
    async with daemon(pipeline__input="text") as run:
        mode = await run.serving()
        mode.llm.parameters["max_tokens"] = 6
        assert await control(tmp_path, "ask", JOKE) == {"ok": True}
        turn = await run.next_turn()
        for _ in range(200):
            if run.daemon.status.memory_turns:
                break
            await asyncio.sleep(0.02)
        assert (await control(tmp_path, "status"))["status"]["memory_turns"] == 1
        await run.stop()
    assert turn.answered

    async with daemon(pipeline__input="text") as run:
        mode = await run.serving()
        assert [(t.user, t.assistant) for t in mode.conv.turns] == [(JOKE, turn.answered)]
        first = mode.conv.messages("And another one?")
        assert [m["role"] for m in first] == ["system", "user", "assistant", "user"]
        assert await control(tmp_path, "forget") == {"ok": True}
        assert mode.conv.turns == ()
        assert (await control(tmp_path, "status"))["status"]["memory_turns"] == 0
        assert not (tmp_path / "state" / FILENAME).exists()
        await run.stop()


async def test_omni_memory_goes_into_the_instructions_when_text_items_are_refused(
    tmp_path: Path,
) -> None:
    """The strict reading of the client-events page (only tool outputs as items): the emulator's
    `refuse_input_text` fault refuses the seed's user items too; the turns still arrive, in the
    instructions, and the refusals never show as the daemon's error."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / FILENAME).write_text(json.dumps(
        {"version": 1, "turns": [{"user": "my name is Ada", "assistant": "Hello Ada."}]}))
    frames = Frames()
    async with rig(tmp_path, omni(tmp_path), faults="refuse_input_text@realtime",
                   emulator_options={"on_sent": frames.on_sent}) as r:
        await r.until(lambda: r.daemon.status.connected, 10, "the session")
        await r.until(lambda: seeded(frames, 1, "my name is Ada")[1], 10, "the instructions")
        await asyncio.sleep(0.5)
        status = r.status
        assert await r.stop() == 0
    assert seeded(frames, 1, "my name is Ada")[0] is False  # no item was accepted
    assert frames.of(1, "error"), "the emulator refused the items"
    assert status["last_error"] is None and status["memory_turns"] == 1
