"""Kill -9 between `create` reaching the service and the id reaching voices.json: no duplicate.

ensure runs in a subprocess; the emulator (in this process) holds each customization request for a
moment (injected latency), so the kill lands after the create request has arrived and before its
answer could be recorded. The server still completes the create, as a real one would. The next
start must find that voice by listing, guided by the intent record, and create nothing.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
import yaml

from agent.emulator.server import Emulator
from agent.voices.cache import PENDING, READY, VoiceCache
from tests.support.emulator import API_KEY
from tests.support.samples import speech
from tests.support.samples import write_sample as write_wav
from tests.support.voices import creates, fast_options, run, store

SCRIPT = """
import asyncio, logging, sys
from pathlib import Path
from agent.config import load_settings
from agent.account import DashScopeAccount
from agent.voices import ensure_voice

s = load_settings(sys.argv[1])
res = asyncio.run(ensure_voice(s, DashScopeAccount.from_settings(s),
                               Path(s.state_dir), log=logging.getLogger("crash-test")))
print(res.voice_id)
"""


@pytest.mark.parametrize(
    ("family", "restart_at_once"), [("qwen", False), ("cosyvoice", False), ("qwen", True)]
)
async def test_kill_9_after_create_does_not_duplicate(emulator: Emulator, tmp_path: Path, family: str,
                                                      restart_at_once: bool) -> None:
    """restart_at_once: the restart lists before the server has finished the create (systemd
    restarts fast); the fresh intent makes it list again after pauses instead of creating."""
    state = tmp_path / "state"
    state.mkdir()
    wav = write_wav(tmp_path / "me.wav", speech(12.0, 24000), 24000)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "mode": "omni" if family == "qwen" else "pipeline",
        "dashscope": {"api_key": API_KEY, "http_url": emulator.base_url},
        "voice": {"family": family, "name": "kiosk", "sample": str(wav)},
        "state_dir": str(state),
    }))
    emulator.context.faults.set("latency=0.5s@customization")
    action = "create" if family == "qwen" else "create_voice"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await emulator.context.request_log.wait_for(timeout_s=30, action=action)
    finally:
        proc.kill()  # SIGKILL: no cleanup, no cache write
        _, err = await proc.communicate()
    assert proc.returncode == -9, err.decode()

    (entry,) = VoiceCache(state).load()
    assert entry.state == PENDING and entry.voice_id is None and entry.request_name

    emulator.context.faults.clear()
    if restart_at_once:
        assert not store(emulator, family)  # still in the server's hands
        res = await run(emulator, tmp_path, family, sample=str(wav),
                        options=fast_options(settle_delays_s=(0.2, 0.4, 0.8)))
        (created_id,) = store(emulator, family)
    else:
        deadline = time.monotonic() + 5
        while not store(emulator, family) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # the server finishes the create it received
        (created_id,) = store(emulator, family)
        res = await run(emulator, tmp_path, family, sample=str(wav))
    assert res.voice_id == created_id and res.outcome == "reused" and res.verified
    assert len(creates(emulator)) == 1 and len(store(emulator, family)) == 1
    (entry,) = VoiceCache(state).load()
    assert (entry.state, entry.voice_id) == (READY, created_id)
