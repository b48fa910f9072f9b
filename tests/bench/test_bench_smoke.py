"""The benchmarks still run: each one in a tiny configuration, checked for shape and sanity.

Not timing assertions (SPEC §9: targets are measured by the benchmarks, not by timed tests) —
only that every figure the report promises is there and physically plausible, so a refactor of
the daemon or the emulator cannot silently break `bench/`.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def bench_module(name: str) -> ModuleType:
    """bench/ holds scripts, not a package: load one of its modules from its file (once)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, and the scripts' own imports, look it up there
    spec.loader.exec_module(module)
    return module


benchkit = bench_module("benchkit")


def _run(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{script} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_the_playout_tracer_finds_the_start_a_gap_and_the_cut() -> None:
    from agent.emulator.speech import synthesize

    sent = synthesize("Thank you very much. I am glad I could help.", benchkit.OUT_RATE)
    rate = benchkit.OUT_RATE
    start, gap, cut = rate // 2, rate // 20, len(sent) * 2 // 3  # 0.5 s in, a 50 ms gap, cut
    out = np.zeros(start + len(sent) + 2 * rate, np.int16)
    split = rate  # the gap happens 1 s into the answer
    out[start : start + split] = sent[:split]
    out[start + split + gap : start + gap + cut] = sent[split:cut]
    pl = benchkit.trace_playout(out, sent, expect=start - rate // 20)
    assert pl.start == start
    assert pl.gaps == 1 and pl.gap_ms == pytest.approx(50.0, abs=0.5)
    assert pl.played_s == pytest.approx(cut / rate, abs=0.15)
    last = benchkit.last_audible(out, 0, len(out))
    assert last is not None and start + gap + cut - rate // 10 < last < start + gap + cut


def test_e2e_smoke(tmp_path: Path) -> None:
    report = tmp_path / "e2e.json"
    r = _run("e2e.py", "--turns", "2", "--barge-every", "1", "--phrases", "Goodbye.",
             "Thank you very much.", "--json", str(report), timeout=180)
    assert "| added latency p50" in r.stdout
    doc = json.loads(report.read_text())
    assert doc["machine"]["cores"] >= 1
    for name in ("voice-agent", "vendor-sdk"):
        res = doc["results"][name]
        assert res["responses_sent"] >= 2, name
        assert res["responses_located"] == res["responses_sent"], name
        added = res["added_ms"]
        assert added["n"] == res["responses_located"]
        # The file "sound card" stamps samples with their scheduled time; if its thread runs
        # late on a loaded machine, audio that arrived meanwhile looks a few ms early.
        assert -50.0 < added["p50"] <= added["p95"] <= added["max"] < 2000.0, name
        assert res["barge_ins"] >= 1, f"{name}: the barge-in was not seen at the output"
        assert 0.0 <= res["flush_ms"]["p50"] < 2000.0
        assert 0.0 < res["voice_to_voice_ms"]["p50"] < 10000.0
        cpu = res["cpu"]
        assert cpu["wall_s"] > 5.0 and 0.0 < cpu["cpu_s"] < cpu["wall_s"] * 2
        assert cpu["threads_s"], "per-thread CPU is reported"
        assert 10.0 < doc["rss"][name]["steady_mb"] < 2000.0
        assert res["maxrss_mb"] >= doc["rss"][name]["steady_mb"] * 0.9
    agent = doc["results"]["voice-agent"]
    assert agent["receive_ms"]["n"] >= 2 and agent["player_added_ms"]["n"] >= 2
    assert agent["status_audio"]["underruns"] >= 0
    assert doc["device_only"]["cpu"]["cpu_s"] > 0.0


def test_e2e_pipeline_smoke(tmp_path: Path) -> None:
    report = tmp_path / "pipeline.json"
    r = _run("e2e.py", "--mode", "pipeline", "--turns", "1", "--phrases", "Goodbye.",
             "--json", str(report), timeout=180)
    assert "LLM first token sent → first answer sample out p50" in r.stdout
    doc = json.loads(report.read_text())
    for name in ("voice-agent", "vendor-sdk"):
        res = doc["results"][name]
        assert res["llm_requests"] == 1 and res["responses_located"] == 1, name
        total, tts, added = res["token_to_out_ms"], res["token_to_tts_ms"], res["added_ms"]
        assert 0.0 < tts["p50"] < total["p50"] + 50.0 < 5050.0, name
        assert -50.0 < added["p50"] < 2000.0, name  # see test_e2e_smoke
        assert res["cpu"]["cpu_s"] > 0.0 and doc["rss"][name]["steady_mb"] > 10.0


def test_startup_smoke(tmp_path: Path) -> None:
    report = tmp_path / "startup.json"
    r = _run("startup.py", "--runs", "1", "--json", str(report), timeout=180)
    assert "process start → READY=1" in r.stdout
    doc = json.loads(report.read_text())
    for family in ("qwen", "preset"):
        st = doc["start"][family]
        assert 0.0 < st["ready_s"]["median"] < 30.0
        assert st["connected_s"]["median"] >= st["ready_s"]["median"]
        assert st["exit_codes"] == [0], "SIGTERM ends the daemon with exit 0"
        assert 10.0 < st["rss_mb"] < 2000.0
    assert doc["vendor_sdk_connected_s"]["median"] is not None
    imports = doc["imports"]
    assert imports["agent_daemon_importtime_ms"]["total"] > 0.0
    assert isinstance(imports["daemon_runtime_imports"], list)
    assert "numpy" in doc["installed_mb"] and doc["installed_mb_without_dashscope"] > 0.0


def test_playout_bench_reports_the_online_bound_where_zero_gaps_is_out_of_reach() -> None:
    """bench/playout.py on small traces: the online bound (d) is gap-free, never starts before
    the oracle, and the report says why the oracle target is out of reach for those traces."""
    traces = bench_module("traces")  # before playout, which imports both by name
    bench_module("playout_players")
    playout = bench_module("playout")

    small = [traces.steady(n=3), traces.bursty(n=4), traces.slow(n=3)]
    res = playout.bench(small)
    assert playout.OnlineBound.name not in res["steady"]["players"]  # nothing unknowable there
    for name in ("bursty", "slow"):
        players = res[name]["players"]
        bound, oracle = players[playout.OnlineBound.name], players[playout.Oracle.name]
        assert bound["gaps"] == 0 and bound["incorrect"] == 0
        assert bound["start_p50"] >= oracle["start_p50"] - 1e-6
        assert res[name]["online_limit"]
    report = playout.markdown(res)
    assert "(d) online bound" in report and "online limit:" in report
    # (d′) also covers the stall's unknown place: never earlier than (d), still gap-free.
    place = res["bursty"]["players"][playout.OnlineBoundAny.name]
    assert place["gaps"] == 0
    assert place["start_p50"] >= res["bursty"]["players"][playout.OnlineBound.name]["start_p50"] - 1e-6
    pooled = playout.sweep([res, res])
    assert pooled["bursty"]["seeds"] == 2 and pooled["steady"]["players"][playout.OnlineBound.name]
    assert "(b)−(d′) p50" in playout.markdown_sweep(pooled)


def test_turn_bench_smoke(tmp_path: Path) -> None:
    """bench/turn.py on 2 sentences: every rule reports cut-offs and latencies on the labels."""
    for module in ("onnxruntime", "webrtcvad", "pipecat"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the [turn] extra is not installed ({module})")
    report = tmp_path / "turn.json"
    r = _run("turn.py", "--sentences", "2", "--sets", "hesitation", "--vad", "webrtc", "--tune",
             "--json", str(report), timeout=300)
    assert "P>=0.5 pause +200 ms" in r.stdout  # the model discrimination table
    doc = json.loads(report.read_text())
    rows = {row["rule"]: row for row in doc["hesitation"]["rows"]}
    server = rows["server VAD 800 ms (emulator's energy VAD)"]
    neural = sum(v.startswith("hibari/") for v in doc["hesitation"]["voices"])  # when hibari-tts is installed
    assert server["utterances"] == 2 * (4 + neural) + 2 * (3 + neural) and server["paused"] == 2 * (4 + neural)
    assert 780 <= server["latency_p50_ms"] <= 900  # 800 ms of silence, decided at frame ends
    for name, row in rows.items():
        assert 0 <= row["premature_paused"] <= row["premature"] <= row["utterances"], name
        assert row["missed"] == 0, name
    model_rows = [row for name, row in rows.items() if "model" in name]
    assert model_rows and all(row["inferences_per_utt"] >= 1 for row in model_rows)
    assert all(0 < ms < 2000 for ms in doc["inference_ms"])
    # --tune: the reference and silence rows and the tune-half front, each scored on the test half
    tuned = {row["rule"]: row for row in doc["tune"]["rows"]}
    assert "server VAD 800 ms (emulator)" in tuned and "webrtc VAD 1000 ms" in tuned
    assert any(row["why"].startswith("tune front") for row in tuned.values())
    for row in tuned.values():
        test = row["hesitation/all voices"]
        assert 0 <= test["cut"] <= test["paused"] and test["missed"] == 0, row["rule"]


def test_paused_questions_hesitate_inside_the_clause_and_cuts_are_read_from_response_times() -> None:
    """bench/e2e.py --paused: the question's audio grows by exactly the pause, inserted at a
    quiet point between its hesitation word and the rest; a response created between the first
    and the last word is a cut, one created after the last word is the answer."""
    for name in ("speechsynth", "turnset"):
        bench_module(name)
    ps = bench_module("pausedspeech")
    from agent.emulator.speech import synthesize

    text = "What can you do?"
    whole = synthesize(text, 16000)
    pcm, at = ps.paused_question(text, 600)
    assert pcm.size == whole.size + 600 * 16
    assert 0.4 * whole.size < at < 0.95 * whole.size  # after "What can you", before the end
    assert not pcm[at : at + 600 * 16].any()
    scenario, audio, pauses = ps.plan(3)
    assert len(audio) == 3 and all(300 <= p <= 900 for p in pauses)
    for p, a in zip(scenario.phrases, audio, strict=True):
        assert abs(p.end_s - p.at_s - a.size / 16000) < 0.002 and not p.barge_in
    first = scenario.phrases[0]
    t0 = 100.0
    assert ps.cut_questions([t0 + (first.at_s + first.end_s) / 2], scenario, t0) == [True, False, False]
    assert ps.cut_questions([t0 + first.end_s + 0.3], scenario, t0) == [False, False, False]
