"""Kill -9 of the whole daemon during enrollment, then a restart: one voice, and it is used.

tests/voices/test_crash.py kills a bare `ensure_voice` after `create` reached the service, and
tests/voices/test_cache.py kills a process rewriting the cache; this is the same promise for
what runs on a device: `voice-agent run` (control socket, audio, everything), SIGKILLed at the
worst moments — power cut, OOM killer — and restarted the way systemd would, at once. The
emulator's store is the service's truth: it must end up holding exactly one voice, created by
exactly one `create` request, and the restarted daemon must serve with that voice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.controlclient import NotRunning, request
from agent.emulator.server import Emulator
from tests.support.emulator import API_KEY, start_emulator
from tests.support.samples import write_voice_sample


def config(work: Path, base_url: str, family: str) -> Path:
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump({
        "mode": "omni" if family == "qwen" else "pipeline",
        # cn: a local CosyVoice sample needs the temporary upload, which only Beijing offers.
        "dashscope": {"http_url": base_url, "api_key": API_KEY,
                      "region": "cn" if family == "cosyvoice" else "intl"},
        "voice": {"family": family, "name": "kiosk", "sample": str(write_voice_sample(work / "me.wav"))},
        "pipeline": {"input": "text"},
        "audio": {"input": {"backend": "null"}, "output": {"backend": "null"}, "echo": "none"},
        "state_dir": str(work / "state"),
        "control": {"socket": str(work / "control.sock")},
    }))
    return path


async def start_daemon(cfg: Path, log: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
    with open(log, "ab") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--config", str(cfg),
            stdout=asyncio.subprocess.DEVNULL, stderr=err, env=env,
        )


async def status(work: Path) -> dict[str, Any] | None:
    try:
        reply = await asyncio.to_thread(request, work / "control.sock", {"cmd": "status"}, 2.0)
    except (NotRunning, OSError, ValueError):  # not (yet) listening
        return None
    return reply.get("status")


def creates(em: Emulator) -> list[Any]:
    return [r for r in em.context.request_log.records() if r.action in ("create", "create_voice")]


def store(em: Emulator, family: str) -> dict[str, Any]:
    return em.context.stores.qwen_voices if family == "qwen" else em.context.stores.cosy_voices


async def wait_for(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(("family", "moment"), [
    ("qwen", "create-in-flight"),  # the service is still creating when the power goes
    ("qwen", "create-done"),  # the service has the voice; did the daemon write it down?
    ("cosyvoice", "create-in-flight"),
    ("cosyvoice", "deploying"),  # the id is cached, the voice is still in review
])
async def test_kill_9_during_enrollment_then_restart_creates_exactly_one_voice(
    tmp_path: Path, family: str, moment: str
) -> None:
    emulator = await start_emulator(enroll_delay_s=1.5)
    base = emulator.base_url
    log = tmp_path / "daemon.log"
    cfg = config(tmp_path, base, family)
    action = "create" if family == "qwen" else "create_voice"
    try:
        if moment == "create-in-flight":
            emulator.context.faults.set("latency=0.8s@customization")
        first = await start_daemon(cfg, log)
        try:
            if moment == "create-in-flight":
                await emulator.context.request_log.wait_for(timeout_s=30, action=action)
            elif moment == "create-done":
                async def created() -> bool:
                    return bool(store(emulator, family))
                await wait_for(created, 30, "the voice at the service")
            else:
                await emulator.context.request_log.wait_for(timeout_s=30, action="query_voice")
        finally:
            first.send_signal(signal.SIGKILL)  # no cleanup, no cache write, no goodbye
            await first.wait()
        assert first.returncode == -signal.SIGKILL
        emulator.context.faults.clear()

        second = await start_daemon(cfg, log)  # systemd's Restart=: immediately
        try:
            async def serving() -> bool:
                st = await status(tmp_path)
                return bool(st and st["voice"] and st["connected"] and st["last_error"] is None)

            await wait_for(serving, 40, "the restarted daemon serving with its voice")
            st = await status(tmp_path)
            assert st is not None
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 10) == 0
        finally:
            if second.returncode is None:
                second.kill()
                await second.wait()
    finally:
        await emulator.stop()
    voices = store(emulator, family)
    assert len(voices) == 1, f"{len(voices)} voices at the service: {list(voices)}\n{log.read_text()}"
    assert len(creates(emulator)) == 1, "create was sent once, across both runs"
    assert st["voice"] == next(iter(voices)), "the restarted daemon uses that voice"
    cache = json.loads((tmp_path / "state" / "voices.json").read_text())
    assert json.dumps(cache).count(st["voice"]) == 1, "the cache records it once"
