"""bench/e2e.py's analysis: a finished run's files → the report, its tables and the verdict.

Reads what the probe and the contenders left in the work directory (no processes here), so a
run kept with `--workdir` can be analysed again (`e2e.py --analyse WORKDIR`). Split from
bench/e2e.py, which runs the processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pausedspeech
from benchkit import (
    OUT_RATE,
    Scenario,
    fmt,
    last_audible,
    ratio,
    read_json,
    read_jsonl,
    read_out_wav,
    rss_summary,
    summary,
    trace_playout,
)

AGENT_MODEL = "qwen3.5-omni-flash-realtime"  # the daemon's default model
BASELINE_MODEL = "qwen-omni-turbo-realtime-latest"  # the vendor sample's model
# --end-of-turn-local: a second daemon with listen.end_of_turn: local; the probe tells contenders
# apart by model, so it asks for the same model's dated snapshot name.
LOCAL_MODEL = "qwen3.5-omni-flash-realtime-2026-03-15"

TARGETS = {
    "added_p50_ms": 60.0,
    "added_p95_ms": 100.0,
    "cpu_pct_core": 3.0,
    "steady_rss_mb": 100.0,
}


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
