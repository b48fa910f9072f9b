"""Replayable arrival traces for the playout benchmark (reference/playout-buffering.md §5.2).

A trace is a list of events on one monotonic timeline (seconds), one JSON object per line:

    {"resp": 3, "t": 12.4031, "kind": "audio", "frames": 2400}   # 24 kHz mono s16 frames
    {"resp": 3, "t": 12.9820, "kind": "done"}                    # response.done / end of stream
    {"resp": 3, "t": 13.1000, "kind": "bargein"}                 # the user interrupts

Payload samples are synthesised by the benchmark, so only timing and sizes are stored; captured
traces from real services (family F4) can be dropped in as JSONL files and replayed unchanged.

Families generated here, all from fixed seeds (bit-identical on every run):

* **steady** — a well-behaved realtime server: 40–120 ms deltas at 1.5–3× real time, ±3 ms
  jitter; no stalls.
* **bursty** — the F1-like trace of reference §5.7: ~100 ms deltas arriving in bursts at 3–6×
  real time, an *early* stall of 150–300 ms after the 3rd–5th delta (server hiccup / TCP
  retransmission) and a 0.8–1.2 s stall after the 28th–35th. The late stall is absorbed by the
  backlog; the early one is not always: in 5 of 20 responses it outlasts the audio buffered
  before it (D* 5–57 ms), and its length is unknowable until it ends (`online_limit`).
* **slow** — F2-loaded: the source runs slower than real time (0.85–0.95×: an overloaded TTS
  server). Gaps can only be avoided by holding `duration × (1/speed − 1)`, and the duration is
  unknown until the end (`online_limit`; not in the reference's zero-gap set, §5.6).
* **bargein** — steady responses interrupted by the user at a uniformly random moment of their
  playback; the server keeps sending a few late deltas for 20–120 ms after the barge-in.
* **adversarial** — F3: stalls of 100–700 ms right after the first delta (where only a
  clairvoyant player knows how long to hold), a stall exactly equal to the buffered audio, tiny responses, a response that starts before the previous one drains,
  repeated ≥ 200 ms head-of-line stalls, barge-ins during prebuffer/rebuffer and twice within
  50 ms, and a two-minute response delivered at 4× (memory and back-pressure).

`python bench/traces.py --write DIR` writes every trace as DIR/<name>.jsonl.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RATE = 24000


@dataclass
class Trace:
    name: str
    description: str
    adversarial: bool
    events: list[dict] = field(default_factory=list)
    # Zero gaps are expected only where an online player can get them (reference §5.6: F1,
    # F2-fast, F4). A trace whose family puts zero gaps beyond every online player's reach at
    # the oracle's latency says why here, and gives, per response, the worst-case alternative
    # that its family allows with the same beginning: [(t, frames), ...] arrivals. The
    # benchmark's "(d) online bound" holds each response until it is gap-free for both.
    online_limit: str = ""
    alts: dict[int, list[tuple[float, int]]] = field(default_factory=dict)
    # Every worst case the family allows, not only the one sharing the actual response's
    # unknowns but the one at stake (bursty: the stall's length *and* its place): the
    # benchmark's (d′) must be gap-free on all of them.
    alts_any: dict[int, list[list[tuple[float, int]]]] = field(default_factory=dict)

    def audio_seconds(self) -> float:
        return sum(e["frames"] for e in self.events if e["kind"] == "audio") / RATE

    def sorted_events(self) -> list[dict]:
        # Stable: events at the same time keep generation order (audio before its done).
        return sorted(self.events, key=lambda e: e["t"])

    def dump(self, path: Path) -> None:
        with open(path, "w") as f:
            for e in self.sorted_events():
                f.write(json.dumps(e) + "\n")


def load(path: str | Path, adversarial: bool = False) -> Trace:
    """Load a JSONL trace (e.g. a captured F4 trace)."""
    p = Path(path)
    events = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return Trace(p.stem, f"loaded from {p}", adversarial, events)


def _arrivals(t0: float, sizes_ms: list[float], gaps_s: list[float]) -> list[tuple[float, int]]:
    """(time, frames) of each delta, exactly as `_Builder.response` stamps them."""
    out, t = [], t0
    for i, ms in enumerate(sizes_ms):
        if i:
            t += gaps_s[i - 1]
        out.append((round(t, 6), int(round(ms * RATE / 1000))))
    return out


class _Builder:
    """Appends responses to a trace; the next response starts after the previous has played."""

    def __init__(self, trace: Trace, seed: int) -> None:
        self.trace = trace
        self.rng = np.random.default_rng(seed)
        self.t = 1.0  # the timeline starts with a second of idle
        self.resp = 0

    def response(
        self,
        sizes_ms: list[float],
        gaps_s: list[float],
        *,
        done_delay: float = 0.02,
        bargein_at: float | None = None,
        late_s: float = 0.0,
        next_after: float | None = None,
    ) -> int:
        """Deltas of `sizes_ms` with inter-arrival `gaps_s` (gap i is before delta i+1)."""
        r = self.resp
        self.resp += 1
        t = self.t
        start = t
        arrivals = []
        for i in range(len(sizes_ms)):
            if i:
                t += gaps_s[i - 1]
            arrivals.append(t)
        ev = self.trace.events
        for a, ms in zip(arrivals, sizes_ms, strict=True):
            if bargein_at is not None and a > bargein_at + late_s:
                break  # the server stopped sending after the cancel reached it
            ev.append({"resp": r, "t": round(a, 6), "kind": "audio", "frames": int(round(ms * RATE / 1000))})
        if bargein_at is not None:
            ev.append({"resp": r, "t": round(bargein_at, 6), "kind": "bargein"})
            end = bargein_at + late_s
        else:
            end = arrivals[-1] + done_delay
            ev.append({"resp": r, "t": round(end, 6), "kind": "done"})
        duration = sum(sizes_ms) / 1000
        played_until = max(end, start + duration) if bargein_at is None else end
        self.t = played_until + (next_after if next_after is not None else self.rng.uniform(1.0, 2.5))
        return r

    def deltas(self, seconds: float, lo_ms: float = 40, hi_ms: float = 120) -> list[float]:
        out, total = [], 0.0
        while total < seconds * 1000:
            ms = float(self.rng.uniform(lo_ms, hi_ms))
            out.append(ms)
            total += ms
        return out


def steady(seed: int = 1, n: int = 20) -> Trace:
    tr = Trace("steady", "40-120 ms deltas at 1.5-3x real time, +-3 ms jitter", False)
    b = _Builder(tr, seed)
    for _ in range(n):
        sizes = b.deltas(b.rng.uniform(1.5, 6.0))
        speed = b.rng.uniform(1.5, 3.0)
        gaps = [ms / 1000 / speed + b.rng.uniform(-0.003, 0.003) for ms in sizes[:-1]]
        b.response(sizes, [max(0.0, g) for g in gaps])
    return tr


def bursty(seed: int = 2, n: int = 20) -> Trace:
    tr = Trace("bursty", "~100 ms deltas at 3-6x; early stall 150-300 ms after delta 3-5, 0.8-1.2 s stall later", False)
    tr.online_limit = (
        "the early stall's length (150-300 ms) is drawn after the player must decide; a player "
        "gap-free for every length must hold as if it were 300 ms until the stall ends"
    )
    b = _Builder(tr, seed)
    for _ in range(n):
        sizes = [float(b.rng.uniform(80, 120)) for _ in range(int(b.rng.integers(40, 61)))]
        speed = b.rng.uniform(3.0, 6.0)
        gaps = [ms / 1000 / speed * b.rng.uniform(0.5, 1.5) for ms in sizes[:-1]]
        i = int(b.rng.integers(2, 5))
        extra = b.rng.uniform(0.15, 0.30)
        base = list(gaps)
        gaps[i] += extra  # early stall
        late, late_s = int(b.rng.integers(28, 36)), b.rng.uniform(0.8, 1.2)
        gaps[late] += late_s  # late stall: the backlog absorbs it
        alt = list(gaps)
        alt[i] += 0.30 - extra  # the same response with the longest early stall of the family
        tr.alts[b.resp] = _arrivals(b.t, sizes, alt)
        worst = []
        for j in range(2, 5):  # the longest early stall at each place the family allows
            w = list(base)
            w[j] += 0.30
            w[late] += late_s
            worst.append(_arrivals(b.t, sizes, w))
        tr.alts_any[b.resp] = worst
        b.response(sizes, gaps)
    return tr


def slow(seed: int = 3, n: int = 12) -> Trace:
    tr = Trace("slow", "100 ms deltas at 0.85-0.95x real time (overloaded server)", False)
    tr.online_limit = (
        "F2-loaded (reference §5.5): below real time the gap-free hold is length x (1/speed - 1), "
        "and the length (1-3 s here) is unknown until response.done"
    )
    b = _Builder(tr, seed)
    for _ in range(n):
        sizes = [100.0] * int(b.rng.integers(10, 31))
        speed = b.rng.uniform(0.85, 0.95)
        gaps = [0.1 / speed + b.rng.uniform(-0.005, 0.005) for _ in sizes[:-1]]
        # The same beginning, but as long as the family allows (30 deltas) at the same speed.
        longest = gaps + [0.1 / speed] * (30 - len(sizes))
        tr.alts[b.resp] = _arrivals(b.t, [100.0] * 30, longest)
        b.response(sizes, gaps)
    return tr


def bargein(seed: int = 4, n: int = 20) -> Trace:
    tr = Trace("bargein", "steady responses interrupted at a random moment of playback", False)
    b = _Builder(tr, seed)
    for _ in range(n):
        sizes = b.deltas(b.rng.uniform(2.0, 5.0))
        speed = b.rng.uniform(1.5, 3.0)
        gaps = [ms / 1000 / speed for ms in sizes[:-1]]
        duration = sum(sizes) / 1000
        at = b.t + b.rng.uniform(0.15, duration - 0.1)
        b.response(sizes, gaps, bargein_at=at, late_s=b.rng.uniform(0.02, 0.12))
    return tr


def adversarial(seed: int = 5) -> Trace:
    tr = Trace("adversarial", "F3: stalls at the worst moments, tiny replies, overlap, barge-ins, 2-min reply", True)
    b = _Builder(tr, seed)
    rng = b.rng
    # A long stall right after the first (small) delta.
    sizes = [40.0] + b.deltas(3.0)
    gaps = [0.7] + [ms / 1000 / 5 for ms in sizes[1:-1]]
    b.response(sizes, gaps)
    # Stalls of 100-350 ms right after the first (40-120 ms) delta, ten times: no causal
    # player can hold exactly the D* of each (the oracle can).
    for _ in range(10):
        sizes = b.deltas(float(rng.uniform(2.0, 4.0)))
        speed = float(rng.uniform(3.0, 8.0))
        gaps = [ms / 1000 / speed for ms in sizes[:-1]]
        gaps[0] += float(rng.uniform(0.10, 0.35))
        b.response(sizes, gaps)
    # A stall exactly as long as the audio buffered when it starts (100 ms deltas at 4x).
    sizes = [100.0] * 30
    gaps = [0.025] * 29
    gaps[4] += 0.5 - 4 * 0.025  # 500 ms received after 0.1 s; stall until buffered audio ends
    b.response(sizes, gaps)
    # Tiny responses ("Sure.", "OK").
    for _ in range(5):
        b.response([float(rng.uniform(60, 140))], [], done_delay=0.01, next_after=float(rng.uniform(0.3, 1.0)))
    # A response that starts before the previous one has drained.
    sizes = b.deltas(3.0)
    b.response(sizes, [ms / 1000 / 6 for ms in sizes[:-1]], next_after=-2.0)
    sizes = b.deltas(2.0)
    b.response(sizes, [ms / 1000 / 6 for ms in sizes[:-1]])
    # TCP head-of-line stalls (>= 200 ms, the Linux minimum RTO), three of them.
    sizes = b.deltas(6.0)
    gaps = [ms / 1000 / 3 for ms in sizes[:-1]]
    for i in rng.choice(np.arange(3, len(gaps)), size=3, replace=False):
        gaps[int(i)] += float(rng.uniform(0.2, 0.6))
    b.response(sizes, gaps)
    # Barge-in during the prebuffer (slow first deltas).
    sizes = [20.0] * 20
    b.response(sizes, [0.03] * 19, bargein_at=b.t + 0.045, late_s=0.05)
    # Barge-in during a rebuffer (a stall, then the user talks).
    sizes = [100.0] * 3 + [100.0] * 20
    gaps = [0.02, 0.02, 0.8] + [0.025] * 19
    b.response(sizes, gaps, bargein_at=b.t + 0.6, late_s=0.0)
    # Two barge-ins within 50 ms: the second lands during the fade of the first / a new reply.
    sizes = b.deltas(3.0)
    at = b.t + 1.0
    b.response(sizes, [ms / 1000 / 3 for ms in sizes[:-1]], bargein_at=at, late_s=0.03, next_after=0.005)
    sizes = b.deltas(2.0)
    b.response(sizes, [ms / 1000 / 3 for ms in sizes[:-1]], bargein_at=at + 0.045, late_s=0.0)
    # A two-minute response delivered at 4x real time.
    sizes = [100.0] * 1200
    b.response(sizes, [0.025] * 1199)
    return tr


FAMILIES = ("steady", "bursty", "slow", "bargein", "adversarial")
SEED_STRIDE = 1000  # seed of run r = the family's default seed + r * SEED_STRIDE


def standard(run: int = 0) -> list[Trace]:
    """Every family; run 0 is the historical fixed-seed set, run r draws new seeds."""
    o = run * SEED_STRIDE
    return [steady(1 + o), bursty(2 + o), slow(3 + o), bargein(4 + o), adversarial(5 + o)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", metavar="DIR", help="write each trace as DIR/<name>.jsonl")
    args = ap.parse_args()
    for tr in standard():
        n = len({e["resp"] for e in tr.events})
        print(f"{tr.name:12} {n:3} responses {tr.audio_seconds():7.1f} s audio  {tr.description}")
        if args.write:
            Path(args.write).mkdir(parents=True, exist_ok=True)
            tr.dump(Path(args.write) / f"{tr.name}.jsonl")


if __name__ == "__main__":
    main()
