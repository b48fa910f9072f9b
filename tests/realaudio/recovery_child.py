"""A minimal daemon for the device-recovery test: an AudioEngine driven over stdin/stdout.

Runs in its own process so that a PortAudio thread wedged by a dying sound server (a
PortAudio 19.6 bug, see AudioEngine._wedge) can be killed with the process, exactly like systemd
would restart the daemon — and cannot flood or hang the test runner.

Prints one JSON object per line: {"event": "ok" | "down" | "up" | "played" | "wedged", "status": {...}}.
Reads commands from stdin: "play" (play the test signal as a response), "quit".
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import numpy as np

from agent.audio import AudioEngine
from agent.config import AudioSettings, StreamSettings

EX_WEDGED = 75  # EX_TEMPFAIL: "restart me"


def emit(event: str, eng: AudioEngine, **extra) -> None:
    print(json.dumps({"event": event, "status": eng.status(), **extra}), flush=True)


async def until(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


async def main() -> None:
    signal_seed = int(sys.argv[1])
    eng = AudioEngine(
        AudioSettings(output=StreamSettings(device="agent_speaker"), input=StreamSettings(device="agent_mic"))
    )

    def fatal(msg: str) -> None:
        emit("wedged", eng, message=msg)
        os._exit(EX_WEDGED)

    eng.on_fatal = fatal
    await eng.start()
    both = lambda: eng.output_ok and eng.input_ok  # noqa: E731
    emit("ok" if await until(both, 2) else "down", eng)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    was_ok = both()
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), 0.05)
        except asyncio.TimeoutError:
            line = None
        if line is not None:
            cmd = line.decode().strip()
            if cmd in ("quit", ""):
                break
            if cmd == "play":
                rng = np.random.default_rng(signal_seed)
                sig = (np.convolve(rng.standard_normal(12000), np.ones(6) / 6, "same") * 4000).astype(np.int16)
                eng.player.begin("probe")
                eng.player.feed("probe", sig)
                eng.player.end("probe")
                st = await eng.player.wait_finished("probe")
                await asyncio.sleep(0.2)
                emit("played", eng, played_ms=st.played_ms if st else None)
        now_ok = both()
        if now_ok != was_ok:
            emit("up" if now_ok else "down", eng)
            was_ok = now_ok
    await eng.stop()


if __name__ == "__main__":
    asyncio.run(main())
