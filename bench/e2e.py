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
from typing import Any

import numpy as np
import pausedspeech
from benchkit import (
    OUT_RATE,
    PHRASES,
    RssSampler,
    Scenario,
    fmt,
    last_audible,
    machine,
    plan_scenario,
    ratio,
    read_json,
    read_jsonl,
    read_out_wav,
    rss_summary,
    summary,
    trace_playout,
    write_json,
    write_user_wav,
)

BENCH = Path(__file__).resolve().parent
AGENT_MODEL = "qwen3.5-omni-flash-realtime"  # the daemon's default model
BASELINE_MODEL = "qwen-omni-turbo-realtime-latest"  # the vendor sample's model
# --end-of-turn-local: a second daemon with listen.end_of_turn: local; the probe tells contenders
# apart by model, so it asks for the same model's dated snapshot name.
LOCAL_MODEL = "qwen3.5-omni-flash-realtime-2026-03-15"
WINDOW_START_S = 1.0  # CPU window opens 1 s into the timeline (both are connected by then)

TARGETS = {
    "added_p50_ms": 60.0,
    "added_p95_ms": 100.0,
    "cpu_pct_core": 3.0,
    "steady_rss_mb": 100.0,
}


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


def probe_view(work: Path, model: str) -> tuple[list[dict[str, Any]], list[float]]:
    """Responses (first-delta time + audio as sent) and speech_started times of one contender."""
    events = read_jsonl(work / "probe" / "events.jsonl")
    conns = {e["conn"] for e in events if e["kind"] == "open" and e.get("model") == model}
    mine = [e for e in events if e["conn"] in conns]
    responses = []
    for e in mine:
        if e["kind"] == "first_delta":
            pcm_path = work / "probe" / "audio" / f"{e['rid']}.pcm"
            pcm = np.fromfile(pcm_path, dtype="<i2") if pcm_path.exists() else np.zeros(0, np.int16)
            responses.append({"rid": e["rid"], "t_sent": e["t"], "pcm": pcm})
    speech = sorted(e["t"] for e in mine if e["kind"] == "speech_started")
    created = {e["rid"]: e["t"] for e in mine if e["kind"] == "response_created" and e.get("rid")}
    for r in responses:
        r["t_created"] = created.get(r["rid"], r["t_sent"])
    return sorted(responses, key=lambda r: r["t_sent"]), speech


def analyse_omni(work: Path, name: str, model: str, scenario: Scenario) -> dict[str, Any]:
    """Every omni figure of one contender, from the probe's records and its output WAV."""
    report = read_json(work / f"{name}.json")
    out = read_out_wav(work / f"{name}.wav")
    t0 = report["t0"]
    responses, speech = probe_view(work, model)

    def at(i: int) -> float:
        return t0 + i / OUT_RATE

    rows = []
    for r in responses:
        expect = int((r["t_sent"] - t0) * OUT_RATE)
        pl = trace_playout(out, r["pcm"], expect)
        row: dict[str, Any] = {"rid": r["rid"], "t_sent": r["t_sent"], "t_created": r["t_created"],
                               "sent_s": len(r["pcm"]) / OUT_RATE,
                               "found": pl.start is not None, "corr": round(pl.corr, 3)}
        if pl.start is not None:
            row.update(start=pl.start, t_out=at(pl.start),
                       added_ms=(at(pl.start) - r["t_sent"]) * 1000.0,
                       gaps=pl.gaps, gap_ms=pl.gap_ms, played_s=pl.played_s,
                       end_s=at(pl.start) + len(r["pcm"]) / OUT_RATE + pl.gap_ms / 1000)
        rows.append(row)
    located = [r for r in rows if r["found"]]

    # Barge-ins: a speech_started that arrives while a located answer should still be playing.
    barge = []
    for ts in speech:
        playing = [r for r in located if r["t_out"] < ts < r["end_s"] - 0.05]
        if not playing:
            continue
        r = playing[-1]
        later = [x["start"] for x in located if x["t_out"] > ts]
        hi = min(later) if later else int((ts - t0 + 3.0) * OUT_RATE)
        lo = int((ts - t0) * OUT_RATE)
        last = last_audible(out, lo, hi)
        flush_ms = ((at(last) if last is not None else ts) - ts) * 1000.0
        barge.append({"rid": r["rid"], "t_speech_started": ts, "flush_ms": max(0.0, flush_ms),
                      "heard_s": ts - r["t_out"]})

    # Voice-to-voice: end of each question in the input WAV → first output sample of the first
    # answer created after it (an answer created mid-question is a cut, not its answer).
    v2v = []
    created = [r["t_created"] for r in rows]
    cut = pausedspeech.cut_questions(created, scenario, t0)
    for p, was_cut in zip(scenario.phrases, cut, strict=True):
        t_end = t0 + p.end_s
        nxt = [r for r in located if r["t_created"] > t_end]
        if nxt and not was_cut:
            v2v.append((nxt[0]["t_out"] - t_end) * 1000.0)

    start, end = report["window"]
    result: dict[str, Any] = {
        "responses_sent": len(rows),
        "responses_located": len(located),
        "added_ms": summary(r["added_ms"] for r in located),
        "gaps": sum(r["gaps"] for r in located),
        "gap_ms": round(sum(r["gap_ms"] for r in located), 1),
        "barge_ins": len(barge),
        "flush_ms": summary(b["flush_ms"] for b in barge),
        "voice_to_voice_ms": summary(v2v),
        "questions_cut": sum(cut),
        "questions": len(cut),
        "cpu": report["cpu"],
        "maxrss_mb": report["maxrss_mb"],
        "window": [start, end],
        "rows": [{k: v for k, v in r.items() if k != "start"} for r in rows],
        "barge": barge,
    }
    if name == "voice-agent":
        sent = {r["rid"]: r["t_sent"] for r in responses}
        internal = [x for x in report["responses"] if x["rid"] in sent and x["first_arrival"]]
        result["receive_ms"] = summary((x["first_arrival"] - sent[x["rid"]]) * 1000 for x in internal)
        result["player_added_ms"] = summary(x["added_latency_ms"] for x in internal)
        result["status_audio"] = report["status"]["audio"]
        result["status_latency"] = report["status"]["latency_ms"]
        result["daemon_barge_ins"] = report["status"]["barge_ins"]
    else:
        result["events"] = report.get("events")
        result["host_underflow_blocks"] = report.get("host_underflow_blocks")
    return result


def pipeline_view(work: Path, vendor: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """LLM requests (first content chunk) and CosyVoice tasks (first audio + audio) of one side.

    The two sides are told apart by the User-Agent of each request: the SDK's says `dashscope`.
    """
    events = read_jsonl(work / "probe" / "events.jsonl")
    opens = {e["conn"]: e for e in events if e["kind"] == "open"}
    mine = {c for c, e in opens.items() if ("dashscope" in e.get("ua", "").lower()) == vendor}
    llm = [{"t_open": opens[e["conn"]]["t"], "t_first_token": e["t"]}
           for e in events if e["kind"] == "llm_first_token" and e["conn"] in mine]
    tasks = []
    for e in events:
        if e["kind"] == "tts_first_audio" and e["conn"] in mine:
            pcm_path = work / "probe" / "audio" / f"{e['task']}.pcm"
            pcm = np.fromfile(pcm_path, dtype="<i2") if pcm_path.exists() else np.zeros(0, np.int16)
            tasks.append({"task": e["task"], "t_sent": e["t"], "pcm": pcm})
    return sorted(llm, key=lambda x: x["t_first_token"]), sorted(tasks, key=lambda x: x["t_sent"])


def analyse_pipeline(work: Path, name: str) -> dict[str, Any]:
    """LLM first token → first answer sample at the output, and its two halves."""
    report = read_json(work / f"{name}.json")
    out = read_out_wav(work / f"{name}.wav")
    t0 = report["t0"]
    llm, tasks = pipeline_view(work, vendor=name == "vendor-sdk")
    rows = []
    pending = list(tasks)
    for req in llm:
        # This answer's synthesis task: the first one whose audio left after the first token.
        while pending and pending[0]["t_sent"] < req["t_first_token"]:
            pending.pop(0)
        if not pending:
            break
        task = pending.pop(0)
        pl = trace_playout(out, task["pcm"], int((task["t_sent"] - t0) * OUT_RATE))
        row: dict[str, Any] = {"task": task["task"], "t_first_token": req["t_first_token"],
                               "t_tts_audio": task["t_sent"], "found": pl.start is not None,
                               "sent_s": len(task["pcm"]) / OUT_RATE}
        if pl.start is not None:
            t_out = t0 + pl.start / OUT_RATE
            row.update(token_to_out_ms=(t_out - req["t_first_token"]) * 1000.0,
                       token_to_tts_ms=(task["t_sent"] - req["t_first_token"]) * 1000.0,
                       added_ms=(t_out - task["t_sent"]) * 1000.0,
                       gaps=pl.gaps, gap_ms=pl.gap_ms, played_s=pl.played_s)
        rows.append(row)
    located = [r for r in rows if r["found"]]
    result: dict[str, Any] = {
        "llm_requests": len(llm),
        "responses_sent": len(rows),
        "responses_located": len(located),
        "token_to_out_ms": summary(r["token_to_out_ms"] for r in located),
        "token_to_tts_ms": summary(r["token_to_tts_ms"] for r in located),
        "added_ms": summary(r["added_ms"] for r in located),
        "gaps": sum(r["gaps"] for r in located),
        "gap_ms": round(sum(r["gap_ms"] for r in located), 1),
        "cpu": report["cpu"],
        "maxrss_mb": report["maxrss_mb"],
        "window": report["window"],
        "rows": rows,
    }
    if name == "voice-agent":
        result["status_audio"] = report["status"]["audio"]
    else:
        result["events"] = report.get("events")
    return result


# --- report -------------------------------------------------------------------------------


def emulation_cpu_s(floor: dict[str, Any], mode: str) -> dict[str, float]:
    """CPU seconds of the emulated devices that each contender pays inside its own process.

    Both contenders run the same pacing thread (WAV in, WAV out, 10 ms ticks): the floor's
    `audio-pacer` time. In omni mode the vendor client also reads the microphone through an
    emulated *blocking* stream, whose wake-ups on every 10 ms capture are the floor's
    `MainThread` time; the daemon's microphone is its own code (Microphone.capture), so nothing
    is taken off it. In pipeline mode nobody reads the microphone.
    """
    th = floor["cpu"]["threads_s"]
    pacer = th.get("audio-pacer", 0.0)
    mic = th.get("MainThread", 0.0) if mode == "omni" else 0.0
    return {"voice-agent": pacer, "vendor-sdk": pacer + mic}


def net_pct(res: dict[str, Any], emulation_s: float) -> float | None:
    cpu = res["cpu"]
    if not cpu["wall_s"]:
        return None
    return round((cpu["cpu_s"] - emulation_s) / cpu["wall_s"] * 100.0, 2)


def table(res: dict[str, Any], emu: dict[str, float], rss: dict[str, dict[str, Any]]) -> str:
    a, b = res["voice-agent"], res["vendor-sdk"]
    lines = ["| metric | voice-agent | vendor SDK | ratio |", "|---|---:|---:|---:|"]

    def row(label: str, x: float | None, y: float | None, unit: str = "", digits: int = 1) -> None:
        lines.append(f"| {label} | {fmt(x, unit, digits)} | {fmt(y, unit, digits)} | {fmt(ratio(x, y), '×', 2)} |")

    row("added latency p50 (first delta sent → first sample out)", a["added_ms"]["p50"], b["added_ms"]["p50"], " ms")
    row("added latency p95", a["added_ms"]["p95"], b["added_ms"]["p95"], " ms")
    row("added latency max", a["added_ms"]["max"], b["added_ms"]["max"], " ms")
    lines.append(f"| responses located in the output / sent | {a['responses_located']}/{a['responses_sent']} "
                 f"| {b['responses_located']}/{b['responses_sent']} | |")
    lines.append(f"| gaps (count, total ms) | {a['gaps']}, {a['gap_ms']} ms | {b['gaps']}, {b['gap_ms']} ms | |")
    row(f"barge-in → silent p50 (n = {a['barge_ins']} / {b['barge_ins']})", a["flush_ms"]["p50"], b["flush_ms"]["p50"], " ms")
    row("barge-in → silent p95", a["flush_ms"]["p95"], b["flush_ms"]["p95"], " ms")
    row("barge-in → silent max", a["flush_ms"]["max"], b["flush_ms"]["max"], " ms")
    row("voice-to-voice p50 (end of question → first answer sample)", a["voice_to_voice_ms"]["p50"],
        b["voice_to_voice_ms"]["p50"], " ms", 0)
    row("CPU s per minute of streaming (whole process)", a["cpu"]["cpu_s_per_min"], b["cpu"]["cpu_s_per_min"], " s", 2)
    row("CPU, % of one core (whole process)", a["cpu"]["cpu_pct_core"], b["cpu"]["cpu_pct_core"], " %", 2)
    row("CPU, % of one core, without the emulated devices", net_pct(a, emu["voice-agent"]),
        net_pct(b, emu["vendor-sdk"]), " %", 2)
    row("RSS steady (median of the 2nd half)", rss["voice-agent"]["steady_mb"], rss["vendor-sdk"]["steady_mb"], " MB")
    row("RSS peak (ru_maxrss)", a["maxrss_mb"], b["maxrss_mb"], " MB")
    lines.append(f"| RSS growth after warm-up (¼ window → end) | {fmt(rss['voice-agent']['growth_mb'], ' MB', 2)} "
                 f"| {fmt(rss['vendor-sdk']['growth_mb'], ' MB', 2)} | |")
    return "\n".join(lines)


def pipeline_table(res: dict[str, Any], emu: dict[str, float], rss: dict[str, dict[str, Any]]) -> str:
    a, b = res["voice-agent"], res["vendor-sdk"]
    lines = ["| metric | voice-agent | vendor SDK | ratio |", "|---|---:|---:|---:|"]

    def row(label: str, x: float | None, y: float | None, unit: str = "", digits: int = 1) -> None:
        lines.append(f"| {label} | {fmt(x, unit, digits)} | {fmt(y, unit, digits)} | {fmt(ratio(x, y), '×', 2)} |")

    for key, label in (("token_to_out_ms", "LLM first token sent → first answer sample out"),
                       ("token_to_tts_ms", "… of which first token → first synthesized audio sent"),
                       ("added_ms", "… of which first synthesized audio sent → first sample out")):
        row(f"{label} p50", a[key]["p50"], b[key]["p50"], " ms")
        row(f"{label} p95", a[key]["p95"], b[key]["p95"], " ms")
    lines.append(f"| answers located in the output / LLM requests | {a['responses_located']}/{a['llm_requests']} "
                 f"| {b['responses_located']}/{b['llm_requests']} | |")
    lines.append(f"| gaps (count, total ms) | {a['gaps']}, {a['gap_ms']} ms | {b['gaps']}, {b['gap_ms']} ms | |")
    row("CPU s per minute (whole process)", a["cpu"]["cpu_s_per_min"], b["cpu"]["cpu_s_per_min"], " s", 2)
    row("CPU, % of one core, without the emulated devices", net_pct(a, emu["voice-agent"]),
        net_pct(b, emu["vendor-sdk"]), " %", 2)
    row("RSS steady (median of the 2nd half)", rss["voice-agent"]["steady_mb"], rss["vendor-sdk"]["steady_mb"], " MB")
    row("RSS peak (ru_maxrss)", a["maxrss_mb"], b["maxrss_mb"], " MB")
    return "\n".join(lines)


def verdict(a: dict[str, Any], emu_s: float, rss: dict[str, Any]) -> list[str]:
    checks = [
        ("added latency p50 ≤ 60 ms", a["added_ms"]["p50"], TARGETS["added_p50_ms"]),
        ("added latency p95 ≤ 100 ms", a["added_ms"]["p95"], TARGETS["added_p95_ms"]),
        ("CPU ≤ 3 % of one core (whole process, emulated devices included)", a["cpu"]["cpu_pct_core"],
         TARGETS["cpu_pct_core"]),
        ("CPU ≤ 3 % of one core (without the emulated devices)", net_pct(a, emu_s), TARGETS["cpu_pct_core"]),
        ("steady RSS ≤ 100 MB", rss["steady_mb"], TARGETS["steady_rss_mb"]),
    ]
    out = []
    for label, value, limit in checks:
        ok = value is not None and value <= limit
        out.append(f"- {'PASS' if ok else 'MISS'} {label}: {fmt(value)}")
    return out


def report(work: Path) -> dict[str, Any]:
    """Analyse a finished run's files (also usable later: `--analyse WORKDIR`)."""
    meta = read_json(work / "run.json")
    scenario = Scenario.from_json(meta["scenario"])
    if meta.get("mode") == "pipeline":
        results = {name: analyse_pipeline(work, name) for name in ("voice-agent", "vendor-sdk")}
    else:
        results = {
            "voice-agent": analyse_omni(work, "voice-agent", AGENT_MODEL, scenario),
            "vendor-sdk": analyse_omni(work, "vendor-sdk", BASELINE_MODEL, scenario),
        }
        if (work / "voice-agent-local.json").exists():
            results["voice-agent-local"] = analyse_omni(work, "voice-agent-local", LOCAL_MODEL, scenario)
    floor = read_json(work / "device-only.json")
    samples = read_json(work / "rss.json")
    rss = {name: rss_summary(samples.get(name, []), *results[name]["window"]) for name in results}
    rss["device-only"] = rss_summary(samples.get("device-only", []), *floor["window"])
    rss["emulator"] = rss_summary(samples.get("emulator", []), *results["voice-agent"]["window"])
    emu = emulation_cpu_s(floor, meta.get("mode", "omni"))
    for name in results:
        results[name]["cpu_pct_core_without_emulation"] = net_pct(results[name], emu.get(name, emu["voice-agent"]))
    return {**meta, "results": results, "device_only": {"cpu": floor["cpu"]}, "emulation_cpu_s": emu,
            "rss": rss}


def end_of_turn_table(results: dict[str, Any]) -> str:
    """listen.end_of_turn server vs local, same scenario, same run (issue 18 item 2)."""
    lines = ["| voice-agent, end of turn | voice-to-voice p50 | p95 | questions cut mid-sentence "
             "| answers located | barge-ins |", "|---|---|---|---|---|---|"]
    for label, name in (("server VAD (800 ms)", "voice-agent"), ("local (WebRTC VAD + smart-turn)",
                                                                  "voice-agent-local")):
        r = results[name]
        v = r["voice_to_voice_ms"]
        lines.append(f"| {label} | {fmt(v['p50'], ' ms')} | {fmt(v['p95'], ' ms')} | "
                     f"{r['questions_cut']}/{r['questions']} | "
                     f"{r['responses_located']}/{r['responses_sent']} | {r['barge_ins']} |")
    return "\n".join(lines)


def print_report(doc: dict[str, Any]) -> None:
    results, rss, emu = doc["results"], doc["rss"], doc["emulation_cpu_s"]
    a, b = results["voice-agent"], results["vendor-sdk"]
    print()
    if doc.get("mode") == "pipeline":
        print(pipeline_table(results, emu, rss))
        print()
        print(f"voice-agent CPU by thread (s): {a['cpu']['threads_s']}")
        print(f"vendor SDK CPU by thread (s): {b['cpu']['threads_s']}")
        return
    print(table(results, emu, rss))
    print()
    if "voice-agent-local" in results:
        print(end_of_turn_table(results))
        print()
    print(f"emulated devices alone (both pay them): {fmt(doc['device_only']['cpu']['cpu_pct_core'], ' %', 2)} "
          f"of one core, by thread {doc['device_only']['cpu']['threads_s']}")
    print(f"voice-agent internals: receive+parse p50 {fmt(a['receive_ms']['p50'], ' ms')} "
          f"p95 {fmt(a['receive_ms']['p95'], ' ms')}; player added latency p50 "
          f"{fmt(a['player_added_ms']['p50'], ' ms')} p95 {fmt(a['player_added_ms']['p95'], ' ms')}; "
          f"underruns {a['status_audio'].get('underruns')}, host underflows "
          f"{a['status_audio'].get('host_underflows')}; daemon-counted barge-ins {a['daemon_barge_ins']}")
    print(f"voice-agent CPU by thread (s): {a['cpu']['threads_s']}")
    print(f"vendor SDK CPU by thread (s): {b['cpu']['threads_s']}")
    print("targets (voice-agent):")
    print("\n".join(verdict(a, emu["voice-agent"], rss["voice-agent"])))


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
