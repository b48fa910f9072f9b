"""Start-up and footprint: process start → READY, imports, RSS, installed size.

    python bench/startup.py                 # ~1 minute
    python bench/startup.py --runs 10 --json startup.json

What is measured, and why this way:

* **start → READY** — `python -m agent run` is spawned exactly as systemd would (Type=notify,
  `$NOTIFY_SOCKET` pointing at a datagram socket this script reads); the clock runs from just
  before `exec` to the `READY=1` datagram. SPEC target: ≤ 1.5 s with a cached voice. Two voice
  set-ups: `qwen` with a `voices.json` cache populated beforehand by `voice-agent voices ensure`
  (the normal device case), and `preset`. The daemon also reports `STATUS=` lines; the first
  one saying "connected" gives start → connected (realtime session open).
* **vendor baseline** — the same start → connected for the vendor SDK: a process that imports
  `dashscope`, opens `OmniRealtimeConversation` and configures the session (what the vendor
  sample does before its first microphone read), so the two "ready to listen" times compare.
* **RSS** — of the daemon 2 s after it connected (VmRSS) and its peak (VmHWM).
* **imports** — `python -X importtime` of `-m agent --help` (the CLI path) and of
  `import agent.daemon` (what `run` loads), with the heavy third-party packages itemised, and
  which of them the running daemon actually imports (is `dashscope` ever loaded at run time?).
* **installed size** — every distribution in the dependency closure of `voice-agent` in this
  venv, from the installed files' sizes.

All timings are taken on a shared machine: each is repeated `--runs` times and reported as
median and max.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from benchkit import fmt, machine, proc_status_kb, ratio, write_json

HEAVY = ("numpy", "aiohttp", "websockets", "yaml", "soxr", "dashscope", "sounddevice", "requests")
API_KEY = "sk-bench-startup"


@dataclass
class StartRun:
    ready_s: float | None = None
    connected_s: float | None = None
    rss_mb: float | None = None
    hwm_mb: float | None = None
    stop_s: float | None = None
    exit_code: int | None = None
    statuses: list[str] = field(default_factory=list)


def daemon_config(work: Path, base_url: str, family: str, sample: Path) -> Path:
    voice: dict[str, Any] = (
        {"family": "qwen", "name": "bench", "sample": str(sample), "language": "en"}
        if family == "qwen" else {"family": "preset", "preset": "Tina"}
    )
    cfg = {
        "mode": "omni",
        "dashscope": {"http_url": base_url, "api_key": API_KEY},
        "voice": voice,
        "audio": {"input": {"backend": "null"}, "output": {"backend": "null"}, "echo": "none"},
        "state_dir": str(work / f"state-{family}"),
        "control": {"socket": str(work / f"control-{family}.sock")},
        "log": {"level": "info"},
    }
    path = work / f"{family}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_once(config: Path, work: Path, timeout: float = 20.0, importtime: bool = False) -> tuple[StartRun, str]:
    """Spawn `python -m agent run`, time READY=1 and the first "connected" STATUS, stop it."""
    sock_path = work / "notify.sock"
    with contextlib.suppress(FileNotFoundError):
        sock_path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    env = {k: v for k, v in os.environ.items() if k not in ("DASHSCOPE_API_KEY", "NOTIFY_SOCKET")}
    env["NOTIFY_SOCKET"] = str(sock_path)
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "agent", "run",
           "--config", str(config)]
    run = StartRun()
    err_path = work / "daemon.err"
    with open(err_path, "w") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=str(work))
        deadline = t0 + timeout
        try:
            while time.monotonic() < deadline and run.connected_s is None and proc.poll() is None:
                ready, _, _ = select.select([sock], [], [], 0.05)
                if not ready:
                    continue
                data, _ = sock.recvfrom(4096)
                t = time.monotonic() - t0
                for line in data.decode("utf-8", "replace").splitlines():
                    if line == "READY=1" and run.ready_s is None:
                        run.ready_s = t
                    elif line.startswith("STATUS="):
                        text = line[len("STATUS="):]
                        run.statuses.append(f"{t:.3f} {text}")
                        if _says_connected(text) and run.connected_s is None:
                            run.connected_s = t
            if run.connected_s is not None:
                time.sleep(2.0)  # settle: the realtime session is open and idle
                kb = proc_status_kb(proc.pid, "VmRSS")
                hwm = proc_status_kb(proc.pid, "VmHWM")
                run.rss_mb = None if kb is None else round(kb / 1024, 1)
                run.hwm_mb = None if hwm is None else round(hwm / 1024, 1)
        finally:
            t_stop = time.monotonic()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                run.exit_code = proc.wait(10)
                run.stop_s = time.monotonic() - t_stop
            except subprocess.TimeoutExpired:
                proc.kill()
                run.exit_code = proc.wait()
            sock.close()
    return run, err_path.read_text()


def _says_connected(text: str) -> bool:
    low = text.lower()
    return "connected" in low and "reconnect" not in low and "not connected" not in low


BASELINE_CLIENT = r"""
import sys, threading, time
import dashscope
from dashscope.audio.qwen_omni import (AudioFormat, MultiModality, OmniRealtimeCallback,
                                       OmniRealtimeConversation)
updated = threading.Event()
class CB(OmniRealtimeCallback):
    def on_event(self, message):
        if message.get("type") == "session.updated":
            updated.set()
url, key = sys.argv[1], sys.argv[2]
conv = OmniRealtimeConversation(model="qwen-omni-turbo-realtime-latest", callback=CB(),
                                url=url + "/api-ws/v1/realtime", api_key=key)
conv.connect()
conv.update_session(output_modalities=[MultiModality.AUDIO, MultiModality.TEXT], voice="Tina",
                    input_audio_format=AudioFormat.PCM_16000HZ_MONO_16BIT,
                    output_audio_format=AudioFormat.PCM_24000HZ_MONO_16BIT,
                    enable_turn_detection=True, turn_detection_type="server_vad")
updated.wait(10)
print("connected", flush=True)
sys.stdin.readline()
conv.close()
"""


def baseline_once(ws_url: str) -> float | None:
    """Start → session configured for the vendor SDK client (see module docstring)."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", BASELINE_CLIENT, ws_url, API_KEY],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    t = time.monotonic() - t0 if line.strip() == "connected" else None
    with contextlib.suppress(OSError):
        proc.stdin.write("\n")
        proc.stdin.flush()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
    return t


# --- imports --------------------------------------------------------------------------------


def importtime(args: list[str]) -> tuple[float, dict[str, float], set[str]]:
    """(wall seconds, cumulative ms of the top-level import of each HEAVY package, all modules)."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True)
    wall = time.monotonic() - t0
    return wall, parse_importtime(r.stderr), imported_modules(r.stderr)


_IT = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


def parse_importtime(stderr: str) -> dict[str, float]:
    """Cumulative ms of the first (outermost) import of each HEAVY package, plus the total."""
    out: dict[str, float] = {}
    total_self = 0
    for line in stderr.splitlines():
        m = _IT.match(line)
        if not m:
            continue
        total_self += int(m.group(1))
        name = m.group(4)
        if name in HEAVY:
            out[name] = max(out.get(name, 0.0), int(m.group(2)) / 1000.0)
    out["total"] = total_self / 1000.0
    return out


def imported_modules(stderr: str) -> set[str]:
    return {m.group(4) for line in stderr.splitlines() if (m := _IT.match(line))}


def wall_median(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([sys.executable, *args], capture_output=True)
        times.append(time.monotonic() - t0)
    return statistics.median(times)


# --- installed size -------------------------------------------------------------------------


def _req_name(req: str) -> str | None:
    """The distribution a requirement names, None if its marker excludes it here (extras etc.)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # no `packaging`: skip extras by text, keep everything else
        if ";" in req and "extra ==" in req.split(";", 1)[1]:
            return None
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)", req)
        return m.group(1).lower().replace("_", "-") if m else None
    r = Requirement(req)
    if r.marker is not None and not r.marker.evaluate({"extra": ""}):
        return None
    return r.name.lower().replace("_", "-")


def dependency_sizes(root: str = "voice-agent", without: str | None = None) -> dict[str, float]:
    """MB on disk of every distribution `root` pulls in (transitively), largest first.

    `without` leaves one direct dependency (and whatever only it needs) out of the walk.
    """
    seen: dict[str, float] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen or name == without:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        size = 0
        for f in dist.files or []:
            with contextlib.suppress(OSError):
                size += f.locate().stat().st_size
        seen[name] = size / 1e6
        for req in dist.requires or []:
            dep = _req_name(req)
            if dep and dep not in seen:
                todo.append(dep)
    seen.pop(root, None)
    return dict(sorted(seen.items(), key=lambda kv: -kv[1]))


# --- main -----------------------------------------------------------------------------------


def med(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return round(statistics.median(v), 3) if v else None


def mx(xs: list[float | None]) -> float | None:
    v = [x for x in xs if x is not None]
    return round(max(v), 3) if v else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="repetitions of each start (default 5)")
    ap.add_argument("--json", type=Path, default=None, help="write the full report here")
    args = ap.parse_args(argv)

    from agent.audio.wav import write_wav
    from agent.emulator.context import EmulatorOptions
    from agent.emulator.server import EmulatorThread
    from agent.emulator.speech import synthesize

    doc: dict[str, Any] = {"machine": machine(), "runs": args.runs}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp, \
            EmulatorThread(options=EmulatorOptions(api_key=API_KEY, enroll_delay_s=0.2)) as emu:
        work = Path(tmp)
        sample = work / "sample.wav"
        text = ("Hello, this is the voice of the benchmark kiosk. I speak clearly and calmly, so "
                "that everybody in the lobby can understand what I say every single day.")
        write_wav(sample, synthesize(text, 24000), 24000)
        configs = {f: daemon_config(work, emu.base_url, f, sample) for f in ("qwen", "preset")}
        # Populate the qwen voice cache the way a deployment would: `voices ensure` once.
        env = {k: v for k, v in os.environ.items() if k != "DASHSCOPE_API_KEY"}
        r = subprocess.run([sys.executable, "-m", "agent", "voices", "ensure", "--config",
                            str(configs["qwen"])], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print(f"startup: voices ensure failed:\n{r.stderr}", file=sys.stderr)
            return 1
        print(f"startup: cached voice {r.stdout.strip()}; {args.runs} runs each", flush=True)

        starts: dict[str, list[StartRun]] = {"qwen": [], "preset": []}
        baseline: list[float | None] = []
        for _ in range(args.runs):  # interleaved, so a load spike hits every contender alike
            for family, cfg in configs.items():
                run, err = start_once(cfg, work)
                if run.ready_s is None:
                    print(f"startup: no READY from the daemon ({family}); stderr:\n{err[-2000:]}",
                          file=sys.stderr)
                    return 1
                starts[family].append(run)
            baseline.append(baseline_once(emu.ws_url))
        # One more run under -X importtime: which heavy packages does the daemon load?
        _, err = start_once(configs["qwen"], work, importtime=True)
        runtime_mods = imported_modules(err)

    doc["start"] = {
        family: {
            "ready_s": {"median": med([r.ready_s for r in rs]), "max": mx([r.ready_s for r in rs])},
            "connected_s": {"median": med([r.connected_s for r in rs]), "max": mx([r.connected_s for r in rs])},
            "rss_mb": med([r.rss_mb for r in rs]),
            "hwm_mb": med([r.hwm_mb for r in rs]),
            "stop_s": {"median": med([r.stop_s for r in rs]), "max": mx([r.stop_s for r in rs])},
            "exit_codes": sorted({r.exit_code for r in rs if r.exit_code is not None}),
            "statuses_first_run": rs[0].statuses,
        }
        for family, rs in starts.items()
    }
    doc["vendor_sdk_connected_s"] = {"median": med(baseline), "max": mx(baseline)}
    cli_wall, cli_it, _ = importtime(["-m", "agent", "--help"])
    daemon_wall, daemon_it, _ = importtime(["-c", "import agent.daemon"])
    sdk_wall, sdk_it, _ = importtime(["-c", "import dashscope.audio.qwen_omni"])
    doc["imports"] = {
        "python_bare_s": round(wall_median(["-c", "pass"], args.runs), 3),
        "cli_help_s": round(wall_median(["-m", "agent", "--help"], args.runs), 3),
        "cli_help_importtime_ms": cli_it,
        "agent_daemon_importtime_ms": daemon_it,
        "dashscope_qwen_omni_importtime_ms": sdk_it,
        "daemon_runtime_imports": sorted(m for m in HEAVY if m in runtime_mods),
        "daemon_runtime_module_count": len(runtime_mods),
    }
    doc["installed_mb"] = {k: round(v, 2) for k, v in dependency_sizes().items()}
    doc["installed_mb_without_dashscope"] = round(sum(dependency_sizes(without="dashscope").values()), 1)
    print_report(doc)
    if args.json:
        write_json(args.json, doc)
        print(f"full report: {args.json}")
    return 0


def print_report(doc: dict[str, Any]) -> None:
    q, p = doc["start"]["qwen"], doc["start"]["preset"]
    base = doc["vendor_sdk_connected_s"]
    print()
    print(f"| start-up (median / max of {doc['runs']}) | qwen, cached voice | preset | vendor SDK | ratio |")
    print("|---|---:|---:|---:|---:|")
    print(f"| process start → READY=1 | {fmt(q['ready_s']['median'], ' s', 3)} / {fmt(q['ready_s']['max'], ' s', 3)} "
          f"| {fmt(p['ready_s']['median'], ' s', 3)} / {fmt(p['ready_s']['max'], ' s', 3)} | — | |")
    print(f"| process start → realtime session open | {fmt(q['connected_s']['median'], ' s', 3)} / "
          f"{fmt(q['connected_s']['max'], ' s', 3)} | {fmt(p['connected_s']['median'], ' s', 3)} / "
          f"{fmt(p['connected_s']['max'], ' s', 3)} | {fmt(base['median'], ' s', 3)} / {fmt(base['max'], ' s', 3)} "
          f"| {fmt(ratio(q['connected_s']['median'], base['median']), '×', 2)} |")
    print(f"| RSS 2 s after connecting (VmRSS / VmHWM) | {fmt(q['rss_mb'], ' MB')} / {fmt(q['hwm_mb'], ' MB')} "
          f"| {fmt(p['rss_mb'], ' MB')} / {fmt(p['hwm_mb'], ' MB')} | | |")
    print(f"| SIGTERM → exit (exit codes {q['exit_codes'] + p['exit_codes']}) | {fmt(q['stop_s']['median'], ' s', 3)} / "
          f"{fmt(q['stop_s']['max'], ' s', 3)} | {fmt(p['stop_s']['median'], ' s', 3)} / {fmt(p['stop_s']['max'], ' s', 3)} | | |")
    im = doc["imports"]
    print()
    print(f"bare interpreter: {im['python_bare_s']:.3f} s; `python -m agent --help`: {im['cli_help_s']:.3f} s")
    for label, key in (("-m agent --help", "cli_help_importtime_ms"), ("import agent.daemon", "agent_daemon_importtime_ms"),
                       ("import dashscope.audio.qwen_omni", "dashscope_qwen_omni_importtime_ms")):
        it = im[key]
        parts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(it.items(), key=lambda kv: -kv[1]) if k != "total")
        print(f"importtime {label}: total {it['total']:.0f} ms ({parts or 'no heavy packages'})")
    print(f"heavy packages the running daemon imports: {', '.join(im['daemon_runtime_imports'])} "
          f"({im['daemon_runtime_module_count']} modules in all)")
    sizes = doc["installed_mb"]
    print(f"installed dependency closure: {sum(sizes.values()):.1f} MB in {len(sizes)} distributions; largest: "
          + ", ".join(f"{k} {v:.1f}" for k, v in list(sizes.items())[:8]))
    print(f"the same closure without dashscope (which the daemon never imports): "
          f"{doc['installed_mb_without_dashscope']:.1f} MB")


if __name__ == "__main__":
    sys.exit(main())
