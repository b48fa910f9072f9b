"""Choose the end-of-turn rule from data: tune on one half of the sentences, report on the other.

    python bench/turn.py --tune        (called from there; numbers in bench/RESULTS.md §9.2)

Every rule of a grid (WebRTC VAD + smart-turn v3.2 through agent/listen/turn.py: first ask
after `min` ms of silence, re-ask every `step` ms or never, commit at P >= t — or at `confirm`
consecutive such answers — and at `max` ms anyway) is run on the tune half of each set
(turnset.half: even sentence numbers). The measure is SPEC §9's: premature cut-offs among the
utterances with mid-sentence pauses, and end of speech → commit over the utterances not cut off.
On the tune half, the rules that cut ≤ 2 % of the paused utterances of the hesitation set (and,
separately, of both sets) are ranked by p50; the best of each and the tune-half Pareto front
(fewest cut-offs for a given p50) are then run once on the test half, which no choice has seen.
"""

from __future__ import annotations

import itertools
from typing import Any

import turnset as ts
from turn import CachedModel, Utterance, run_local, run_server, vad_flags

from agent.listen.turn import TurnConfig

RATE = ts.RATE
NEVER = 60_000  # a step longer than any pause: the model is asked once per silence
GRID = [
    TurnConfig(min_silence_ms=lo, step_ms=step, max_silence_ms=hi, threshold=t, confirm=k)
    for lo, step, hi, t, k in itertools.product(
        (100, 200, 300), (100, 200, NEVER), (800, 1000, 1200, 1600),
        (0.5, 0.7, 0.8, 0.9, 0.95), (1, 2))
    if not (k == 2 and step == NEVER)
]
SILENCE_RULES = [TurnConfig(min_silence_ms=ms, max_silence_ms=ms) for ms in (300, 500, 800, 1000)]
CUT_LIMIT_PCT = 2.0


def rule_name(c: TurnConfig, model: bool = True) -> str:
    if not model:
        return f"webrtc VAD {c.max_silence_ms} ms"
    step = "once" if c.step_ms >= NEVER else f"{c.step_ms}"
    both = f" ×{c.confirm}" if c.confirm > 1 else ""
    return f"model {c.min_silence_ms}/{step}/{c.max_silence_ms} ms P>={c.threshold}{both}"


def score(utts: list[Utterance], decided: list[int | None]) -> dict[str, Any]:
    """Cut-offs among the paused utterances (SPEC §9) and end → commit of the rest."""
    paused = [(u, s) for u, s in zip(utts, decided, strict=True) if u.pauses_ms]
    cut = sum(1 for u, s in paused if s is not None and s < u.end)
    lat = sorted((s - u.end) * 1000 / RATE for u, s in zip(utts, decided, strict=True)
                 if s is not None and s >= u.end)

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {"cut": cut, "paused": len(paused), "cut_pct": 100 * cut / max(1, len(paused)),
            "p50": q(0.5), "p95": q(0.95), "n": len(utts),
            "missed": sum(1 for s in decided if s is None)}


class Runner:
    """One set's half with its VAD flags computed once; runs any rule on it."""

    def __init__(self, utts: list[Utterance], chunk: int, model: CachedModel) -> None:
        self.utts, self.chunk, self.model = utts, chunk, model
        self.flags = [vad_flags(u, chunk, "webrtc") for u in utts]

    def decide(self, cfg: TurnConfig | None, model: bool = True) -> list[int | None]:
        if cfg is None:
            return [run_server(u, self.chunk) for u in self.utts]
        m = self.model if model else None
        return [run_local(u, f, self.chunk, cfg, m)[0] for u, f in zip(self.utts, self.flags, strict=True)]

    def by_voice(self, decided: list[int | None]) -> dict[str, dict[str, Any]]:
        voices = sorted({u.voice for u in self.utts})
        out = {}
        for v in voices:
            idx = [i for i, u in enumerate(self.utts) if u.voice == v]
            out[v] = score([self.utts[i] for i in idx], [decided[i] for i in idx])
        return out


def _cell(s: dict[str, Any]) -> str:
    return f"{s['cut']}/{s['paused']} ({s['cut_pct']:.1f} %) | {s['p50']:.0f} ms | {s['p95']:.0f} ms"


def tune(sets: dict[str, list[Utterance]], chunk: int, model: CachedModel) -> dict[str, Any]:
    halves = {(kind, h): Runner([u for u in utts if ts.half(u) == h], chunk, model)
              for kind, utts in sets.items() for h in ("tune", "test")}
    kinds = list(sets)
    tuned: list[tuple[TurnConfig, dict[str, dict[str, Any]]]] = []
    for cfg in GRID:
        tuned.append((cfg, {k: score(halves[(k, "tune")].utts, halves[(k, "tune")].decide(cfg)) for k in kinds}))
        model.save() if len(tuned) % 40 == 0 else None

    def pooled(res: dict[str, dict[str, Any]], which: list[str]) -> tuple[float, float]:
        cut = sum(res[k]["cut"] for k in which)
        paused = sum(res[k]["paused"] for k in which)
        return 100 * cut / max(1, paused), max(res[k]["p50"] for k in which)

    chosen: dict[str, TurnConfig] = {}
    for label, which in (("hesitation", ["hesitation"]), ("both sets", kinds)):
        which = [k for k in which if k in kinds]
        ok = [(pooled(r, which)[1], cfg) for cfg, r in tuned if which and pooled(r, which)[0] <= CUT_LIMIT_PCT]
        if ok:
            chosen[f"best with ≤ 2 % cut on the tune half ({label})"] = min(ok, key=lambda x: x[0])[1]
    front: list[tuple[float, float, TurnConfig]] = []  # Pareto front on the pooled tune half
    pts = sorted(((*pooled(r, kinds), cfg) for cfg, r in tuned), key=lambda x: (x[0], x[1]))
    best_p50 = float("inf")
    for cut, p50, cfg in pts:
        if p50 < best_p50:
            front.append((cut, p50, cfg))
            best_p50 = p50
    lines = ["\n### Tuning (WebRTC VAD + smart-turn v3.2): "
             f"{len(GRID)} rules on the tune half, chosen ones on the test half\n"]
    lines.append("| rule | chosen as | " + " | ".join(
        f"{k} {h}: paused cut | p50 | p95" for k in kinds for h in ("tune", "test")) + " |")
    lines.append("|---|---|" + "---|---|---|" * 2 * len(kinds))
    rows: list[tuple[str, str, TurnConfig | None, bool]] = [("server VAD 800 ms (emulator)", "reference", None, True)]
    rows += [(rule_name(c, False), "silence only", c, False) for c in SILENCE_RULES]
    rows += [(rule_name(c), why, c, True) for why, c in chosen.items()]
    rows += [(rule_name(c), f"tune front: {cut:.1f} % cut", c, True) for cut, _, c in front]
    report: dict[str, Any] = {"rows": [], "per_voice": {}}
    for name, why, cfg, use_model in rows:
        cells, got = [], {}
        for k in kinds:
            for h in ("tune", "test"):
                r = halves[(k, h)]
                dec = r.decide(cfg, use_model)
                got[(k, h)] = score(r.utts, dec)
                if h == "test" and why.startswith(("best", "reference", "silence")):
                    report["per_voice"].setdefault(name, {})[k] = r.by_voice(dec)
                cells.append(_cell(got[(k, h)]))
        lines.append(f"| {name} | {why} | " + " | ".join(cells) + " |")
        report["rows"].append({"rule": name, "why": why, **{f"{k}/{h}": v for (k, h), v in got.items()}})
    lines.append("\nPer voice, test half (paused cut | p50 | p95):\n")
    for name, per_kind in report["per_voice"].items():
        for k, voices in per_kind.items():
            lines.append(f"- {name}, {k}: " + "; ".join(
                f"{v} {s['cut']}/{s['paused']} {s['p50']:.0f}/{s['p95']:.0f} ms" for v, s in voices.items()))
    print("\n".join(lines))
    return report
