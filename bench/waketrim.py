"""Where a manual wake turn starts (agent/listen/waketrim.py): wake word, gap, question.

    python bench/waketrim.py [--gaps 0,0.05,0.1,0.15,0.2,0.3,0.6,1.0] [--preroll-ms 400] [--set min_gap_ms=20]

Every voice of bench/speechsynth.py that the default wake word ("okay nabu") detects says the
wake word; after `gap` seconds of silence the emulator's voice says a phrasebook question. The
real detector gives D; the WebRTC VAD and the rule (TrimConfig defaults) give the cut. Reported
per gap: how many cuts kept some of the wake word's speech (and how much at most), how many lost
some of the question (and how much at most), and how many trimmed turns the emulator's
phrasebook ASR recognizes as the question (it rejects a turn that starts with "…bu"). The wake
word's end is the end of its last 10 ms frame within 35 dB of its loudest (flite and festival
clips end in a quiet tail). Synthesized speech is cached in $TMPDIR/voice-agent-waketrim-speech.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import speechsynth  # noqa: E402

from agent.emulator.recognizer import default_recognizer  # noqa: E402
from agent.emulator.speech import synthesize  # noqa: E402
from agent.listen.turn_vad import SpeechFrames  # noqa: E402
from agent.listen.waketrim import TrimConfig, WakeTrim  # noqa: E402
from agent.listen.wakeword import load_wake_word  # noqa: E402

RATE = 16000
QUESTIONS = ("What time is it?", "Set a timer for five minutes.", "How are you doing?")


def speech_end(x: np.ndarray) -> int:
    """End (sample) of the last 10 ms frame within 35 dB of the loudest frame."""
    n = len(x) // 160
    e = 10 * np.log10((x[: n * 160].astype(float).reshape(n, 160) ** 2).mean(1) + 1e-9)
    return int((np.flatnonzero(e > e.max() - 35)[-1] + 1) * 160)


def trim(x: np.ndarray, wake_sample: int, preroll: int, cfg: TrimConfig) -> tuple[int, str] | None:
    start = max(0, wake_sample - preroll)
    rule, vad, f = WakeTrim(start, wake_sample, cfg), SpeechFrames("webrtc"), cfg.frame_samples
    for i in range(start, len(x) - f + 1, f):
        cut = rule.feed(vad(x[i : i + f].tobytes()))
        if cut is not None:
            return cut.sample, cut.reason
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaps", default="0,0.05,0.1,0.15,0.2,0.3,0.6,1.0")
    ap.add_argument("--preroll-ms", type=int, default=400)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=MS",
                    help="override a TrimConfig field, e.g. --set min_gap_ms=20")
    args = ap.parse_args()
    cfg = TrimConfig(**{k: int(v) for k, v in (s.split("=", 1) for s in args.set)})
    preroll = args.preroll_ms * RATE // 1000
    cache = Path(tempfile.gettempdir()) / "voice-agent-waketrim-speech"
    questions = [(q, synthesize(q, RATE)) for q in QUESTIONS]
    print(f"TrimConfig {cfg}; preroll {args.preroll_ms} ms")
    print("gap_ms  turns  wake_kept(max ms)  question_lost(max ms)  run_on  asr_ok  cut-D p50 ms")
    for gap in (float(g) for g in args.gaps.split(",")):
        kept, lost, run_on, ok, n, delays = [], [], 0, 0, 0, []
        for engine, voice in speechsynth.ALL_VOICES:
            wake = speechsynth.synth("okay nabu", engine, voice, 1.0, cache)
            w_end = speech_end(wake)
            wake = wake[:w_end]
            for text, q in questions:
                lead, gap_n = np.zeros(RATE // 2, np.int16), int(gap * RATE)
                x = np.concatenate([lead, wake, np.zeros(gap_n, np.int16), q, np.zeros(RATE, np.int16)])
                dets = load_wake_word("okay_nabu").process(x.tobytes())
                if not dets:
                    continue
                n += 1
                d = dets[0].end_sample
                got = trim(x, d, preroll, cfg)
                if got is None:
                    continue
                cut, reason = got
                run_on += reason == "run_on"
                w, qs = len(lead) + len(wake), len(lead) + len(wake) + gap_n
                delays.append((cut - d) / 16)
                if cut < w:
                    kept.append((w - cut) / 16)
                if cut > qs:
                    lost.append((cut - qs) / 16)
                ok += default_recognizer().recognize(x[cut : qs + len(q) + RATE // 4]) == text
        mx = lambda v: f"{len(v):3d} ({max(v):4.0f})" if v else "  0 (   -)"  # noqa: E731
        p50 = float(np.median(delays)) if delays else float("nan")
        print(f"{gap * 1000:6.0f}  {n:5d}  {mx(kept):>17s}  {mx(lost):>21s}  {run_on:6d}  {ok:3d}/{n:<3d} {p50:8.0f}")


if __name__ == "__main__":
    main()
