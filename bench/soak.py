"""Soak: a long conversation with barge-ins and disconnects; does anything grow?

Why: an always-on device runs for months, and the classic failures of voice daemons are slow —
memory that grows during silence or with every barge-in (audio buffers kept), tasks or sockets
leaked by each reconnect, an exception nobody retrieves (reference anchors §3.6, §3.5). A
functional test cannot see them; a soak that repeats the risky paths hundreds of times and
samples the process can.

What runs: the real daemon **in this process** (so asyncio tasks can be counted), with null audio
backends and a scripted microphone that speaks phrases on demand (16 kHz speech injected into
the null input, in real time), against the emulator in a **subprocess** (so its memory is not
counted). The user asks questions, often talks over the answer (barge-in), sometimes lets it
finish and sometimes stays silent for a while. The emulator closes every realtime session after
`--session-max` seconds (like the cloud's 120-minute cap, scaled down) and, every `--drop-every`
seconds, the next connection is dropped abruptly mid-stream (`drop_after=N*once`).

Sampled every `--sample-every` seconds: RSS, asyncio task count, open file descriptors, threads,
and the daemon's status counters (through the control socket, as an integrator would poll it).
Growth is the median of the last minute minus the median of the first minute after warm-up.

    python bench/soak.py                                   # 10 minutes, 100 barge-ins, omni
    python bench/soak.py --mode pipeline --duration 600
    python bench/soak.py --duration 60 --barge-ins 10 --warmup 20 --window 10   # CI-sized

Exit status 0 when every verdict passes (RSS growth ≤ 5 MB, tasks/descriptors/threads flat, no
unhandled exception, the load was actually applied); the report is printed as Markdown and
written as JSON next to the logs (`--work`, default a temporary directory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import platform
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.audio.engine import AudioEngine
from agent.audio.virtual import ScriptedMic
from agent.config import Settings, settings_from_dict
from agent.daemon import Daemon
from agent.emulator.speech import synthesize
from agent.logs import TextFormatter

QUESTIONS = (
    "Tell me a joke.",
    "What's the weather like today?",
    "What time is it?",
    "Hello there.",
    "Tell me about the moon.",
    "How are you doing?",
    "What can you do?",
    "Play some music.",
)
# A log line that means an exception escaped somewhere (asyncio's own wording, or a traceback).
UNHANDLED = re.compile(r"Task exception was never retrieved|Traceback \(most recent call last\)|"
                       r"Exception in callback|exception was never retrieved")

EMULATOR_SCRIPT = """
import sys
from agent.emulator.context import EmulatorOptions
from agent.emulator.server import run
sys.exit(run(port=0, api_key=sys.argv[1],
             options=EmulatorOptions(realtime_session_max_s=float(sys.argv[2]))))
"""


# --- process meters ----------------------------------------------------------------------------


def _proc_status() -> dict[str, int]:
    fields: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                fields[key] = int(value.split()[0])
    return fields


@dataclass
class Sample:
    t: float  # seconds since the soak started
    rss_mb: float
    tasks: int
    fds: int
    threads: int
    turns: int
    barge_ins: int
    reconnects: int
    state: str
    connected: bool


def take_sample(t0: float, status: dict[str, Any]) -> Sample:
    """One measurement of this process (after a full GC, so garbage does not look like growth)."""
    gc.collect()
    st = _proc_status()
    return Sample(
        t=round(time.monotonic() - t0, 1),
        rss_mb=round(st["VmRSS"] / 1024.0, 2),
        tasks=len(asyncio.all_tasks()),
        fds=len(os.listdir("/proc/self/fd")),
        threads=st["Threads"],
        turns=int(status.get("turns", 0)),
        barge_ins=int(status.get("barge_ins", 0)),
        reconnects=int(status.get("reconnects", 0)),
        state=str(status.get("state", "?")),
        connected=bool(status.get("connected", False)),
    )


async def control_status(sock: Path) -> dict[str, Any]:
    """`{"cmd": "status"}` over the control socket, as an integrator polls it."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(sock)), 5.0)
    try:
        writer.write(b'{"cmd": "status"}\n')
        await writer.drain()
        reply = json.loads(await asyncio.wait_for(reader.readline(), 5.0))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not reply.get("ok"):
        raise RuntimeError(f"status failed: {reply}")
    return reply["status"]


# --- log watch ---------------------------------------------------------------------------------


class LogWatch(logging.Handler):
    """Counts warnings and errors and keeps every record that shows an unhandled exception."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: dict[str, int] = {}
        self.unhandled: list[str] = []
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] = self.counts.get(record.levelname, 0) + 1
        text = record.getMessage()
        if record.exc_info or UNHANDLED.search(text):
            self.unhandled.append(f"{record.name}: {text[:300]}")
        elif record.levelno >= logging.ERROR and len(self.errors) < 50:
            self.errors.append(f"{record.name}: {text[:300]}")


def loop_exception_handler(watch: LogWatch) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """Record what asyncio would print as 'Task exception was never retrieved' and the like."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        watch.unhandled.append(f"asyncio: {context.get('message')}: {exc!r}"[:300])
        loop.default_exception_handler(context)

    return handler


# --- the run -----------------------------------------------------------------------------------


@dataclass
class SoakConfig:
    mode: str = "omni"
    duration_s: float = 600.0
    barge_ins: int = 100
    sample_every_s: float = 5.0
    warmup_s: float = 60.0
    window_s: float = 60.0  # baseline and end windows for the growth figures
    session_max_s: float = 60.0  # the emulator closes each realtime session after this
    drop_every_s: float = 90.0  # arm an abrupt drop of the next connection this often
    silence_every_s: float = 120.0  # a long quiet spell (memory during silence) this often
    silence_s: float = 15.0
    seed: int = 1
    work: Path | None = None


@dataclass
class SoakReport:
    config: dict[str, Any]
    machine: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    growth: dict[str, float] = field(default_factory=dict)
    rss_slope_mb_per_min: float = 0.0
    load: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, Any] = field(default_factory=dict)
    emulator_tracebacks: list[str] = field(default_factory=list)
    verdicts: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(self.verdicts.values())


def daemon_settings(mode: str, base_url: str, api_key: str, work: Path) -> Settings:
    return settings_from_dict({
        "mode": mode,
        "dashscope": {"http_url": base_url, "api_key": api_key},
        "voice": {"family": "preset", "preset": "Tina" if mode == "omni" else "longanyang"},
        "pipeline": {"input": "mic"},
        "audio": {"input": {"backend": "null"}, "output": {"backend": "null"}, "echo": "none"},
        "state_dir": str(work / "state"),
        "control": {"socket": str(work / "control.sock")},
        "log": {"level": "info", "transcripts": True},
    }, "<soak>")


async def start_emulator(api_key: str, session_max_s: float, log_path: Path) -> tuple[subprocess.Popen[str], str]:
    log_file = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-c", EMULATOR_SCRIPT, api_key, str(session_max_s)],
        stdout=subprocess.PIPE, stderr=log_file, text=True,
    )
    log_file.close()
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30.0)
    if not line.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the emulator did not start: {line!r} (see {log_path})")
    return proc, line.strip()


async def set_faults(base_url: str, api_key: str, spec: str) -> None:
    """Arm a fault through the emulator's control API (what an integrator's test would do)."""
    import aiohttp

    async with aiohttp.ClientSession() as http, http.post(
        f"{base_url}/_emulator/faults", data=spec, headers={"Authorization": f"Bearer {api_key}"},
    ) as resp:
        if resp.status != 200:
            raise RuntimeError(f"setting faults {spec!r} failed: HTTP {resp.status}")


async def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(step)
    return pred()


async def converse(daemon: Daemon, mic: ScriptedMic, cfg: SoakConfig, t0: float,
                   base_url: str, api_key: str, stats: dict[str, int]) -> None:
    """The user: questions, barge-ins at a steady rate, finished answers, quiet spells, drops."""
    rng = random.Random(cfg.seed)
    end = t0 + cfg.duration_s
    next_drop = t0 + cfg.drop_every_s
    next_silence = t0 + cfg.silence_every_s
    status = daemon.status
    while time.monotonic() < end - 3.0:
        engine = daemon.engine
        if engine is None or daemon.mode is None or not status.connected:
            await asyncio.sleep(0.2)
            continue
        now = time.monotonic()
        if now >= next_drop:
            next_drop += cfg.drop_every_s
            # The connection after the next (re)connect dies abruptly a few messages in.
            await set_faults(base_url, api_key, f"drop_after={rng.randint(6, 40)}@realtime*once")
            stats["drops_armed"] += 1
        if now >= next_silence:
            next_silence += cfg.silence_every_s
            stats["silences"] += 1
            await asyncio.sleep(min(cfg.silence_s, max(0.0, end - time.monotonic() - 3.0)))
            continue
        await mic.say_and_wait(rng.choice(QUESTIONS))
        stats["questions"] += 1
        player = engine.player
        if not await wait_until(lambda p=player: p.activity.speaking(time.monotonic()), 6.0):
            # The session dropped (or the server closed it) mid-question: ask again.
            stats["unanswered"] += 1
            continue
        elapsed = (time.monotonic() - t0) / cfg.duration_s
        if status.barge_ins < cfg.barge_ins * min(1.0, elapsed * 1.1) + 1:
            await asyncio.sleep(rng.uniform(0.3, 1.5))  # the next question talks over the answer
            stats["barge_attempts"] += 1
        else:
            await wait_until(lambda p=player: not p.activity.busy(time.monotonic()), 20.0)
            await asyncio.sleep(rng.uniform(0.3, 2.0))


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def analyse(report: SoakReport, cfg: SoakConfig, watch: LogWatch, stats: dict[str, int]) -> None:
    after = [s for s in report.samples if s.t >= cfg.warmup_s]
    base = [s for s in after if s.t < cfg.warmup_s + cfg.window_s]
    last_t = report.samples[-1].t if report.samples else 0.0
    tail = [s for s in after if s.t > last_t - cfg.window_s]
    for name in ("rss_mb", "tasks", "fds", "threads"):
        b = _median([getattr(s, name) for s in base])
        e = _median([getattr(s, name) for s in tail])
        report.growth[name] = round(e - b, 2)
        report.growth[f"{name}_baseline"] = round(b, 2)
        report.growth[f"{name}_max"] = max((getattr(s, name) for s in after), default=0)
    if len(after) >= 2:
        ts = np.array([s.t / 60.0 for s in after])
        rss = np.array([s.rss_mb for s in after])
        report.rss_slope_mb_per_min = round(float(np.polyfit(ts, rss, 1)[0]), 3)
    final = report.samples[-1] if report.samples else None
    report.load = {
        **stats,
        "turns": final.turns if final else 0,
        "barge_ins": final.barge_ins if final else 0,
        "reconnects": final.reconnects if final else 0,
    }
    report.logs = {"counts": watch.counts, "unhandled": watch.unhandled, "errors": watch.errors}
    g = report.growth
    report.verdicts = {
        "rss_growth_le_5mb": g.get("rss_mb", 99.0) <= 5.0,
        "tasks_flat": g.get("tasks", 99.0) <= 2,
        "fds_flat": g.get("fds", 99.0) <= 2,
        "threads_flat": g.get("threads", 99.0) <= 1,
        "no_unhandled_exception": not watch.unhandled,
        "barge_ins_reached": report.load["barge_ins"] >= 0.9 * cfg.barge_ins,
        "disconnects_survived": report.load["reconnects"] >= 1 and bool(final and final.connected),
    }


async def run_soak(cfg: SoakConfig) -> SoakReport:
    work = cfg.work or Path(tempfile.mkdtemp(prefix="voice-agent-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    report = SoakReport(
        config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()} | {"work": str(work)},
        machine={"python": platform.python_version(), "platform": platform.platform(),
                 "cpus": os.cpu_count(), "machine": platform.machine()},
    )
    watch = LogWatch()
    file_handler = logging.FileHandler(work / "daemon.log", encoding="utf-8")
    file_handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.addHandler(watch)
    root.addHandler(file_handler)
    root.setLevel(logging.INFO)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler(watch))

    api_key = "sk-soak-" + secrets.token_hex(8)
    emulator, base_url = await start_emulator(api_key, cfg.session_max_s, work / "emulator.log")
    settings = daemon_settings(cfg.mode, base_url, api_key, work)
    engine = AudioEngine(settings.audio)
    mic = ScriptedMic(synthesize)
    mic.install(engine)
    daemon = Daemon(settings, api_key=api_key, engine=engine)
    task = asyncio.create_task(daemon.run(), name="soak-daemon")
    stats = {"questions": 0, "unanswered": 0, "barge_attempts": 0, "drops_armed": 0, "silences": 0}
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(daemon.ready.wait(), 30.0)
        await wait_until(lambda: daemon.status.connected, 30.0)
        t0 = time.monotonic()
        user = asyncio.create_task(converse(daemon, mic, cfg, t0, base_url, api_key, stats))
        next_sample = t0
        while time.monotonic() < t0 + cfg.duration_s:
            if task.done():
                raise RuntimeError(f"the daemon stopped: {task.result()!r}")
            if user.done():
                user.result()  # a bug in the driver must not pass as a quiet soak
            status = await control_status(work / "control.sock")
            report.samples.append(take_sample(t0, status))
            s = report.samples[-1]
            print(f"  t={s.t:6.1f}s rss={s.rss_mb:7.2f} MB tasks={s.tasks:3d} fds={s.fds:3d} "
                  f"threads={s.threads:2d} turns={s.turns:4d} barge_ins={s.barge_ins:4d} "
                  f"reconnects={s.reconnects:3d} {s.state}", file=sys.stderr, flush=True)
            next_sample += cfg.sample_every_s
            await asyncio.sleep(max(0.0, next_sample - time.monotonic()))
        await asyncio.wait_for(user, 30.0)
    finally:
        daemon.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10.0)
        emulator.terminate()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(emulator.wait, 10.0)
        root.removeHandler(watch)
        root.removeHandler(file_handler)
        file_handler.close()
    emulator_log = (work / "emulator.log").read_text(encoding="utf-8", errors="replace")
    report.emulator_tracebacks = [m.group(0) for m in re.finditer(r"Traceback[^\n]*\n(?:[ \t].*\n)*.*", emulator_log)][:10]
    analyse(report, cfg, watch, stats)
    (work / "soak.json").write_text(json.dumps(asdict(report), indent=2, default=str))
    return report


def markdown(report: SoakReport, every_s: float = 60.0) -> str:
    """The report as Markdown: a time table (one row per `every_s`), growth and verdicts."""
    lines = ["| t (s) | RSS (MB) | tasks | fds | threads | turns | barge-ins | reconnects |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    next_t = 0.0
    rows = report.samples
    for i, s in enumerate(rows):
        if s.t >= next_t or i == len(rows) - 1:
            lines.append(f"| {s.t:.0f} | {s.rss_mb:.2f} | {s.tasks} | {s.fds} | {s.threads} | "
                         f"{s.turns} | {s.barge_ins} | {s.reconnects} |")
            next_t = s.t + every_s
    g = report.growth
    lines += [
        "",
        f"Growth (median of the last window − median of the first window after warm-up): "
        f"RSS {g.get('rss_mb', 0):+.2f} MB (baseline {g.get('rss_mb_baseline', 0):.2f} MB, "
        f"slope {report.rss_slope_mb_per_min:+.3f} MB/min), tasks {g.get('tasks', 0):+.0f}, "
        f"fds {g.get('fds', 0):+.0f}, threads {g.get('threads', 0):+.0f}.",
        "",
        "Load: " + ", ".join(f"{k} {v}" for k, v in report.load.items()) + ".",
        "",
        "Logs: " + ", ".join(f"{k} {v}" for k, v in sorted(report.logs.get("counts", {}).items()))
        + f"; unhandled exceptions {len(report.logs.get('unhandled', []))}"
        + f"; emulator tracebacks {len(report.emulator_tracebacks)}.",
        "",
        "Verdicts: " + ", ".join(f"{k} {'PASS' if v else 'FAIL'}" for k, v in report.verdicts.items()) + ".",
    ]
    for item in report.logs.get("unhandled", [])[:10]:
        lines.append(f"- unhandled: {item}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("omni", "pipeline"), default="omni")
    ap.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    ap.add_argument("--barge-ins", type=int, default=100)
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=60.0)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--session-max", type=float, default=60.0)
    ap.add_argument("--drop-every", type=float, default=90.0)
    ap.add_argument("--silence-every", type=float, default=120.0)
    ap.add_argument("--silence", type=float, default=15.0, help="length of a quiet spell (s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args(argv)
    cfg = SoakConfig(
        mode=args.mode, duration_s=args.duration, barge_ins=args.barge_ins,
        sample_every_s=args.sample_every, warmup_s=args.warmup, window_s=args.window,
        session_max_s=args.session_max, drop_every_s=args.drop_every,
        silence_every_s=args.silence_every, silence_s=args.silence, seed=args.seed,
        work=args.work,
    )
    report = asyncio.run(run_soak(cfg))
    print(markdown(report))
    print(f"\n(JSON and logs in {report.config['work']})")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
