"""What a text cue adds to local end of turn (issue 18; bench/RESULTS.md §9.3).

    pip install pocketsphinx     # bench-only, optional: its en-us model, LM and dictionary ship in the wheel
    python bench/turntext.py [--sets hesitation,clause] [--sentences N] [--json out.json]

The cue: the transcript so far is **incomplete** when its last word cannot end a request (a
closed-class word, CLOSED_CLASS below) or it is empty. Two transcripts at each decision point:
- **oracle**: the labelled words (bench/turnset.py's parts before the pause; the whole sentence
  after the real end; inside a part's speech, its words up to the instant's share of the part's
  characters, an estimate) — the upper bound of any rule that reads the words;
- **pocketsphinx** 5.1.1: a streaming decode of the audio up to that instant (one Decoder per
  utterance, `start_utt` at its first sample, 20 ms chunks through `process_raw`, `hyp()` read
  where a rule asks). Without the package its rows are skipped and the oracle still reported.
Rules, on the sets and speech cache of bench/turn.py ($TMPDIR/voice-agent-turn-speech, with
its cached smart-turn answers) and its drive of agent/listen/turn.py over 20 ms chunks: the
server's VAD (800 ms), WebRTC VAD 1000 ms, the smart-turn default (100/once/1000 ms, P ≥ 0.8),
the same with a **text veto** (a "complete" is ignored while the cue says incomplete; the 1000
ms cap still commits), and **text alone** (commit at the first ask when the cue says complete,
else at the cap). Plus each cue's raw rates 200 ms into each pause and after each real end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
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

import turnset as ts  # noqa: E402
from turn import CachedModel, Utterance, run_local, run_server, vad_flags  # noqa: E402
from turntune import FAMILIES, score  # noqa: E402

from agent.listen.turn import TurnConfig  # noqa: E402

RATE = ts.RATE
PROBE_MS = 200  # raw rates: the cue 200 ms into each pause and after each real end (as §9.2's model table)

# Words a request does not end on. Closed classes only (a fixed list, no verbs: "Add | tomatoes"
# is not caught). Left out on purpose, because they often *end* a request: the object pronouns
# "you", "it", "her" ("Thank you.", "Play it."); the demonstratives and quantifiers that stand
# alone ("Undo that.", "Do you have any?", "No."); the verb particles up, down, on, off, out,
# over, back, away, around ("Turn the lights off."); "while", "so", "there". Known false vetoes
# (a latency cost, never a cut-off: the 1000 ms cap still commits): preposition stranding ("Who
# are you talking to?", "What is it like?"), elliptical answers ending on an auxiliary ("Yes, I
# do."), a bare wh-question ("Why?").
WORD_CLASSES = {
    "articles, determiners, possessives": "the a an every my your our their its",
    "prepositions (and 'to')": "about above across after against among at before behind below beneath beside "
    "besides between beyond by during except for from in into like near of onto per since through throughout "
    "to toward towards under underneath until upon via with within without",
    "conjunctions": "and or but nor because if unless whether although though than",
    "auxiliaries, modals, subject-auxiliary contractions": "am is are was were be been being do does did have "
    "has had can could will would shall should may might must i'm i'll i'd i've you're you'll you've we're "
    "we'll they're they'll he's she's it's that's there's let's",
    "subject pronouns (not 'you', 'it': their object uses end requests)": "i he she we they",
    "wh-words and their contractions": "what which who whom whose why how when where what's where's who's how's "
    "when's",
    "fillers": "um uh er erm uhm",
}
CLOSED_CLASS = frozenset(" ".join(WORD_CLASSES.values()).split())


def words(text: str) -> list[str]:
    """Lower-case words; pocketsphinx's alternate-pronunciation marks ("the(2)") dropped."""
    return re.findall(r"[a-z']+", re.sub(r"\(\d+\)", "", text.lower()))


def incomplete(text: str) -> bool:
    """The cue: nothing heard yet, or the last word cannot end a request."""
    w = words(text)
    return not w or w[-1] in CLOSED_CLASS


def parts_of(kind: str, u: Utterance) -> tuple[str, ...]:
    """The labelled parts of `u` (turnset's lists, by sentence number)."""
    if u.sentence >= 100:
        return (ts.COMPLETE[u.sentence - 100],)
    return (ts.HESITATION if kind == "hesitation" else ts.CLAUSE)[u.sentence]


def oracle_text(parts: tuple[str, ...], u: Utterance, at: int) -> str:
    """The words said by sample `at`: exact in a labelled pause and after the end; inside a part's
    speech (a word gap the VAD took for silence) the part's words whose characters end before
    the instant's share of the part's span."""
    if at >= u.end:
        return " ".join(parts)
    start = int(ts.LEAD_S * RATE)
    for k, part in enumerate(parts):
        stop = u.pause_starts[k] if k < len(u.pause_starts) else u.end
        if at < stop:
            share = max(0, at - start) / max(1, stop - start)
            ws, said, acc = part.split(), [], 0
            for w in ws:
                acc += len(w) + 1
                if acc > share * (len(part) + 1):
                    break
                said.append(w)
            return " ".join([*parts[:k], *said])
        start = stop + u.pauses_ms[k] * RATE // 1000
        if at < start:
            return " ".join(parts[: k + 1])
    return " ".join(parts)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sphinx:
    """pocketsphinx streaming on one utterance at a time; CPU per audio second and hyp() latency."""

    def __init__(self) -> None:
        import pocketsphinx

        self._decoder = pocketsphinx.Decoder
        pkg = Path(pocketsphinx.__file__).parent
        self.installed_mb = sum(f.stat().st_size for f in pkg.rglob("*") if f.is_file()) / 1e6
        self.cpu_s = self.audio_s = 0.0
        self.load_s: list[float] = []
        self.hyp_ms: list[float] = []
        self.rss_added_mb: float | None = None

    def transcripts(self, u: Utterance, wanted: set[int], chunk: int) -> dict[int, str]:
        """The hypothesis at each wanted sample (read after the chunk that reaches it)."""
        before = rss_mb() if self.rss_added_mb is None else 0.0
        t = time.process_time()
        d = self._decoder(loglevel="FATAL")
        self.load_s.append(time.process_time() - t)
        targets, out = sorted(wanted), {}
        d.start_utt()
        t = time.process_time()
        for i in range(0, u.audio.size, chunk):
            if not targets:
                break
            d.process_raw(u.audio[i : i + chunk].tobytes(), False, False)
            self.audio_s += min(chunk, u.audio.size - i) / RATE
            while targets and min(i + chunk, u.audio.size) >= targets[0]:
                h0 = time.perf_counter()
                hyp = d.hyp()
                self.hyp_ms.append((time.perf_counter() - h0) * 1000)
                out[targets.pop(0)] = hyp.hypstr if hyp is not None else ""
        d.end_utt()
        self.cpu_s += time.process_time() - t
        if self.rss_added_mb is None:
            self.rss_added_mb = rss_mb() - before
        return out


def ask_points(u: Utterance, flags: list[bool], chunk: int, cfg: TurnConfig) -> set[int]:
    """Every sample at which the rule can ask (it asks where the silence says, whatever the answers:
    with every answer "not complete" it visits them all before its one commit)."""
    seen: set[int] = set()
    run_local(u, flags, chunk, cfg, lambda a: 0.0, veto=lambda at: seen.add(at) is None)
    return seen


def probe_points(u: Utterance) -> list[tuple[str, int]]:
    ms = PROBE_MS * RATE // 1000
    return [*(("pause", s + ms) for s in u.pause_starts), ("end", u.end + ms)]


DEFAULT = TurnConfig()
PLAIN = "smart-turn default (100/once/1000 ms, P ≥ 0.8)"


def evaluate(kind: str, utts: list[Utterance], chunk: int, model: Callable[[np.ndarray], float],
             sphinx: Sphinx | None) -> dict[str, Any]:
    """Every rule on one set: the decided sample per utterance and rule, and the cues' raw rates."""
    flags = [vad_flags(u, chunk, "webrtc") for u in utts]
    labels = [parts_of(kind, u) for u in utts]
    cues: dict[str, list[Callable[[int], bool]]] = {
        "oracle": [lambda at, p=p, u=u: incomplete(oracle_text(p, u, at)) for u, p in zip(utts, labels, strict=True)]}
    heard: list[dict[int, str]] = []
    if sphinx is not None:
        for u, f in zip(utts, flags, strict=True):
            heard.append(sphinx.transcripts(u, ask_points(u, f, chunk, DEFAULT) | {a for _, a in probe_points(u)},
                                            chunk))
        cues["pocketsphinx"] = [lambda at, h=h: incomplete(h[at]) for h in heard]
    cap = TurnConfig(min_silence_ms=1000, max_silence_ms=1000)
    decided: dict[str, list[int | None]] = {
        "server VAD 800 ms (reference)": [run_server(u, chunk) for u in utts],
        "webrtc VAD 1000 ms": [run_local(u, f, chunk, cap, None)[0] for u, f in zip(utts, flags, strict=True)],
        PLAIN: [run_local(u, f, chunk, DEFAULT, model)[0] for u, f in zip(utts, flags, strict=True)],
    }
    for name, cue in cues.items():
        decided[f"smart-turn default + {name} veto"] = [
            run_local(u, f, chunk, DEFAULT, model, veto=c)[0] for u, f, c in zip(utts, flags, cue, strict=True)]
    for name, cue in cues.items():
        decided[f"{name} text alone (100/once/1000 ms)"] = [
            run_local(u, f, chunk, DEFAULT, lambda a: 1.0, veto=c)[0] for u, f, c in zip(utts, flags, cue, strict=True)]
    rates: dict[str, dict[str, dict[str, list[bool]]]] = {}
    for name, cue in cues.items():
        for u, c in zip(utts, cue, strict=True):
            for where, at in probe_points(u):
                for fam, keep in FAMILIES.items():
                    if keep(u.voice):
                        rates.setdefault(name, {}).setdefault(fam, {}).setdefault(where, []).append(c(at))
    examples = [f"{u.name} → " + " | ".join(repr(h[at]) for _, at in probe_points(u))
                for u, h in zip(utts, heard, strict=False) if u.voice.startswith("hibari/") and u.pauses_ms]
    return {"kind": kind, "utts": utts, "decided": decided, "rates": rates, "examples": examples}


def table(results: list[dict[str, Any]], half: str | None) -> tuple[list[str], dict[str, Any]]:
    """Markdown rows (rule × set × voice family: paused cut, end → commit p50, p95) and the numbers."""
    cols = [(r, fam) for r in results for fam in FAMILIES]
    head = "| rule | " + " | ".join(f"{r['kind']}, {fam}" for r, fam in cols) + " |"
    lines, got = [head, "|---|" + "---|" * len(cols)], {}
    notes = []
    for rule in results[0]["decided"]:
        cells = []
        for r, fam in cols:
            keep = [i for i, u in enumerate(r["utts"]) if FAMILIES[fam](u.voice) and (half is None or ts.half(u) == half)]
            s = score([r["utts"][i] for i in keep], [r["decided"][rule][i] for i in keep])
            got[f"{rule} / {r['kind']} / {fam}"] = s
            cells.append(f"{s['cut']}/{s['paused']} ({s['cut_pct']:.1f} %), {s['p50']:.0f}, {s['p95']:.0f} ms")
            if fam == "all voices" and (s["cut_complete"] or s["missed"]):
                notes.append(f"- {rule}, {r['kind']}: {s['cut_complete']}/{s['complete']} complete utterances "
                             f"committed inside a word gap, {s['missed']} never committed")
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    return lines + notes, got


def rate_lines(results: list[dict[str, Any]]) -> list[str]:
    fams = list(FAMILIES)
    lines = ["| cue | set | " + " | ".join(f"pauses vetoed, {f}" for f in fams) + " | "
             + " | ".join(f"real ends vetoed, {f}" for f in fams) + " |",
             "|---|---|" + "---|" * 2 * len(fams)]
    for cue in results[0]["rates"]:
        for r in results:
            by = r["rates"][cue]
            cell = [f"{sum(xs)}/{len(xs)} ({100 * sum(xs) / max(1, len(xs)):.0f} %)"
                    for where in ("pause", "end") for xs in (by.get(f, {}).get(where, []) for f in fams)]
            lines.append(f"| {cue} | {r['kind']} | " + " | ".join(cell) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(ts.SETS))
    ap.add_argument("--sentences", type=int, help="only the first N sentences of each list (smoke test)")
    ap.add_argument("--chunk-ms", type=int, default=20)
    ap.add_argument("--no-asr", action="store_true", help="the oracle only, even with pocketsphinx installed")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    chunk = args.chunk_ms * RATE // 1000
    cache = Path(tempfile.gettempdir()) / "voice-agent-turn-speech"
    model = CachedModel(cache / "smart-turn-answers.pkl")
    sphinx = None
    if args.no_asr or importlib.util.find_spec("pocketsphinx") is None:
        why = "--no-asr" if args.no_asr else "pocketsphinx is not installed (pip install pocketsphinx)"
        print(f"{why}: the ASR rows are skipped, the oracle is reported")
    else:
        sphinx = Sphinx()
    results = []
    try:
        for kind in args.sets.split(","):
            utts = ts.build_set(kind, cache, per_sentence=4, whole=True, sentences=args.sentences)
            print(f"set '{kind}': {len(utts)} utterances, {sum(1 for u in utts if u.pauses_ms)} paused, "
                  f"{sum(u.audio.size for u in utts) / RATE:.0f} s of audio", flush=True)
            results.append(evaluate(kind, utts, chunk, model, sphinx))
    finally:
        model.save()
    report: dict[str, Any] = {}
    for half, title in ((None, "whole sets"), ("test", "test half (odd sentence numbers)")):
        lines, report[title] = table(results, half)
        print(f"\n### Paused utterances cut, end → commit p50, p95 — {title}\n")
        print("\n".join(lines))
    print(f"\n### The cues' raw rates, {PROBE_MS} ms into each pause and after each real end\n")
    print("\n".join(rate_lines(results)))
    report["rates"] = {r["kind"]: r["rates"] for r in results}
    if sphinx is not None:
        cost = {"cpu_ms_per_audio_s": 1000 * sphinx.cpu_s / max(sphinx.audio_s, 1e-9),
                "audio_s": sphinx.audio_s, "decoder_load_ms_p50": 1000 * statistics.median(sphinx.load_s),
                "hyp_ms_p50": float(np.percentile(sphinx.hyp_ms, 50)),
                "hyp_ms_p95": float(np.percentile(sphinx.hyp_ms, 95)), "hyp_ms_max": max(sphinx.hyp_ms),
                "hyps": len(sphinx.hyp_ms), "rss_added_mb": sphinx.rss_added_mb, "installed_mb": sphinx.installed_mb}
        report["pocketsphinx"] = cost
        print(f"\npocketsphinx: {cost['cpu_ms_per_audio_s']:.0f} ms CPU per audio second over "
              f"{sphinx.audio_s:.0f} s; Decoder() {cost['decoder_load_ms_p50']:.0f} ms CPU (p50); hyp() "
              f"p50 {cost['hyp_ms_p50']:.3f} ms, p95 {cost['hyp_ms_p95']:.3f} ms, max {cost['hyp_ms_max']:.2f} ms "
              f"over {cost['hyps']}; RSS +{sphinx.rss_added_mb:.0f} MB with one live Decoder; "
              f"installed {sphinx.installed_mb:.0f} MB")
        print("\nhibari, what pocketsphinx heard 200 ms into each pause | after the end:\n")
        for r in results:
            print("\n".join(f"- {e}" for e in r["examples"]))
    print(f"\ntotal {time.monotonic() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
