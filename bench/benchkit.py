"""Shared pieces of the benchmarks: the scripted user, statistics, process meters, WAV analysis.

Why one small kit: every contender (voice-agent, the vendor-SDK baseline) and the orchestrator
must agree on exactly the same definitions — the same scripted user, the same percentile
function, the same way of finding answer audio in an output WAV — or the side-by-side ratios
would compare definitions instead of clients.

Scripts in `bench/` are run as `python bench/<name>.py`, so this directory is `sys.path[0]` and
the kit is imported as `benchkit`.
"""

from __future__ import annotations

import json
import math
import os
import resource
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

OUT_RATE = 24000  # what both contenders play (DashScope's output rate)
IN_RATE = 16000  # what both contenders send upstream
AUDIBLE = 32  # |sample| above this (-60 dBFS) is "audible" — the player's own threshold
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile (numpy's default), None for no data."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), p))


def summary(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """n / p50 / p95 / max / mean of the non-None values, rounded to 0.1."""
    v = [float(x) for x in values if x is not None]

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 1)

    return {
        "n": len(v),
        "p50": r(percentile(v, 50)),
        "p95": r(percentile(v, 95)),
        "max": r(max(v)) if v else None,
        "mean": r(sum(v) / len(v)) if v else None,
    }


def ratio(ours: float | None, base: float | None) -> float | None:
    """ours / baseline (lower is better for every metric we report); None when undefined."""
    if ours is None or base is None or base == 0:
        return None
    return round(ours / base, 2)


# --- the scripted user --------------------------------------------------------------------

# Phrases the emulator's recognizer knows (agent.emulator.recognizer.PHRASES), in the order
# the scripted user says them; the list repeats for long runs.
PHRASES: tuple[str, ...] = (
    "What's the weather like today?",
    "Tell me a joke.",
    "What time is it?",
    "Hello there.",
    "Thank you very much.",
    "Tell me about the moon.",
    "Goodbye.",
    "How are you doing?",
    "Play some music.",
    "What can you do?",
)


@dataclass
class Phrase:
    """One thing the user says: when (seconds on the input timeline) and whether it barges in."""

    at_s: float
    text: str
    end_s: float
    barge_in: bool  # spoken while the previous answer is expected to be playing


@dataclass
class Scenario:
    """The user's side of the conversation, identical for every contender."""

    phrases: list[Phrase]
    total_s: float
    lead_in_s: float

    def to_json(self) -> dict[str, Any]:
        return {"total_s": self.total_s, "lead_in_s": self.lead_in_s,
                "phrases": [asdict(p) for p in self.phrases]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Scenario:
        return cls([Phrase(**p) for p in doc["phrases"]], doc["total_s"], doc["lead_in_s"])


# Expected answer onset after the end of a question: the server VAD's 800 ms of silence, the
# emulator's recognition and synthesis, and its first-delta delay. Only used to *place* the
# barge-ins roughly in the middle of an answer; every measurement uses real timestamps.
ANSWER_ONSET_S = 1.4
BARGE_AFTER_S = 2.2  # a barge-in is spoken this long into the answer (every answer is > 4.5 s)
PAUSE_S = 1.5  # quiet time after a full answer before the next question
TAIL_S = 2.5  # after the last answer, before the contenders stop (its onset may run late)


def plan_scenario(turns: int, lead_in_s: float = 1.5, barge_every: int = 2,
                  texts: Sequence[str] = PHRASES) -> Scenario:
    """`turns` questions (cycling through `texts`); every `barge_every`-th answer is
    interrupted by the next question (0: none)."""
    from agent.emulator.answers import answer_for
    from agent.emulator.speech import synthesize

    phrases: list[Phrase] = []
    t = lead_in_s
    barge_next = False
    for i in range(turns):
        text = texts[i % len(texts)]
        q_s = len(synthesize(text, IN_RATE)) / IN_RATE
        phrases.append(Phrase(round(t, 3), text, round(t + q_s, 3), barge_next))
        answer_s = len(synthesize(answer_for(text), OUT_RATE)) / OUT_RATE
        barge_next = barge_every > 0 and i < turns - 1 and i % barge_every == barge_every - 1
        if barge_next:
            t += q_s + ANSWER_ONSET_S + BARGE_AFTER_S
        else:
            t += q_s + ANSWER_ONSET_S + answer_s + PAUSE_S
    return Scenario(phrases, round(t + TAIL_S, 3), lead_in_s)


def write_user_wav(path: Path, scenario: Scenario, silent: bool = False) -> None:
    """Render the scenario as the 16 kHz WAV both contenders' microphones "hear"."""
    from agent.audio.wav import write_wav
    from agent.emulator.speech import synthesize

    pcm = np.zeros(int(scenario.total_s * IN_RATE), np.int16)
    for p in [] if silent else scenario.phrases:
        s = synthesize(p.text, IN_RATE)
        i = int(p.at_s * IN_RATE)
        pcm[i : i + len(s)] = s[: max(0, len(pcm) - i)]
    write_wav(path, pcm, IN_RATE)


# --- process meters -----------------------------------------------------------------------


def thread_cpu() -> dict[str, float]:
    """CPU seconds of every live thread of this process, by thread name (duplicates summed).

    Read from outside each thread through its POSIX CPU clock, so no thread has to cooperate.
    """
    out: dict[str, float] = {}
    for t in threading.enumerate():
        if t.ident is None:
            continue
        try:
            cpu = time.clock_gettime(time.pthread_getcpuclockid(t.ident))
        except (OSError, ProcessLookupError, AttributeError):
            continue
        name = _thread_family(t.name)
        out[name] = out.get(name, 0.0) + cpu
    return out


def _thread_family(name: str) -> str:
    """Pool workers share one row ("asyncio_0", "asyncio_1" → "asyncio")."""
    head, _, tail = name.rpartition("_")
    return head if head and tail.isdigit() else name


@dataclass
class CpuWindow:
    """CPU time of this process (and of each thread) between `start()` and `stop()`."""

    wall_s: float = 0.0
    user_s: float = 0.0
    sys_s: float = 0.0
    threads: dict[str, float] = field(default_factory=dict)
    _t: float = 0.0
    _ru: Any = None
    _th: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._t = time.monotonic()
        self._ru = resource.getrusage(resource.RUSAGE_SELF)
        self._th = thread_cpu()

    def stop(self) -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.wall_s = time.monotonic() - self._t
        self.user_s = ru.ru_utime - self._ru.ru_utime
        self.sys_s = ru.ru_stime - self._ru.ru_stime
        now = thread_cpu()
        self.threads = {k: round(v - self._th.get(k, 0.0), 4) for k, v in now.items()}

    def as_dict(self) -> dict[str, Any]:
        cpu = self.user_s + self.sys_s
        return {
            "wall_s": round(self.wall_s, 3),
            "user_s": round(self.user_s, 3),
            "sys_s": round(self.sys_s, 3),
            "cpu_s": round(cpu, 3),
            "cpu_s_per_min": round(cpu / self.wall_s * 60.0, 3) if self.wall_s else None,
            "cpu_pct_core": round(cpu / self.wall_s * 100.0, 2) if self.wall_s else None,
            "threads_s": dict(sorted(self.threads.items(), key=lambda kv: -kv[1])),
        }


def proc_status_kb(pid: int, key: str) -> int | None:
    """A `/proc/<pid>/status` field in kB (VmRSS, VmHWM, ...), None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a process from /proc (clock-tick resolution), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


class RssSampler:
    """Samples the RSS of child processes from the outside (no cost inside them)."""

    def __init__(self, period_s: float = 0.25) -> None:
        self.period_s = period_s
        self.samples: dict[str, list[tuple[float, int]]] = {}
        self._pids: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self._pids[name] = pid
        self.samples.setdefault(name, [])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            now = time.monotonic()
            for name, pid in list(self._pids.items()):
                kb = proc_status_kb(pid, "VmRSS")
                if kb is not None:
                    self.samples[name].append((now, kb))

    def steady(self, name: str, start: float, end: float) -> dict[str, float | None]:
        return rss_summary(self.samples.get(name, []), start, end)


def rss_summary(samples: Sequence[Sequence[float]], start: float, end: float) -> dict[str, float | None]:
    """RSS over [start, end] from (time, kB) samples.

    steady = median of the second half; growth = last sample − the sample a quarter into the
    window (after warm-up: lazy imports, first allocations of each kind), so a long run shows a
    leak and a short one does not confuse warm-up with one; max = the highest sample.
    """
    pts = [(t, kb) for t, kb in samples if start <= t <= end]
    if not pts:
        return {"steady_mb": None, "growth_mb": None, "max_mb": None}
    half = [kb for t, kb in pts if t >= (start + end) / 2] or [pts[-1][1]]
    quarter = next((kb for t, kb in pts if t >= start + (end - start) / 4), pts[0][1])
    return {
        "steady_mb": round(float(np.median(half)) / 1024, 1),
        "growth_mb": round((pts[-1][1] - quarter) / 1024, 2),
        "max_mb": round(max(kb for _, kb in pts) / 1024, 1),
    }


# --- output WAV analysis ------------------------------------------------------------------


def read_out_wav(path: Path) -> np.ndarray:
    """The speaker file as int16 (24 kHz mono, as both contenders write it)."""
    import wave

    with wave.open(str(path), "rb") as w:
        if w.getframerate() != OUT_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 24 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def locate(haystack: np.ndarray, needle: np.ndarray) -> tuple[int, float]:
    """Best offset of `needle` in `haystack` and the normalised correlation there (FFT)."""
    if len(needle) == 0 or len(haystack) < len(needle):
        return -1, 0.0
    h = haystack.astype(np.float64)
    n = needle.astype(np.float64)
    size = 1 << int(math.ceil(math.log2(len(h) + len(n))))
    spec = np.fft.rfft(h, size) * np.conj(np.fft.rfft(n, size))
    corr = np.fft.irfft(spec, size)[: len(h) - len(n) + 1]
    # Normalise by the local energy of the haystack so a loud wrong spot cannot win.
    c2 = np.concatenate([[0.0], np.cumsum(h * h)])
    local = c2[len(n) :] - c2[: len(h) - len(n) + 1]
    nn = float(np.sum(n * n)) or 1.0
    score = corr / np.sqrt(np.maximum(local, nn * 1e-4) * nn)  # near-silence cannot score
    idx = int(np.argmax(score))
    return idx, float(score[idx])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0


@dataclass
class Playout:
    """Where one response landed in an output WAV."""

    start: int | None  # output index of the response's first sample (None: not found)
    corr: float
    lag_ms: list[float]  # per located 100 ms segment: how late it played vs. gap-free playout
    played_s: float  # how much of the sent audio was found in order

    @property
    def gap_ms(self) -> float:
        return max(0.0, self.lag_ms[-1] - self.lag_ms[0]) if self.lag_ms else 0.0

    @property
    def gaps(self) -> int:
        return sum(1 for a, b in zip(self.lag_ms, self.lag_ms[1:], strict=False) if b - a > 1.0)


def trace_playout(out: np.ndarray, sent: np.ndarray, expect: int, search_s: float = 3.0) -> Playout:
    """Find `sent` (the response's audio as the server sent it) in `out`, starting near `expect`.

    The first 100 ms (longer if that is too quiet to locate) finds the start — short, so a gap
    early in the answer cannot hide where it began; then every audible 100 ms segment is located
    in order. A segment found later than gap-free playout would put it means a gap (lag grows);
    a segment not found means playback stopped there (barge-in) and ends the trace.
    """
    lo = max(0, expect - OUT_RATE // 10)
    n = OUT_RATE // 10
    while n < OUT_RATE // 2 and rms(sent[:n]) < 300:
        n += OUT_RATE // 10
    head = sent[:n]
    window = out[lo : lo + int(search_s * OUT_RATE) + len(head)]
    idx, corr = locate(window, head)
    if idx < 0 or corr < 0.9:
        return Playout(None, corr, [], 0.0)
    start = lo + idx
    seg = OUT_RATE // 10
    lags: list[float] = []
    lag = 0
    played = 0
    for k in range(0, len(sent) - seg + 1, seg):
        want = sent[k : k + seg]
        if rms(want) < 200:
            continue  # a pause in the speech cannot be located; skip it
        pos = start + k + lag
        w = out[max(0, pos - 48) : pos + seg + OUT_RATE]  # ±2 ms early, up to 1 s late
        j, c = locate(w, want)
        if j < 0 or c < 0.9:
            break
        lag = max(0, pos - 48) + j - start - k
        lags.append(lag * 1000.0 / OUT_RATE)
        played = k + seg
    return Playout(start, corr, lags, played / OUT_RATE)


def last_audible(out: np.ndarray, lo: int, hi: int) -> int | None:
    """Index of the last audible sample in out[lo:hi], None if it is all silence."""
    region = np.abs(out[max(0, lo) : max(0, hi)].astype(np.int32))
    nz = np.nonzero(region > AUDIBLE)[0]
    return None if len(nz) == 0 else max(0, lo) + int(nz[-1])


# --- reports ------------------------------------------------------------------------------


def write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def fmt(x: float | None, unit: str = "", digits: int = 1) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}{unit}"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_1m": round(load[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
