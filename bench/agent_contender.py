"""Contender (a): the real voice-agent Daemon with file audio, in its own process.

    python bench/agent_contender.py --url URL --user user.wav --out speaker.wav --report r.json
                                    --window START END [--api-key K] [--model M]
    python bench/agent_contender.py --mode pipeline --scenario scenario.json ...

Why its own process: CPU time (getrusage) and RSS must belong to the daemon alone, not to the
emulator or to the other contender. The Daemon is the production class, run the way `voice-agent
run` runs it (control socket, watchdog, logging at info on stderr); only the configuration is
built in code — a preset voice (no enrollment), file backends and `echo: none`, because the file
microphone hears the user and never the speaker.

Omni mode hears the scripted user through the file microphone. Pipeline mode runs with
`pipeline.input: text` and gets each question as an `ask` (the control-socket command) at the
scenario's time: the pipeline benchmark measures LLM → synthesis → speaker, not speech input.

The CPU window is [t0 + START, t0 + END] on the audio timeline (t0 = sample 0 of both WAVs), the
same window the baseline uses, so both are measured over the same part of the conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import time
from pathlib import Path
from typing import Any

from benchkit import CpuWindow, read_json, write_json

from agent.audio.engine import AudioEngine
from agent.audio.playout import Player
from agent.audio.stats import ResponseStats
from agent.config import Settings, settings_from_dict
from agent.daemon import Daemon
from agent.logs import setup_logging
from agent.modes import Turn, cosyvoice_system_voice


def agent_settings(url: str, api_key: str, model: str, user: Path | None, out: Path, work: Path,
                   target_ms: int = 80, mode: str = "omni", end_of_turn: str = "server") -> Settings:
    pipeline = mode == "pipeline"
    return settings_from_dict(
        {
            "mode": mode,
            "dashscope": {"http_url": url, "api_key": api_key},
            "voice": {"family": "preset", "preset": cosyvoice_system_voice("cosyvoice-v3-flash") if pipeline else "Tina"},
            "omni": {"model": model},
            "pipeline": {"input": "text"},
            "audio": {
                "input": {"backend": "null"} if pipeline else {"backend": "file", "path": str(user)},
                "output": {"backend": "file", "path": str(out)},
                "echo": "none",
                "jitter": {"target_ms": target_ms},
            },
            "listen": {"end_of_turn": end_of_turn},
            "state_dir": str(work / "state"),
            "control": {"socket": str(work / "control.sock")},
            "log": {"level": "info"},
        },
        "<bench>",
    )


def timeline_start(engine: AudioEngine) -> float | None:
    """Monotonic time of sample 0 of the file WAVs (the engine's shared pacer start).

    Uses the engine's public `timeline_start` when it has one; otherwise the pacer's `t0`.
    """
    t0 = getattr(engine, "timeline_start", None)
    if t0 is None:
        t0 = getattr(getattr(engine, "_pacer", None), "t0", None)
    return t0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    setup_logging("info")
    work = args.report.parent / f"{args.report.stem}-state"  # never a dir named "agent"
    work.mkdir(parents=True, exist_ok=True)
    settings = agent_settings(args.url, args.api_key, args.model, args.user, args.out, work,
                              args.target_ms, args.mode, args.end_of_turn)
    turns: asyncio.Queue[Turn] = asyncio.Queue()
    daemon = Daemon(settings, turn_listener=turns)
    task = asyncio.create_task(daemon.run(), name="daemon")
    await asyncio.wait_for(daemon.ready.wait(), 15)
    assert daemon.engine is not None
    engine = daemon.engine
    finished: dict[str, ResponseStats] = {}  # in the order the player finished them
    collector = asyncio.create_task(_collect_finished(engine.player, finished))
    t0 = timeline_start(engine)
    while t0 is None:
        await asyncio.sleep(0.005)
        t0 = timeline_start(engine)
    asks = asyncio.create_task(_ask_on_schedule(daemon, args.scenario, t0)) if args.scenario else None
    window = CpuWindow()
    await asyncio.sleep(max(0.0, t0 + args.window[0] - time.monotonic()))
    window.start()
    await asyncio.sleep(max(0.0, t0 + args.window[1] - time.monotonic()))
    window.stop()
    if asks is not None:
        asks.cancel()
    status = daemon.status.as_dict()
    daemon.request_stop()
    code = await asyncio.wait_for(task, 10)
    collector.cancel()
    _merge_finished(engine.player, finished)
    got: list[Turn] = []
    while not turns.empty():
        got.append(turns.get_nowait())
    return {
        "contender": "voice-agent",
        "exit_code": code,
        "t0": t0,
        "window": [t0 + args.window[0], t0 + args.window[1]],
        "cpu": window.as_dict(),
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "status": status,
        "responses": [
            {
                "rid": st.response_id,
                "first_arrival": st.first_arrival,
                "first_output": st.first_output,
                "first_audible": st.first_audible,
                "added_latency_ms": st.added_latency_ms,
                "gaps": st.gaps,
                "gap_ms": st.gap_ms,
                "played_ms": st.played_ms,
                "received_ms": st.received_ms,
                "interrupted": st.interrupted,
                "lateness_ms": st.lateness_ms,
                "q_star_ms": st.q_star_ms,
            }
            for st in finished.values()
        ],
        "turns": [
            {"heard": t.heard, "latency_ms": t.latency_ms, "response_id": t.response_id,
             "interrupted": t.interrupted}
            for t in got
        ],
    }


def _merge_finished(player: Player, into: dict[str, ResponseStats]) -> None:
    for st in player.finished_responses():
        into.setdefault(st.response_id, st)


async def _collect_finished(player: Player, into: dict[str, ResponseStats]) -> None:
    """Every response the player finished, from its bounded archive (the last 64), read once a
    second: far more often than 64 responses can finish, and too rarely to cost CPU."""
    while True:
        _merge_finished(player, into)
        await asyncio.sleep(1.0)


async def _ask_on_schedule(daemon: Daemon, scenario: Path, t0: float) -> None:
    """Pipeline mode: each question as an `ask` at its time on the scenario's timeline."""
    for phrase in read_json(scenario)["phrases"]:
        await asyncio.sleep(max(0.0, t0 + phrase["at_s"] - time.monotonic()))
        while daemon.mode is None:  # the first ask may come before the mode is up
            await asyncio.sleep(0.01)
        await daemon.mode.ask(phrase["text"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--api-key", default="sk-emulator")
    ap.add_argument("--model", default="qwen3.5-omni-flash-realtime")
    ap.add_argument("--user", type=Path, default=None, help="omni: the microphone WAV")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--window", type=float, nargs=2, required=True, metavar=("START", "END"))
    ap.add_argument("--target-ms", type=int, default=80, help="audio.jitter.target_ms")
    ap.add_argument("--mode", choices=["omni", "pipeline"], default="omni")
    ap.add_argument("--end-of-turn", choices=["server", "local"], default="server",
                    help="listen.end_of_turn (local: the on-device decider, issue 18)")
    ap.add_argument("--scenario", type=Path, default=None, help="pipeline: when to ask what")
    args = ap.parse_args(argv)
    if args.mode == "omni" and args.user is None:
        ap.error("--user is required in omni mode")
    if args.mode == "pipeline" and args.scenario is None:
        ap.error("--scenario is required in pipeline mode")
    with contextlib.suppress(KeyboardInterrupt):
        report = asyncio.run(run(args))
        write_json(args.report, report)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
