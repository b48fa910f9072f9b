"""Wake-word and listening front-end benchmark (SPEC §9 wake-word and cost targets, issue 15).

    python bench/wakeword.py [--quick] [--fw-minutes 60] [--oww-fw-minutes 20] [--json out.json]

In one run, side by side: microWakeWord (pymicro-wakeword, the shipped engine) and openWakeWord
(pyopen-wakeword) on
1. the synthetic set: every built-in wake word said by 8 espeak-ng + 4 flite + 1 festival HTS
   voices at 3 rates, clean, in babble (another synthetic speaker) at 20 and 10 dB SNR, and in
   white noise at 20 and 10 dB: detected clips per condition;
2. false wakes per hour over >= 1 hour of speech without any wake word (espeak-ng and flite
   reading the licence texts in /usr/share/common-licenses) and generated music-like audio;
3. CPU per audio second (wake engines, pymicro-vad, the pure front end) and the wake -> first
   audio upstream latency (the work done between a chunk arriving and its SendAudio);
4. seconds sent upstream per hour in each listen mode over a scripted day (bench/listen_day.py);
5. installed size and cold import time of each package.
Synthesized speech is cached in $TMPDIR/voice-agent-wakeword-speech (never in the repository).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import listen_day  # noqa: E402
import speechsynth as ss  # noqa: E402

from agent.listen.frontend import FrontendConfig, ListenFrontend  # noqa: E402
from agent.listen.vad import VadGate  # noqa: E402
from agent.listen.wakeword import RATE, WakeWordDetector, load_wake_word  # noqa: E402

WORDS = ("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft")
PHRASES = {"okay_nabu": "okay nabu", "hey_jarvis": "hey jarvis", "alexa": "alexa", "hey_mycroft": "hey mycroft"}
STRETCHES = (0.9, 1.0, 1.2)
CONDITIONS = ("clean", "babble 20 dB", "babble 10 dB", "white 20 dB", "white 10 dB")
GAP_S = 1.6  # silence after each clip (> the engines' memory; detections are attributed per clip)
NEWS = (
    "The city council met on Tuesday evening to discuss the budget for the new library. Several "
    "members asked about the cost of repairing the roof, and the mayor promised a detailed report "
    "before the summer. Meanwhile the weather will stay mild, with some rain in the north."
)
CACHE = Path(tempfile.gettempdir()) / "voice-agent-wakeword-speech"


class OpenWakeWordEngine:
    """pyopen-wakeword behind the detector's engine protocol (80 ms hops, cut-off 0.5).

    `shared` lets several word models read one mel/embedding pipeline (its cost dominates):
    the first engine to see hop number k computes the embeddings, the others reuse them.
    """

    hop_samples = 1280

    def __init__(self, word: str, shared: dict[str, Any] | None = None) -> None:
        from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

        self.word, self.cutoff = word, 0.5
        self._model = OpenWakeWord.from_builtin(Model(word))
        self._shared = shared if shared is not None else {}
        if "features" not in self._shared:
            self._shared.update(features=OpenWakeWordFeatures.from_builtin(), embs={})
        self._seq = 0

    def scores(self, hop: bytes) -> list[float]:
        self._seq += 1
        embs: dict[int, list[Any]] = self._shared["embs"]
        if self._seq not in embs:
            embs[self._seq] = list(self._shared["features"].process_streaming(hop))
            for old in [k for k in embs if k < self._seq - 200]:
                del embs[old]
        out: list[float] = []
        for emb in embs[self._seq]:
            out += [float(p) for p in self._model.process_streaming(emb)]
        return out

    def close(self) -> None:
        self._model.close()


def detector(engine: str, word: str, shared: dict[str, Any] | None = None) -> WakeWordDetector:
    if engine == "micro":
        return load_wake_word(word)
    return WakeWordDetector(OpenWakeWordEngine(word, shared))


# --- 1. the synthetic set ----------------------------------------------------------------------


def clips(word: str, voices: tuple[tuple[str, str], ...]) -> list[tuple[str, np.ndarray]]:
    return [
        (f"{e}:{v}@{s}", ss.synth(PHRASES[word], e, v, s, CACHE)) for e, v in voices for s in STRETCHES
    ]


def condition_stream(
    items: list[tuple[str, np.ndarray]], condition: str, babble: np.ndarray, seed: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """All clips one after another (0.3 s lead, GAP_S after), each with noise from its own offset."""
    rng = np.random.default_rng(seed)
    parts, windows, pos = [], [], 0
    noise = babble if condition.startswith("babble") else ss.white_noise(30.0, seed)
    for _, clip in items:
        x = np.concatenate([ss.silence(0.3), clip, ss.silence(GAP_S)])
        if condition != "clean":  # continuous noise; the SNR is set on the phrase's voiced part
            x = ss.mix_at_snr(x, noise, float(condition.split()[1]), int(rng.integers(noise.size)))
        windows.append((pos, pos + int((0.3 + GAP_S * 0.75) * RATE) + clip.size))
        parts.append(x)
        pos += x.size
    return np.concatenate(parts), windows


def run_set(engines: tuple[str, ...], quick: bool) -> dict[str, Any]:
    voices = ss.ALL_VOICES[:3] + ss.ALL_VOICES[8:9] if quick else ss.ALL_VOICES
    babble_voices = (("espeak", "en-us+m3"), ("flite", "awb"))
    babble = np.concatenate([ss.synth(NEWS, e, v, 1.0, CACHE) for e, v in babble_voices])
    table: dict[str, Any] = {}
    for word in WORDS:
        items = clips(word, voices)
        for ci, condition in enumerate(CONDITIONS):
            audio, windows = condition_stream(items, condition, babble, seed=ci)
            for engine in engines:
                found = detector(engine, word).process(audio.tobytes())
                hit = [any(a <= d.end_sample < b for d in found) for a, b in windows]
                stray = sum(1 for d in found if not any(a <= d.end_sample < b for a, b in windows))
                by_family: dict[str, list[int]] = {}
                for (name, _), h in zip(items, hit, strict=True):
                    fam = name.split(":")[0]
                    by_family.setdefault(fam, [0, 0])
                    by_family[fam][0] += int(h)
                    by_family[fam][1] += 1
                table.setdefault(f"{engine}/{word}", {})[condition] = {
                    "detected": sum(hit), "of": len(hit), "by_family": by_family, "outside": stray
                }
    return table


def threshold_sweep(corpus: np.ndarray, quick: bool) -> list[dict[str, Any]]:
    """micro okay_nabu at lower cut-offs than the model's 0.85: detection vs false wakes."""
    voices = ss.ALL_VOICES[:4] if quick else ss.ALL_VOICES
    babble = np.concatenate([ss.synth(NEWS, e, v, 1.0, CACHE) for e, v in (("espeak", "en-us+m3"), ("flite", "awb"))])
    items = clips("okay_nabu", voices)
    rows = []
    for threshold in (0.5, 0.6, 0.7, 0.85):
        row: dict[str, Any] = {"threshold": threshold}
        for ci, condition in enumerate(CONDITIONS[:2]):
            audio, windows = condition_stream(items, condition, babble, seed=ci)
            found = load_wake_word("okay_nabu", threshold).process(audio.tobytes())
            row[condition] = f"{sum(any(a <= d.end_sample < b for d in found) for a, b in windows)}/{len(windows)}"
        fw = load_wake_word("okay_nabu", threshold).process(corpus.tobytes())
        row["false_wakes"] = len(fw)
        row["per_hour"] = round(len(fw) / (corpus.size / RATE / 3600), 2)
        rows.append(row)
    return rows


def detection_delay_ms(quick: bool) -> dict[str, float]:
    """Clean okay_nabu: detection time after the last voiced sample of the phrase (micro)."""
    delays = []
    for _, clip in clips("okay_nabu", ss.ALL_VOICES[:4] if quick else ss.ALL_VOICES):
        audio = np.concatenate([ss.silence(0.3), clip, ss.silence(1.0)])
        found = load_wake_word("okay_nabu").process(audio.tobytes())
        if found:
            end = int(np.nonzero(np.abs(audio) > 327)[0][-1])
            delays.append((found[0].end_sample - end) / RATE * 1000)
    return {"n": len(delays), "p50": round(float(np.median(delays)), 1), "max": round(max(delays), 1)}


# --- 2. false wakes -----------------------------------------------------------------------------


LICENCES = ("GPL-3", "Apache-2.0", "GPL-2", "LGPL-2.1", "MPL-2.0", "GFDL-1.3", "Artistic", "CC0-1.0")


def licence_speech(minutes: float, seed: int = 11) -> np.ndarray:
    """espeak-ng and flite voices taking turns reading licence texts, `minutes` long, with
    pauses of 0.3-1.5 s between passages like dialogue on a television."""
    text = " ".join(
        (Path("/usr/share/common-licenses") / name).read_text(errors="ignore") for name in LICENCES
    )
    words = text.split()
    passages = [" ".join(words[i : i + 90]) for i in range(0, len(words), 90)]
    voices = (("espeak", "en-us"), ("flite", "slt"), ("espeak", "en-gb+m3"), ("flite", "awb"),
              ("espeak", "en-us+f3"), ("flite", "kal16"), ("espeak", "en-029"), ("flite", "rms"))
    rng = np.random.default_rng(seed)
    parts, total, need = [], 0, int(minutes * 60 * RATE)
    for i, passage in enumerate(passages):
        e, v = voices[i % len(voices)]
        parts += [ss.synth(passage, e, v, float(rng.choice(STRETCHES)), CACHE), ss.silence(rng.uniform(0.3, 1.5))]
        total += parts[-2].size + parts[-1].size
        if total >= need:
            return np.concatenate(parts)[:need]
    raise RuntimeError(f"the licence texts give only {total / RATE / 60:.1f} of {minutes} minutes")


def music(minutes: float, seed: int = 7) -> np.ndarray:
    """Music-like audio: chords with harmonics, a melody, and noise-burst percussion."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * RATE)
    out = np.zeros(n)
    pos = 0
    while pos < n:
        dur = int(rng.choice([0.25, 0.5, 0.75, 1.0]) * RATE)
        root = 110 * 2 ** (rng.integers(0, 24) / 12)
        t = np.arange(dur) / RATE
        env = np.minimum(1, t / 0.01) * np.exp(-t * rng.uniform(1.5, 6))
        note = sum(
            np.sin(2 * np.pi * root * r * h * t) / h**1.5
            for r in (1, 2 ** (4 / 12), 2 ** (7 / 12), 2 ** (rng.choice([10, 11, 12]) / 12))
            for h in (1, 2, 3)
        )
        mel = np.sin(2 * np.pi * root * 4 * 2 ** (rng.integers(0, 12) / 12) * t) * 0.5
        seg = (note + mel) * env
        if rng.random() < 0.5:
            seg[: int(0.03 * RATE)] += rng.standard_normal(int(0.03 * RATE))[: seg.size] * 2
        end = min(n, pos + dur)
        out[pos:end] += seg[: end - pos]
        pos = end
    return np.clip(out / np.abs(out).max() * 12000, -32768, 32767).astype(np.int16)


def false_wakes(engine: str, audio: np.ndarray) -> dict[str, Any]:
    shared: dict[str, Any] = {}
    detectors = {w: detector(engine, w, shared) for w in WORDS}
    data = audio.tobytes()
    found: dict[str, list[int]] = {w: [] for w in WORDS}
    step = 2 * RATE  # 1 s blocks: every detector sees the same hops in the same order
    t0 = time.process_time()
    for i in range(0, len(data), step):
        for w, d in detectors.items():
            found[w] += [x.end_sample for x in d.process(data[i : i + step])]
    hours = audio.size / RATE / 3600
    return {
        "hours": round(hours, 3),
        "per_hour": {w: round(len(v) / hours, 2) for w, v in found.items()},
        "count": {w: len(v) for w, v in found.items()},
        "at_s": {w: [round(s / RATE, 1) for s in v] for w, v in found.items()},
        "cpu_ms_per_audio_s_all_words": round((time.process_time() - t0) / (hours * 3600) * 1000, 2),
    }


# --- 3. CPU and latency -------------------------------------------------------------------------


def cpu_per_audio_second(audio: np.ndarray) -> dict[str, float]:
    """Process-CPU ms per audio second, fed in the uplink's 40 ms chunks."""
    chunks = [audio[i : i + 640].tobytes() for i in range(0, audio.size - 639, 640)]
    secs = len(chunks) * 0.04
    out: dict[str, float] = {}

    def meter(name: str, fn: Any) -> None:
        t0 = time.process_time()
        for c in chunks:
            fn(c)
        out[name] = round((time.process_time() - t0) / secs * 1000, 2)

    meter("micro okay_nabu", load_wake_word("okay_nabu").process)
    meter("openwakeword okay_nabu", detector("oww", "okay_nabu").process)
    meter("pymicro-vad", VadGate().process)
    for mode in ("always", "wake_word"):
        fe = ListenFrontend(FrontendConfig(mode=mode))  # type: ignore[arg-type]
        def step(c: bytes, fe: ListenFrontend = fe, clock: list[float] = [0.0]) -> None:  # noqa: B006
            clock[0] += 0.04
            fe.chunk(c, clock[0])

        meter(f"front end ({mode})", step)
    out["wake_word mode total (micro + front end)"] = round(
        out["micro okay_nabu"] + out["front end (wake_word)"], 2
    )
    out["always+vad total (vad + front end)"] = round(out["pymicro-vad"] + out["front end (always)"], 2)
    return out


def wake_to_upstream_ms(clip: np.ndarray) -> dict[str, float]:
    """Wall time from the chunk that completes the wake word arriving to its SendAudio action."""
    audio = np.concatenate([ss.silence(0.5), clip, ss.silence(1.0)])
    lat = []
    for _ in range(20):
        fe, det = ListenFrontend(FrontendConfig(mode="wake_word")), load_wake_word("okay_nabu")
        for i in range(0, audio.size, 640):
            pcm = audio[i : i + 640].tobytes()
            t0 = time.perf_counter()
            fe.chunk(pcm, (i + 640) / RATE)
            found = det.process(pcm)
            if found:
                fe.wake(found[0])
                lat.append((time.perf_counter() - t0) * 1000)
                break
    return {"n": len(lat), "p50": round(float(np.median(lat)), 3), "max": round(max(lat), 3)}


# --- 5. packages --------------------------------------------------------------------------------


def packages() -> dict[str, Any]:
    code = (
        "import importlib.metadata as m, pathlib, sys, time;"
        "t=time.perf_counter(); __import__(sys.argv[1]); dt=time.perf_counter()-t;"
        "d=m.distribution(sys.argv[2]); s=sum(pathlib.Path(d.locate_file(f)).stat().st_size "
        "for f in d.files if pathlib.Path(d.locate_file(f)).exists());"
        "print(round(dt*1000,1), round(s/1e6,2))"
    )
    out = {}
    for mod, dist in (("pymicro_wakeword", "pymicro-wakeword"), ("pymicro_features", "pymicro-features"),
                      ("pymicro_vad", "pymicro-vad"), ("pyopen_wakeword", "pyopen-wakeword")):
        r = subprocess.run([sys.executable, "-c", code, mod, dist], capture_output=True, text=True)
        ms, mb = r.stdout.split() if r.returncode == 0 else ("n/a", "n/a")
        out[dist] = {"import_ms": ms, "installed_mb": mb}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small set, for smoke tests")
    ap.add_argument("--fw-minutes", type=float, default=62.0, help="non-wake audio for false wakes")
    ap.add_argument("--oww-fw-minutes", type=float, default=20.0,
                    help="the part of it openWakeWord runs over (it costs ~35x more CPU)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    t_start = time.monotonic()
    doc: dict[str, Any] = {"packages": packages()}
    doc["set"] = run_set(("micro", "oww"), args.quick)
    doc["detection_delay_ms"] = detection_delay_ms(args.quick)
    speech_min = args.fw_minutes * 0.8
    corpus = np.concatenate([licence_speech(speech_min), music(args.fw_minutes - speech_min)])
    doc["false_wakes"] = {"micro": false_wakes("micro", corpus)}
    oww_part = int(args.oww_fw_minutes * 60 * RATE) // 2
    doc["false_wakes"]["oww"] = false_wakes("oww", np.concatenate([corpus[:oww_part], corpus[-oww_part:]]))
    doc["threshold_sweep"] = threshold_sweep(corpus, args.quick)
    doc["cpu_ms_per_audio_s"] = cpu_per_audio_second(corpus[: 60 * RATE])
    doc["wake_to_upstream_ms"] = wake_to_upstream_ms(ss.synth("okay nabu", "espeak", "en-us", 1.0, CACHE))
    doc["day"] = day(corpus, doc["false_wakes"]["micro"]["at_s"]["okay_nabu"])
    doc["elapsed_s"] = round(time.monotonic() - t_start, 1)
    print(json.dumps(doc, indent=1))
    print(markdown(doc))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))


def markdown(doc: dict[str, Any]) -> str:
    """The RESULTS.md tables of one run."""
    out = ["| engine / wake word | " + " | ".join(CONDITIONS) + " | outside a clip |", "|---" * 7 + "|"]
    for key, row in doc["set"].items():
        cells = [f"{row[c]['detected']}/{row[c]['of']}" for c in CONDITIONS]
        out.append(f"| {key} | " + " | ".join(cells) + f" | {sum(r['outside'] for r in row.values())} |")
    out += ["", "Clean set by synthesizer family (detected/of):", ""]
    for key, row in doc["set"].items():
        fams = ", ".join(f"{f} {a}/{b}" for f, (a, b) in row["clean"]["by_family"].items())
        out.append(f"- {key}: {fams}")
    out += ["", "| false wakes per hour | hours | " + " | ".join(WORDS) + " | CPU ms/audio s (4 words) |",
            "|---" * 7 + "|"]
    for engine, fw in doc["false_wakes"].items():
        cells = [f"{fw['per_hour'][w]} ({fw['count'][w]})" for w in WORDS]
        out.append(f"| {engine} | {fw['hours']} | " + " | ".join(cells) + f" | {fw['cpu_ms_per_audio_s_all_words']} |")
    out += ["", "| micro okay_nabu cut-off | clean | babble 20 dB | false wakes (per hour) |", "|---|---|---|---|"]
    out += [f"| {r['threshold']} | {r['clean']} | {r['babble 20 dB']} | {r['false_wakes']} ({r['per_hour']}) |"
            for r in doc["threshold_sweep"]]
    out += ["", "| CPU per audio second (40 ms chunks) | ms | % of a core |", "|---|---|---|"]
    out += [f"| {k} | {v} | {v / 10:.2f} |" for k, v in doc["cpu_ms_per_audio_s"].items()]
    d, w = doc["detection_delay_ms"], doc["wake_to_upstream_ms"]
    out += ["", f"Detection delay after the phrase's last voiced sample (micro, okay_nabu, clean): "
            f"p50 {d['p50']} ms, max {d['max']} ms (n={d['n']}). Wake -> first SendAudio (work in "
            f"the chunk that completes the wake word): p50 {w['p50']} ms, max {w['max']} ms.", ""]
    out += ["| scripted day, mode | sent s | s per hour | % of the day | quiet-room % sent | turns answered | spurious wakes |",
            "|---" * 7 + "|"]
    out += [f"| {r['mode']} | {r['sent_s']} | {r['sent_s_per_hour']} | {r['sent_pct_of_day']} | "
            f"{r['quiet_room_sent_pct']} | {r['turns_answered']} | {r['spurious_wakes']} |" for r in doc["day"]]
    out += ["", "| package | installed MB | cold import ms |", "|---|---|---|"]
    out += [f"| {k} | {v['installed_mb']} | {v['import_ms']} |" for k, v in doc["packages"].items()]
    return "\n".join(out) + "\n"


def day(corpus: np.ndarray, wakes_at_s: list[float]) -> list[dict[str, Any]]:
    """Per-step VAD verdicts of a quiet room and of the TV corpus, then the scripted day."""
    step = listen_day.STEP

    def verdicts(audio: np.ndarray) -> np.ndarray:
        gate = VadGate()
        return np.array([gate.process(audio[i : i + step].tobytes()) for i in range(0, audio.size - step + 1, step)])

    rng = np.random.default_rng(3)
    t = np.arange(10 * 60 * RATE) / RATE
    room = rng.standard_normal(t.size) * 40 + np.sin(2 * np.pi * 50 * t) * 30  # -55 dBFS hiss + hum
    for k in rng.integers(0, t.size - 800, 20):  # doors, cups: 20 clicks in 10 minutes
        room[k : k + 800] += rng.standard_normal(800) * 3000 * np.exp(-np.arange(800) / 120)
    quiet = verdicts(np.clip(room, -32768, 32767).astype(np.int16))
    tv = verdicts(corpus)
    tv_wakes = {int(s / listen_day.STEP_S) for s in wakes_at_s}
    rows = []
    for mode, vad in (("always", False), ("always", True), ("wake_word", False), ("push_to_talk", False)):
        rows.append(listen_day.simulate(mode, vad, quiet, tv, tv_wakes).row())
    return rows


if __name__ == "__main__":
    main()
