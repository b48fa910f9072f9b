"""`voice-agent demo`: the whole daemon against the built-in emulator, offline, in one process.

A scripted "user" (spoken questions rendered by the emulator's speech engine) is played into the
daemon through the file microphone; what the speaker would play is written to a WAV (or played
through the sound card with `--speakers`). Each turn is printed as it completes. The question
timeline leaves room for each answer, because the default echo defence (half-duplex) closes the
microphone while the assistant speaks, exactly as on a device.

Then the tools (SPEC §11): a third turn, asked as text, sets a timer through the model's
function call; the timer rings a few seconds later (earcon and "The 3 second timer is done.")
and is silenced the way `voice-agent interrupt` silences it.
`--wake-word` shows the listening front end instead (agent/demo_wake.py): background talk is
ignored, the wake word opens the turn.

`--mode pipeline` runs the same user through realtime ASR → LLM → CosyVoice, speaking with a
CosyVoice voice cloned (by the emulator) from a generated sample, and also prints the LLM's
first-token and the synthesis' first-audio latency of each turn.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent.account import DashScopeAccount
from agent.audio.wav import write_wav
from agent.config import Settings, settings_from_dict
from agent.daemon import Daemon
from agent.demo_wake import QUESTION as WAKE_QUESTION
from agent.demo_wake import script_wake_word
from agent.emulator.answers import answer_for
from agent.emulator.context import EmulatorOptions
from agent.emulator.cosyvoice_text import split_sentences
from agent.emulator.server import Emulator
from agent.emulator.speech import synthesize
from agent.logs import setup_logging
from agent.modes import Turn
from agent.statedir import open_state_dir
from agent.voices.ensure import ensure_voice

QUESTIONS = ("What's the weather like today?", "Tell me a joke.")
VOICE_TEXT = (
    "Hello, this is the voice of the demo kiosk. I speak clearly and calmly, "
    "so that everybody in the lobby can understand what I say. "
    "Ask me about the weather, the time, or anything else you would like to know."
)
LEAD_IN_S = 0.8
# After each question: the server's end-of-speech silence, the first audio delay, the answer
# itself and a pause before the next question.
TURN_GAP_S = 2.5
TURN_TIMEOUT_S = 45.0
TIMER_ASK = "Set a timer for three seconds."


def answer_seconds(question: str, mode: str = "omni") -> float:
    """How long the emulator's spoken answer lasts (CosyVoice renders sentence by sentence)."""
    answer = answer_for(question)
    if mode == "omni":
        return len(synthesize(answer, 24000)) / 24000
    sentences, rest = split_sentences(answer)
    return sum(len(synthesize(s.strip(), 24000)) for s in [*sentences, rest] if s.strip()) / 24000


def script_questions(path: Path, questions: tuple[str, ...] = QUESTIONS, mode: str = "omni") -> None:
    """Lay the questions out on a 16 kHz timeline with room for each answer to play."""
    rate = 16000
    parts = [np.zeros(int(LEAD_IN_S * rate), np.int16)]
    for q in questions:
        parts.append(synthesize(q, rate))
        answer_s = answer_seconds(q, mode)
        parts.append(np.zeros(int((answer_s + TURN_GAP_S) * rate), np.int16))
    write_wav(path, np.concatenate(parts), rate)


def demo_settings(
    base_url: str, api_key: str, work: Path, output: str, speakers: bool, mode: str = "omni",
    wake_word: bool = False,
) -> Settings:
    sample = work / "voice-sample.wav"
    voice = synthesize(VOICE_TEXT, 24000)
    write_wav(sample, np.concatenate([voice, np.zeros(12000, np.int16)]), 24000)
    question = work / "question.wav"
    if wake_word:
        talk_s, voice_name = script_wake_word(question, answer_seconds(WAKE_QUESTION, mode))
        print(f"voice-agent demo: {talk_s:.1f} s of background talk ({voice_name}), then "
              f"“okay nabu, {WAKE_QUESTION}”")
    else:
        script_questions(question, mode=mode)
    out = {"backend": "sounddevice"} if speakers else {"backend": "file", "path": output}
    # omni speaks with a Qwen voice cloned for the Omni model, pipeline with a CosyVoice clone.
    family = "qwen" if mode == "omni" else "cosyvoice"
    # A local CosyVoice sample needs the temporary upload, which only Beijing (cn) offers.
    region = "cn" if family == "cosyvoice" else "intl"
    return settings_from_dict(
        {
            "mode": mode,
            "dashscope": {"http_url": base_url, "api_key": api_key, "region": region},
            "voice": {"family": family, "name": "demo", "sample": str(sample), "language": "en"},
            "audio": {"input": {"backend": "file", "path": str(question)}, "output": out},
            "state_dir": str(work / "state"),
            "log": {"level": "warning", "transcripts": False},
            "listen": {"mode": "wake_word" if wake_word else "always"},
        },
        "<demo>",
    )


def _print_turn(n: int, turn: Turn) -> None:
    latency = f"{turn.latency_ms:.0f} ms" if turn.latency_ms is not None else "n/a"
    print(f"turn {n}: heard    “{turn.heard}”")
    print(f"        answered “{turn.answered}”")
    print(f"        latency  {latency} (end of speech → first answer sample at the speaker)")
    if turn.llm_first_token_ms is not None or turn.synthesis_first_audio_ms is not None:
        def ms(v: float | None) -> str:
            return f"{v:.0f} ms" if v is not None else "n/a"

        print(f"        LLM first token {ms(turn.llm_first_token_ms)}, "
              f"synthesis first audio {ms(turn.synthesis_first_audio_ms)}")
    sys.stdout.flush()


async def _enroll_ahead(settings: Settings, api_key: str) -> None:
    """Clone the CosyVoice voice before the scripted user starts talking.

    A CosyVoice clone is DEPLOYING for a moment, longer than the script's lead-in; on a device
    `voice-agent voices ensure` does this once at installation. The daemon then finds the voice
    in its cache and only verifies it.
    """
    result = await ensure_voice(settings, DashScopeAccount.from_settings(settings, api_key),
                                open_state_dir(settings), log=logging.getLogger("voice-agent.voices"))
    print(f"voice-agent demo: CosyVoice voice {result.voice_id} cloned from a generated sample")


async def run_demo(
    output: str = "demo-output.wav", speakers: bool = False, mode: str = "omni",
    wake_word: bool = False,
) -> int:
    setup_logging("warning")
    emulator = Emulator(options=EmulatorOptions(enroll_delay_s=0.3))
    base_url = await emulator.start()
    started = time.monotonic()
    print(f"voice-agent demo ({mode} mode): emulator at {base_url}; "
          f"output → {'the sound card' if speakers else output}")
    with tempfile.TemporaryDirectory(prefix="voice-agent-demo-") as tmp:
        settings = demo_settings(base_url, emulator.api_key, Path(tmp), output, speakers, mode,
                                 wake_word)
        expected = 1 if wake_word else len(QUESTIONS)
        if mode == "pipeline":
            await _enroll_ahead(settings, emulator.api_key)
        turns: asyncio.Queue[Turn] = asyncio.Queue()
        daemon = Daemon(settings, control=False, turn_listener=turns)
        task = asyncio.create_task(daemon.run(), name="daemon")
        got: list[Turn] = []
        try:
            while len(got) < expected:
                waiter = asyncio.create_task(turns.get())
                done, _ = await asyncio.wait({waiter, task}, timeout=TURN_TIMEOUT_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if waiter not in done:
                    waiter.cancel()
                    why = daemon.status.last_error or "no answer in time"
                    print(f"voice-agent demo: turn {len(got) + 1} failed: {why}", file=sys.stderr)
                    break
                got.append(waiter.result())
                _print_turn(len(got), got[-1])
                if wake_word:
                    t0 = daemon.engine.timeline_start if daemon.engine is not None else None
                    heard_s = time.monotonic() - t0 if t0 is not None else float("nan")
                    _print_listen(daemon.status.as_dict()["listen"], heard_s)
            timer_ok = (not wake_word and len(got) == expected
                        and await _timer_phase(daemon, turns, len(got) + 1))
        finally:
            daemon.request_stop()
            code = await task
            await emulator.stop()
    latencies = [t.latency_ms for t in got if t.latency_ms is not None]
    summary = f"{len(got)}/{expected} turns answered in {time.monotonic() - started:.1f} s"
    if latencies:
        summary += f"; latency median {float(np.median(latencies)):.0f} ms"
    if not wake_word:
        summary += "; a timer was set through the timer tool and rang" if timer_ok else "; the timer did not ring"
    if not speakers:
        summary += f"; speaker output written to {output}"
    print(summary)
    return code if len(got) == expected and (timer_ok or wake_word) else 1


async def _timer_phase(daemon: Daemon, turns: asyncio.Queue[Turn], n: int) -> bool:
    """Ask for a timer (the model calls the `timer` tool), then wait for it to ring once."""
    if daemon.mode is None:
        return False
    print(f"turn {n}: asked as text “{TIMER_ASK}” (the model calls the timer tool)")
    asked = time.monotonic()
    await daemon.mode.ask(TIMER_ASK)
    try:
        turn = await asyncio.wait_for(turns.get(), TURN_TIMEOUT_S)
        _print_turn(n, turn)
        ringer = daemon.ringer
        await asyncio.wait_for(_until(lambda: bool(ringer.ringing)), TURN_TIMEOUT_S)
        print(f"timer:  rang {time.monotonic() - asked:.1f} s after it was asked for: the timer "
              "earcon, then “The 3 second timer is done.”")
        await asyncio.wait_for(_until(lambda: ringer.lines_spoken >= 1), TURN_TIMEOUT_S)
    except asyncio.TimeoutError:
        print("voice-agent demo: the timer turn failed: " + (daemon.status.last_error or "no answer"),
              file=sys.stderr)
        return False
    ringer.stop()
    print("timer:  silenced, as `voice-agent interrupt` does (it rings for up to 60 s otherwise)")
    sys.stdout.flush()
    return True


async def _until(pred: Callable[[], bool]) -> None:
    while not pred():
        await asyncio.sleep(0.05)


def _print_listen(listen: dict[str, object], heard_s: float) -> None:
    print(f"        listen   {listen['wakes']} wake word(s) heard; {listen['sent_s']} s of the "
          f"{heard_s:.1f} s the microphone heard went upstream")


def demo_command(output: str, speakers: bool, mode: str = "omni", wake_word: bool = False) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    return asyncio.run(run_demo(output, speakers, mode, wake_word))
