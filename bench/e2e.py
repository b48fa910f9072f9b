"""End-to-end benchmark: voice-agent vs the vendor SDK client, side by side, in one run.

    python bench/e2e.py                      # omni, ~1.5 minutes: 8 turns, 3 barge-ins
    python bench/e2e.py --turns 40           # longer run, tighter percentiles
    python bench/e2e.py --turns 101 --barge-every 1   # soak: 100 barge-ins in ~8 minutes
    python bench/e2e.py --faults jitter=60ms@realtime # a jittery network
    python bench/e2e.py --mode pipeline      # LLM → CosyVoice → speaker, ~1.5 minutes
    python bench/e2e.py --json out.json      # also write the full report
    python bench/e2e.py --analyse WORKDIR    # re-analyse a run kept with --workdir

One scenario — the emulator on loopback with fixed model delays, a scripted user in a WAV
(questions, some spoken over the previous answer), file audio on both sides — is run against
both contenders at the same time, each in its own process, with the emulator in a third:

  probe.py          the emulator, stamping every audio delta as it leaves the server
  agent_contender   (a) the real Daemon, omni mode, file backends, default jitter target
  baseline_sdk      (b) dashscope's OmniRealtimeConversation + the vendor sample's player
  baseline_sdk --device-only   the emulated devices alone (the CPU floor both pay)

Both contenders are measured the same way, from the outside: every response's audio, as the
probe recorded it leaving the server, is located in the contender's output WAV (whose sample i
is heard at t0 + i/24000), so

  added latency   = first answer sample at the output − first delta leaving the server
  gaps            = growth of the playout lag along the response (100 ms segments)
  barge-in        = last audible sample of the interrupted answer − `speech_started` leaving
                    the server (flush to silence, including the client's reaction)
  voice-to-voice  = first answer sample at the output − end of the question in the input WAV

CPU (getrusage inside each contender over the same timeline window) and RSS (sampled from
/proc by this process) complete the table. Running side by side on a shared 2-core machine,
both contenders see the same load; the report gives ratios (voice-agent / vendor SDK) and
percentiles, not single timings.

`--mode pipeline` runs the same machinery for pipeline mode: questions arrive as text (`ask`
for the daemon; the vendor's LLM → `SpeechSynthesizer.streaming_call` sample for the baseline)
and the figure is LLM first token leaving the server → first answer sample at the output,
split at the first synthesized audio leaving the server.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pausedspeech
from benchkit import (
    PHRASES,
    RssSampler,
    Scenario,
    machine,
    plan_scenario,
    write_json,
    write_user_wav,
)
from e2e_report import AGENT_MODEL, BASELINE_MODEL, LOCAL_MODEL, print_report, report

BENCH = Path(__file__).resolve().parent
WINDOW_START_S = 1.0  # CPU window opens 1 s into the timeline (both are connected by then)

@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    report: Path
    log: Path


def start_probe(work: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, str(BENCH / "probe.py"), "--out", str(work / "probe"),
           "--first-delta-s", str(args.first_delta_s), "--chunk-ms", str(args.chunk_ms),
           "--speed", str(args.speed)]
    if args.faults:
        cmd += ["--faults", args.faults]
    log = open(work / "emulator.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError(f"the emulator did not start; see {work / 'emulator.log'}")
    return proc, url


def contender_cmds(work: Path, url: str, scenario: Scenario, args: argparse.Namespace) -> dict[str, list[str]]:
    window = ["--window", str(WINDOW_START_S), str(scenario.total_s)]
    user = ["--user", str(work / "user.wav")]
    mode = ["--mode", args.mode, *(["--scenario", str(work / "scenario.json")] if args.mode == "pipeline" else [])]
    py = sys.executable
    local = {} if not getattr(args, "end_of_turn_local", False) else {
        "voice-agent-local": [py, str(BENCH / "agent_contender.py"), "--url", url, *user, *mode,
                              "--out", str(work / "voice-agent-local.wav"),
                              "--report", str(work / "voice-agent-local.json"), "--model", LOCAL_MODEL,
                              "--target-ms", str(args.target_ms), "--end-of-turn", "local", *window],
    }
    return {**local,
        "voice-agent": [py, str(BENCH / "agent_contender.py"), "--url", url, *user, *mode,
                        "--out", str(work / "voice-agent.wav"), "--report", str(work / "voice-agent.json"),
                        "--model", AGENT_MODEL, "--target-ms", str(args.target_ms), *window],
        "vendor-sdk": [py, str(BENCH / "baseline_sdk.py"), "--url", url, *user, *mode,
                       "--out", str(work / "vendor-sdk.wav"), "--report", str(work / "vendor-sdk.json"),
                       "--model", BASELINE_MODEL, "--host-buffer-frames", str(args.host_buffer_frames),
                       *window],
        "device-only": [py, str(BENCH / "baseline_sdk.py"), "--device-only", *user,
                        "--out", str(work / "device-only.wav"), "--report", str(work / "device-only.json"),
                        *window],
    }


def run_contenders(work: Path, cmds: dict[str, list[str]], sampler: RssSampler, timeout: float,
                   serial: bool) -> dict[str, Child]:
    children: dict[str, Child] = {}
    groups = [[n] for n in cmds] if serial else [list(cmds)]
    for group in groups:
        started = []
        for name in group:
            log = work / f"{name}.log"
            with open(log, "w") as err:
                proc = subprocess.Popen(cmds[name], stdout=subprocess.DEVNULL, stderr=err,
                                        cwd=str(work))
            child = Child(name, proc, work / f"{name}.json", log)
            sampler.watch(name, proc.pid)
            children[name] = child
            started.append(child)
        deadline = time.monotonic() + timeout
        for child in started:
            try:
                child.proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
    return children


# --- analysis -----------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> int:
    """Run the emulator and the three contender processes; leave everything in `work`."""
    pipeline = args.mode == "pipeline"
    pauses: list[int] = []
    if args.paused:  # each question with a mid-sentence pause of 300-900 ms, no barge-ins
        scenario, audio, pauses = pausedspeech.plan(args.turns)
        pausedspeech.write_wav(work / "user.wav", scenario, audio)
    else:
        scenario = plan_scenario(args.turns, barge_every=0 if pipeline else args.barge_every,
                                 texts=args.phrases or PHRASES)
        write_user_wav(work / "user.wav", scenario, silent=pipeline)  # pipeline: questions are `ask`s
    write_json(work / "scenario.json", scenario.to_json())
    n_barge = sum(p.barge_in for p in scenario.phrases)
    print(f"e2e ({args.mode}): {args.turns} turns ({n_barge} barge-ins), {scenario.total_s:.0f} s of conversation, "
          f"contenders {'one after another' if args.serial else 'side by side'}; work dir {work}",
          flush=True)
    probe, url = start_probe(work, args)
    sampler = RssSampler()
    sampler.watch("emulator", probe.pid)
    sampler.start()
    cmds = contender_cmds(work, url, scenario, args)
    try:
        children = run_contenders(work, cmds, sampler, scenario.total_s + 60.0, args.serial)
    finally:
        sampler.stop()
        probe.send_signal(signal.SIGTERM)
        try:
            probe.wait(10)
        except subprocess.TimeoutExpired:
            probe.kill()
    write_json(work / "rss.json", sampler.samples)
    write_json(work / "run.json", {
        "machine": machine(),
        "command": " ".join(["python bench/e2e.py", *args.argv]),
        "mode": args.mode,
        "scenario": scenario.to_json(),
        "emulator": {"first_delta_s": args.first_delta_s, "chunk_ms": args.chunk_ms, "speed": args.speed,
                     "faults": args.faults},
        "voice_agent": {"jitter_target_ms": args.target_ms},
        "vendor_sdk": {"host_buffer_frames": args.host_buffer_frames, "mic_read_frames": 3200},
        "serial": args.serial,
        "mid_sentence_pauses_ms": pauses,
    })
    failed = [c for c in children.values() if c.proc.returncode != 0 or not c.report.exists()]
    for c in failed:
        print(f"e2e: {c.name} failed (exit {c.proc.returncode}); last lines of {c.log}:", file=sys.stderr)
        print("\n".join(c.log.read_text().splitlines()[-15:]), file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["omni", "pipeline"], default="omni",
                    help="omni: speech in/out over the realtime API; pipeline: LLM → CosyVoice")
    ap.add_argument("--turns", type=int, default=8, help="questions the user asks (default 8)")
    ap.add_argument("--barge-every", type=int, default=2, help="every N-th answer is interrupted (0: none)")
    ap.add_argument("--phrases", nargs="+", default=None, metavar="TEXT",
                    help="what the user says, cycled (each must be in the emulator's phrasebook)")
    ap.add_argument("--first-delta-s", type=float, default=0.2, help="emulator: first delta delay")
    ap.add_argument("--chunk-ms", type=int, default=100, help="emulator: audio per delta")
    ap.add_argument("--speed", type=float, default=4.0, help="emulator: delta pacing × real time")
    ap.add_argument("--faults", default=None, help="emulator fault spec, e.g. 'jitter=50ms@realtime'")
    ap.add_argument("--target-ms", type=int, default=80, help="voice-agent jitter target")
    ap.add_argument("--host-buffer-frames", type=int, default=2048, help="baseline host buffer")
    ap.add_argument("--serial", action="store_true", help="run the contenders one after another")
    ap.add_argument("--end-of-turn-local", action="store_true",
                    help="omni: also run a daemon with listen.end_of_turn: local, voice-to-voice side by side")
    ap.add_argument("--paused", action="store_true",
                    help="omni: every question with a mid-sentence pause of 300-900 ms (bench/pausedspeech.py)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep all files here")
    ap.add_argument("--analyse", type=Path, default=None, metavar="WORKDIR",
                    help="only analyse the files a previous run left in WORKDIR")
    ap.add_argument("--json", type=Path, default=None, help="write the full report here")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.paused and args.mode != "omni":
        ap.error("--paused is for omni mode (pipeline questions are typed)")

    with contextlib.ExitStack() as stack:
        if args.analyse is not None:
            work = args.analyse.resolve()
        else:
            if args.workdir is None:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-e2e-")))
            else:
                work = args.workdir.resolve()
                work.mkdir(parents=True, exist_ok=True)
            if run(args, work) != 0:
                return 1
        doc = report(work)
    print_report(doc)
    if args.json:
        write_json(args.json, doc)
        print(f"full report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
