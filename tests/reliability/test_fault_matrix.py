"""The fault matrix (SPEC §8, §9): every emulator fault, in omni and pipeline mode.

For every case the same four promises are checked, against the real daemon:

1. it keeps running (its task never ends);
2. while the fault is in force the status says what is wrong (`last_error`, and for a lost
   session `connected: false` and state `reconnecting`/`error`);
3. it recovers by itself once the fault clears (no restart, no operator);
4. the next turn is answered completely.

Each case also measures detection and recovery times; they are printed as a table at the end of
the run (conftest.py) and quoted in docs/reliability.md. Timeouts that would make a case take
minutes are shortened the way an operator could (module constants, documented in the `note`).

A case's `kind` says how the fault comes and goes:

- `once`: a one-shot fault on the first connection of its kind (it fires by itself, or when the
  `trigger` question is asked); it is "cleared" the moment the daemon noticed it;
- `hold`: in force from the start (a device booting into an outage) until `HOLD_S` after the
  status reported it, then cleared through the emulator's fault API;
- `switch`: switched on while the daemon serves, then cleared (LLM errors, which only show on a
  turn);
- `refused` / `dns`: nothing listens on the port / the name does not resolve, until the
  emulator starts there / the name resolves again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.daemon import DaemonTimings
from agent.pipeline import PipelineTimings
from agent.realtime.connection import RealtimeTimings
from agent.realtime.session import SessionTimings
from agent.tts.connection import TtsTimings
from tests.support.recovery import RECOVERY, RecoveryRow
from tests.support.rig import BYE, JOKE, Rig, free_port, rig, settings_for
from tests.support.samples import write_voice_sample

HOLD_S = 1.0  # how long a `hold` fault stays after the status reported it
FAKE_HOST = "dashscope.reliability.invalid"
SHORT_AUTH = "auth backoff 1 s (production: minutes)"


@dataclass(frozen=True)
class Case:
    id: str
    mode: str  # omni | pipeline
    kind: str  # once | hold | switch | refused | dns
    fault: str  # what the table calls it
    spec: str = ""  # emulator fault spec
    expect: str = ""  # a phrase the status' last_error must contain while the fault is in force
    disconnects: bool = True  # the session is lost: connected goes false
    input: str = "text"  # pipeline.input
    family: str = "preset"  # voice.family (qwen / cosyvoice: enrollment is exercised)
    trigger: bool = False  # the fault needs a question in flight
    spoken: bool = False  # prove recovery with a spoken question (the ASR path)
    tolerated: bool = False  # nothing is wrong: the daemon shrugs it off and answers
    evidence: str = ""  # a log line proving a tolerated fault did happen
    note: str = ""

    @property
    def status_note(self) -> str:
        return "(tolerated)" if self.tolerated else f"`{self.expect}`"


OMNI = "omni"
PIPE = "pipeline"
CASES = [
    # --- omni: the Qwen-Omni-Realtime session ------------------------------------------------
    Case("omni-drop-mid-answer", OMNI, "once", "connection dropped mid-answer",
         "drop_after=8@realtime*once", "realtime session lost", trigger=True),
    Case("omni-error-event", OMNI, "once", "`error` event mid-answer",
         "error_event@realtime*once", "server error", trigger=True),
    Case("omni-task-failed", OMNI, "once", "fatal error at session start (task-failed)",
         "task_failed@realtime*once", "realtime session lost"),
    Case("omni-half-open", OMNI, "once", "half-open: silent, no pongs",
         "half_open=2@realtime*once", "keepalive ping timeout", note="ping 0.5 s + timeout 1 s"),
    Case("omni-malformed", OMNI, "once", "malformed JSON frame",
         "malformed=2@realtime*once", "malformed JSON"),
    Case("omni-binary", OMNI, "once", "binary frame on the realtime socket",
         "binary_frame=2@realtime*once", "unexpected binary frame"),
    Case("omni-oversized", OMNI, "once", "oversized message (5 MB > 4 MiB limit)",
         "oversized=5000000@realtime*once", "message too big", trigger=True),
    Case("omni-oversized-within-limit", OMNI, "once", "oversized message (2 MiB, under the limit)",
         "oversized@realtime*once", trigger=True, disconnects=False, tolerated=True),
    Case("omni-stall", OMNI, "once", "slow-start stall (no session.created)",
         "stall=4s@realtime*once", "no session.created", note="session start timeout 1.5 s"),
    Case("omni-refused", OMNI, "refused", "connection refused", expect="Connect call failed"),
    Case("omni-dns", OMNI, "dns", "DNS failure", expect="Name or service not known"),
    Case("omni-upgrade-401", OMNI, "hold", "HTTP 401 on the WebSocket upgrade",
         "http=401@realtime", "authentication failed", note=SHORT_AUTH),
    Case("omni-upgrade-500", OMNI, "hold", "HTTP 500 on the WebSocket upgrade",
         "http=500@realtime", "HTTP 500"),
    Case("omni-enroll-401", OMNI, "hold", "HTTP 401 on enrollment",
         "http=401@customization", "voice enrollment", family="qwen", disconnects=False,
         note=SHORT_AUTH),
    Case("omni-enroll-429", OMNI, "hold", "HTTP 429 on enrollment",
         "http=429@customization", "voice enrollment", family="qwen", disconnects=False),
    Case("omni-enroll-500", OMNI, "hold", "HTTP 500 on enrollment",
         "http=500@customization", "voice enrollment", family="qwen", disconnects=False),
    # --- pipeline: realtime ASR ----------------------------------------------------------------
    Case("asr-drop", PIPE, "once", "ASR connection dropped as the user speaks",
         "drop_after=2@realtime*once", "speech recognition session lost", input="mic", spoken=True,
         trigger=True, note="the cut question's tail is answered first; then 1 s of quiet"),
    Case("asr-error-event", PIPE, "once", "ASR `error` event",
         "error_event=2@realtime*once", "ASR server error", input="mic", spoken=True),
    Case("asr-task-failed", PIPE, "once", "ASR fatal error at session start",
         "task_failed@realtime*once", "speech recognition session lost", input="mic",
         spoken=True),
    Case("asr-half-open", PIPE, "once", "ASR half-open: silent, no pongs",
         "half_open=2@realtime*once", "keepalive ping timeout", input="mic", spoken=True,
         note="ping 0.5 s + timeout 1 s"),
    Case("asr-malformed", PIPE, "once", "ASR malformed JSON frame",
         "malformed=2@realtime*once", "malformed JSON", input="mic", spoken=True),
    Case("asr-binary", PIPE, "once", "ASR binary frame",
         "binary_frame=2@realtime*once", "unexpected binary frame", input="mic", spoken=True),
    Case("asr-stall", PIPE, "once", "ASR slow-start stall",
         "stall=4s@realtime*once", "no session.created", input="mic", spoken=True,
         note="session start timeout 1.5 s"),
    Case("asr-upgrade-401", PIPE, "hold", "ASR HTTP 401 on the upgrade",
         "http=401@realtime", "authentication failed", input="mic", spoken=True, note=SHORT_AUTH),
    Case("asr-upgrade-500", PIPE, "hold", "ASR HTTP 500 on the upgrade",
         "http=500@realtime", "HTTP 500", input="mic", spoken=True),
    # --- pipeline: CosyVoice synthesis -----------------------------------------------------------
    Case("tts-drop-mid-answer", PIPE, "once", "synthesis connection dropped mid-answer",
         "drop_after=4@inference*once", "synthesis failed", trigger=True, disconnects=False),
    Case("tts-task-failed", PIPE, "once", "synthesis task-failed",
         "task_failed@inference*once", "synthesis failed", trigger=True, disconnects=False),
    Case("tts-error-event", PIPE, "once", "synthesis task-failed mid-answer",
         "error_event=4@inference*once", "synthesis failed", trigger=True, disconnects=False),
    Case("tts-half-open", PIPE, "once", "synthesis half-open after task-started",
         "half_open=1@inference*once", "synthesis failed", trigger=True, disconnects=False,
         note="stall timeout 1.5 s"),
    Case("tts-malformed", PIPE, "once", "synthesis malformed JSON frame",
         "malformed=1@inference*once", trigger=True, disconnects=False, tolerated=True,
         evidence="ignoring malformed frame"),
    Case("tts-binary", PIPE, "once", "synthesis stray binary frame",
         "binary_frame=1@inference*once", trigger=True, disconnects=False, tolerated=True),
    Case("tts-oversized", PIPE, "once", "synthesis oversized message (2 MiB > 1 MiB limit)",
         "oversized@inference*once", "synthesis failed", trigger=True, disconnects=False),
    Case("tts-stall", PIPE, "once", "synthesis slow-start stall",
         "stall=3s@inference*once", trigger=True, disconnects=False, tolerated=True,
         evidence="no task-started within", note="start timeout 1 s: task restarted on a new socket"),
    Case("tts-upgrade-401", PIPE, "hold", "synthesis HTTP 401 on the upgrade",
         "http=401@inference", "speech synthesis: authentication failed", disconnects=False,
         note=SHORT_AUTH),
    Case("tts-upgrade-500", PIPE, "hold", "synthesis HTTP 500 on the upgrade",
         "http=500@inference", "speech synthesis unavailable", disconnects=False),
    # --- pipeline: LLM ---------------------------------------------------------------------------
    Case("llm-401", PIPE, "switch", "LLM HTTP 401", "http=401@llm", "LLM authentication failed",
         disconnects=False, note=SHORT_AUTH),
    Case("llm-429", PIPE, "switch", "LLM HTTP 429", "http=429@llm", "LLM throttled",
         disconnects=False),
    Case("llm-500", PIPE, "switch", "LLM HTTP 500", "http=500@llm", "LLM failed",
         disconnects=False),
    # --- pipeline: enrollment and the network ------------------------------------------------------
    Case("pipeline-enroll-401", PIPE, "hold", "HTTP 401 on enrollment",
         "http=401@customization", "voice enrollment", family="cosyvoice", disconnects=False,
         note=SHORT_AUTH),
    Case("pipeline-enroll-429", PIPE, "hold", "HTTP 429 on enrollment",
         "http=429@customization", "voice enrollment", family="cosyvoice", disconnects=False),
    Case("pipeline-enroll-500", PIPE, "hold", "HTTP 500 on enrollment",
         "http=500@customization", "voice enrollment", family="cosyvoice", disconnects=False),
    Case("pipeline-refused", PIPE, "refused", "connection refused (ASR, synthesis, LLM)",
         expect="Connect call failed", input="mic", spoken=True),
    Case("pipeline-dns", PIPE, "dns", "DNS failure (ASR, synthesis, LLM)",
         expect="Name or service not known", input="mic", spoken=True),
]


# Detection and auth backoffs an operator could set; everything else as shipped.
SHORT = DaemonTimings(
    auth_retry_s=(1.0, 1.0),
    realtime=RealtimeTimings(ping_interval_s=0.5, ping_timeout_s=1.0, session_start_timeout_s=1.5),
    session=SessionTimings(auth_backoff_s=(1.0, 1.0)),
    pipeline=PipelineTimings(llm_auth_backoff_s=(1.0, 1.0)),
    tts=TtsTimings(start_timeout_s=1.0, stall_timeout_s=1.5, auth_backoff_s=(1.0, 1.0)),
)


def service_up(r: Rig, case: Case) -> bool:
    """The service the case broke works again (as far as connection state shows)."""
    mode = r.daemon.mode
    if mode is None:
        return False
    if case.family != "preset" and r.daemon.status.voice_fallback:
        return False  # serving with the fallback voice; the configured voice is not back yet
    if case.mode == OMNI:
        return r.daemon.status.connected
    tts_up = bool(mode.tts.connected)
    return tts_up and (case.input != "mic" or r.daemon.status.connected)


async def answer(r: Rig, case: Case, timeout: float = 20.0) -> tuple[float, int]:
    # After a fault that cut the user's words, the user waits a second before asking again.
    quiet = 1.0 if case.spoken and case.trigger else 0.0
    return await r.answer_soon(BYE, timeout, spoken=case.spoken, quiet_s=quiet)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_the_daemon_survives_reports_and_recovers(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "agent.tts")
    sample = write_voice_sample(tmp_path / "me.wav") if case.family != "preset" else None
    port = free_port() if case.kind in ("refused", "dns") else None
    resolves = {"ok": False}
    if case.kind == "dns":
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
            if host == FAKE_HOST:
                if not resolves["ok"]:
                    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
                host = "127.0.0.1"
            return real(host, *args, **kw)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    def settings(base: str) -> Any:
        if case.kind == "dns":
            base = f"http://{FAKE_HOST}:{port}"
        return settings_for(case.mode, base, tmp_path, input=case.input, family=case.family,
                            sample=sample)

    initial = case.spec if case.kind in ("once", "hold") else None
    async with rig(tmp_path, settings, faults=initial, port=port,
                   start_emulator=case.kind != "refused", timings=SHORT) as r:
        t_fault = r.started
        if case.kind == "switch" or case.trigger:
            await r.until(lambda: service_up(r, case), 20, "the first connection")
            if case.kind == "switch":
                r.faults(case.spec)
            t_fault = time.monotonic()
            if case.tolerated:
                pass  # the question below meets the fault itself
            elif case.spoken:  # the user starts talking; the question itself may be lost
                ask = asyncio.create_task(r.mic.say_and_wait(JOKE))
            else:
                ask = asyncio.create_task(r.mode.ask(JOKE))

        if case.tolerated:
            # The very turn that meets the fault is answered completely, and nothing is reported.
            t_answer = await r.answer(JOKE)
            assert r.status["last_error"] is None and r.status["connected"]
            assert case.evidence in caplog.text, "the fault did happen"
            row = RecoveryRow(case.mode, case.fault, "no error (tolerated)", None, None,
                              t_answer - t_fault, case.note)
        else:
            # While the fault is in force: the status says what is wrong.
            expect = case.expect.lower()
            await r.until(lambda: expect in (r.daemon.status.last_error or "").lower(), 20,
                          f"status mentioning {case.expect!r}")
            shown = r.first(lambda s: expect in (s.last_error or "").lower(), t_fault)
            assert shown is not None
            t_detect = shown.t
            if case.disconnects:
                lost = r.first(lambda s: not s.connected and s.state in ("reconnecting", "error"),
                               t_fault)
                assert lost is not None, "a lost session shows as not connected, reconnecting"
            assert r.alive()

            # Clear the fault.
            if case.kind in ("hold",):
                await asyncio.sleep(HOLD_S)
                t_clear = r.faults(None)
            elif case.kind == "switch":
                await ask
                t_clear = r.faults(None)
            elif case.kind == "refused":
                await asyncio.sleep(HOLD_S)
                await r.emulator.start(port=port)
                t_clear = time.monotonic()
            elif case.kind == "dns":
                await asyncio.sleep(HOLD_S)
                resolves["ok"] = True
                t_clear = time.monotonic()
            else:  # once: gone as soon as it fired
                if case.trigger:
                    await ask
                t_clear = t_detect

            t_up = await r.until(lambda: service_up(r, case), 30, "recovery")
            t_answer, _ = await answer(r, case)
            final = r.status
            assert final["last_error"] is None, "recovery clears the error"
            if case.mode == OMNI or case.input == "mic":
                assert final["connected"]
            row = RecoveryRow(case.mode, case.fault, f"{shown.state}, connected={shown.connected}: "
                              f"{_excerpt(shown.last_error or '', case.expect)}",
                              t_detect - t_fault, max(0.0, t_up - t_clear), t_answer - t_clear,
                              case.note)
        assert r.alive(), "the daemon is still running"
        assert await r.stop() == 0
    RECOVERY.append(row)


def _excerpt(text: str, phrase: str, width: int = 70) -> str:
    """The part of a status message around `phrase`, for the table."""
    i = max(0, text.lower().find(phrase.lower()))
    start = max(0, i - 20)
    cut = text[start : start + width].replace("|", "/").replace("`", "'")
    return ("…" if start else "") + cut + ("…" if start + width < len(text) else "")
