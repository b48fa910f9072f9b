"""The emulator as one region: `--region intl` refuses what the capability table says Singapore
refuses, `--region cn` serves it, and no region keeps the old everything-everywhere behaviour."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.emulator.region import UPLOAD_REFUSED
from agent.emulator.server import Emulator
from tests.emulator.test_cosyvoice_ws import PATH as WS_PATH
from tests.emulator.test_cosyvoice_ws import collect, finish, run_task, text
from tests.support.emulator import API_KEY
from tests.support.ws import connect, recv, send, start_emulator

CUSTOMIZATION = "/api/v1/services/audio/tts/customization"
ROOT = Path(__file__).resolve().parents[2]
LONG = "This is a long sentence that takes a few seconds to speak aloud."


async def _region(region: str | None, **kw: Any) -> Emulator:
    return await start_emulator(region=region, **kw)


async def _http(em: Emulator, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as s, s.request(method, em.base_url + path, headers=headers, **kw) as r:
        return r.status, await r.json()


async def _create(em: Emulator, target: str, **inp: Any) -> tuple[int, dict[str, Any]]:
    body = {"model": "voice-enrollment",
            "input": {"action": "create_voice", "target_model": target, "prefix": "kiosk", **inp}}
    return await _http(em, "POST", CUSTOMIZATION, json=body)


DESIGN = {"voice_prompt": "A calm announcer", "preview_text": "Hello there.", "language_hints": ["en"]}
CLONE = {"url": "https://example.com/kiosk.wav"}


@pytest.mark.parametrize(("region", "upload", "design", "v35", "v3_clone"), [
    ("intl", 403, 403, 400, 200),  # v3 cloning is disputed in intl: the emulator accepts it
    ("cn", 200, 200, 200, 200),
    (None, 200, 200, 200, 200),
])
async def test_http_features_follow_the_regions_table(
        region: str | None, upload: int, design: int, v35: int, v3_clone: int) -> None:
    em = await _region(region)
    try:
        status, body = await _http(em, "GET", "/api/v1/uploads",
                                   params={"action": "getPolicy", "model": "voice-enrollment"})
        assert status == upload
        if upload == 403:
            assert (body["code"], body["message"]) == ("AccessDenied", UPLOAD_REFUSED)
        status, body = await _create(em, "cosyvoice-v3-flash", **DESIGN)
        assert status == design
        if design == 403:
            assert body["code"] == "Model.AccessDenied" and "Singapore" in body["message"]
        status, body = await _create(em, "cosyvoice-v3.5-flash", **CLONE)
        assert status == v35
        if v35 == 400:
            assert body["code"] == "InvalidParameter" and "cosyvoice-v3.5-flash" in body["message"]
        status, _ = await _create(em, "cosyvoice-v3-flash", **CLONE)
        assert status == v3_clone
    finally:
        await em.stop()


@pytest.mark.parametrize(("region", "served"), [("intl", False), ("cn", True)])
async def test_synthesis_with_v35_is_served_in_cn_only(region: str, served: bool) -> None:
    em = await _region(region)
    try:
        ws = await connect(em, WS_PATH)
        tid = uuid.uuid4().hex
        frame = run_task(tid)
        frame["payload"]["model"] = "cosyvoice-v3.5-flash"
        frame["payload"]["parameters"]["voice"] = "longanyang"
        await send(ws, frame)
        header = (await recv(ws))["header"]
        if served:
            assert header["event"] in ("task-started", "task-failed")  # v3.5: no system voices
        else:
            assert (header["event"], header["error_code"]) == ("task-failed", "ModelNotFound")
        await ws.close()
    finally:
        await em.stop()


@pytest.mark.parametrize(("region", "honoured"), [("intl", False), ("cn", True), (None, True)])
async def test_the_cancel_directive_is_honoured_in_cn_and_ignored_in_intl(
        region: str | None, honoured: bool) -> None:
    em = await _region(region, cosyvoice_speed=1.0)
    try:
        ws = await connect(em, WS_PATH)
        tid = uuid.uuid4().hex
        await send(ws, run_task(tid))
        await recv(ws)
        await send(ws, text(tid, LONG))
        assert (await recv(ws))["payload"]["output"]["type"] == "sentence-begin"
        await send(ws, finish(tid, directive="cancel"))
        t0 = time.monotonic()
        frames = await collect(ws, timeout=15)
        assert frames[-1]["header"]["event"] == "task-finished"
        audio = [f for f in frames if isinstance(f, bytes)]
        if honoured:
            assert time.monotonic() - t0 < 1.0 and not audio
        else:  # an ordinary finish-task: the whole sentence is still spoken
            assert len(audio) >= 1 and time.monotonic() - t0 > 1.0
        await ws.close()
    finally:
        await em.stop()


def test_the_command_line_takes_a_region() -> None:
    env = {**os.environ, "DASHSCOPE_API_KEY": API_KEY}
    proc = subprocess.Popen([sys.executable, "-m", "agent", "emulator", "--port", "0", "--region", "intl"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()

        async def probe() -> int:
            async with aiohttp.ClientSession() as s, s.get(
                    url + "/api/v1/uploads", params={"action": "getPolicy", "model": "voice-enrollment"},
                    headers={"Authorization": f"Bearer {API_KEY}"}) as r:
                return r.status

        assert asyncio.run(probe()) == 403
    finally:
        proc.terminate()
        proc.wait(10)
    bad = subprocess.run([sys.executable, "-m", "agent", "emulator", "--region", "mars"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "--region" in bad.stderr
