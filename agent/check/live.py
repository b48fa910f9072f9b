"""`voice-agent check --live [--record FILE]`: a short, cheap conformance probe of the real service.

Nothing in the test suite reaches DashScope, and the emulator was written from the same reading of
the documents as the client, so only the real service can say whether that reading holds. This
probe asks it, at a cost of a few cents, the questions the daemon depends on (SPEC §13):

- key and region: one read-only voice-list call;
- a realtime session (omni model, or the ASR model in pipeline mode): `session.update` as the
  daemon sends it, and `session.updated` checked field by field with `verify_session`;
- a short CosyVoice synthesis (the announcement / pipeline voice), a short LLM stream (pipeline);
- function calling, where tools are configured.

Each row says what was asked and what came back; a mismatch names the field. `--record` writes
every frame to a redacted JSON-lines log (`agent.check.wirelog`) for a bug report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection

from agent.account import DashScopeAccount
from agent.announce import announcement_voice
from agent.check.live_tools import probe_function_calling
from agent.check.result import KEY_REJECTED_FIX, TIMEOUT_S, CheckResult, failed, passed, skipped
from agent.check.service import check_key_accepted, service_client
from agent.check.wirelog import WireLog
from agent.config import ConfigError, Settings
from agent.llm import LLMClient
from agent.realtime import protocol as p
from agent.realtime.connection import AuthFailed, ConnectFailed, open_socket
from agent.realtime.verify import lookup, verify_session
from agent.secrets import redact, resolve_api_key
from agent.statedir import resolve_state_dir
from agent.tts import protocol as tts
from agent.voices import cache
from agent.voices.plan import plan_voice

PROBE_TEXT = "Hello."
LLM_PROMPT = "Reply with the single word: ready."
MISMATCH_FIX = ("the service runs with another configuration than the daemon asks for; "
                "run again with --record FILE and attach FILE to a bug report")


class _Socket:
    """A WebSocket whose every frame also goes to the wire log."""

    def __init__(self, ws: ClientConnection, wire: WireLog, channel: str) -> None:
        self.ws, self.wire, self.channel = ws, wire, channel

    async def send(self, frame: str | dict[str, Any]) -> None:
        text = p.encode(frame) if isinstance(frame, dict) else frame
        self.wire.record(self.channel, "send", text)
        await self.ws.send(text)

    async def recv(self, deadline: float) -> str | bytes:
        frame = await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - time.monotonic()))
        self.wire.record(self.channel, "recv", frame)
        return frame

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2.0)


async def _open(url: str, account: DashScopeAccount, wire: WireLog, channel: str) -> _Socket:
    wire.opened(channel, url, account.ws_headers({"user-agent": "voice-agent"}))
    return _Socket(await open_socket(url, account), wire, channel)


# --- the rows ------------------------------------------------------------------------------------


async def probe_key(http: aiohttp.ClientSession, account: DashScopeAccount, region: str,
                    timeout: float) -> CheckResult:
    r = await check_key_accepted(service_client(http, account, timeout), None)
    r.name = "key and region"
    r.detail = f"region {region}: {r.detail}"
    return r


def enrolled_voice(settings: Settings) -> str | None:
    """The voice id the daemon would use from its cache (read only: a probe moves no files)."""
    try:
        plan = plan_voice(settings)
        path = resolve_state_dir(settings)[0] / cache.FILENAME
        doc = json.loads(path.read_text(encoding="utf-8"))
        for raw in doc.get("entries", []):
            entry = cache.CacheEntry.from_json(raw)
            if entry.key == plan.key and entry.voice_id and entry.state != cache.PENDING:
                return entry.voice_id
    except (OSError, ValueError, TypeError, AttributeError, ConfigError):
        pass
    return None


def _realtime_asked(settings: Settings) -> tuple[str, str, dict[str, Any]]:
    """(row name, model, the session.update the daemon sends, with the voice it would use)."""
    if settings.mode == "pipeline":
        return "ASR session", settings.pipeline.asr_model, p.asr_session_update()
    family = settings.voice.family
    voice = settings.voice.preset if family == "preset" else enrolled_voice(settings) or settings.voice.preset
    return "realtime session", settings.omni.model, p.session_update(settings.omni, voice)


def _summary(asked: dict[str, Any], got: dict[str, Any]) -> str:
    """What was asked and echoed, for a passing row."""
    parts = []
    for name in ("voice", "input_audio_format", "output_audio_format", "sample_rate"):
        if name in asked:
            parts.append(f"{name} {got.get(name)!r}")
    if not asked.get("voice") and got.get("voice"):
        parts.insert(0, f"voice {got['voice']!r} (the model's default)")
    td = got.get("turn_detection")
    kind = td.get("type") if isinstance(td, dict) else None
    idle = td.get("idle_timeout_ms") if isinstance(td, dict) else None
    parts.append(f"turn_detection {kind or 'null'}" + (f", idle_timeout_ms {idle}" if idle else ""))
    return ", ".join(parts)


async def probe_realtime(settings: Settings, account: DashScopeAccount, wire: WireLog,
                         timeout: float) -> CheckResult:
    name, model, event = _realtime_asked(settings)
    event = {"event_id": p.new_event_id(), **event}
    asked = event["session"]
    try:
        sock = await _open(account.urls.realtime_ws(model), account, wire, "realtime")
    except AuthFailed as e:
        return failed(name, str(e), KEY_REJECTED_FIX)
    except ConnectFailed as e:
        return failed(name, f"{model}: {e}", "check the network and dashscope.region")
    try:
        deadline = time.monotonic() + 2 * timeout
        await sock.send(event)
        while True:
            ev = p.parse_event(await sock.recv(deadline))
            if isinstance(ev, p.SessionUpdated):
                got = ev.session
                break
            if isinstance(ev, p.ErrorEvent) and (ev.fatal or ev.event_id in (None, event["event_id"])):
                field, _ = lookup(asked, ev.param)
                return failed(name, f"{model}: session.update refused, field {field}: {ev.message or ev.code}",
                              f"the service does not accept {field} as configured; change it or "
                              "report it with --record")
    except (asyncio.TimeoutError, TimeoutError):
        return failed(name, f"{model}: no session.updated within {2 * timeout:g} s", MISMATCH_FIX)
    except (p.ProtocolError, OSError, Exception) as e:  # a closed socket, garbage: say what
        return failed(name, f"{model}: {redact(f'{e.__class__.__name__}: {e}')}", MISMATCH_FIX)
    finally:
        with contextlib.suppress(Exception):
            await sock.send(p.session_finish())
        await sock.close()
    mismatches = verify_session(asked, got)
    if mismatches:
        return failed(name, f"{model}: " + "; ".join(m.describe() for m in mismatches), MISMATCH_FIX)
    return passed(name, f"{model}: session.updated echoes {_summary(asked, got)}")


async def probe_synthesis(settings: Settings, account: DashScopeAccount, wire: WireLog,
                          timeout: float) -> CheckResult:
    name = "synthesis"
    model, voice = settings.pipeline.tts_model, announcement_voice(settings)
    try:
        sock = await _open(account.urls.inference_ws, account, wire, "synthesis")
    except AuthFailed as e:
        return failed(name, str(e), KEY_REJECTED_FIX)
    except ConnectFailed as e:
        return failed(name, f"{model}: {e}", "check the network and dashscope.region")
    task_id, audio, chunks = tts.new_task_id(), 0, 0
    try:
        deadline = time.monotonic() + 3 * timeout
        await sock.send(tts.run_task_message(task_id, tts.SynthesisParams(model, voice)))
        while True:
            frame = await sock.recv(deadline)
            if isinstance(frame, bytes):
                audio, chunks = audio + len(frame), chunks + 1
                continue
            ev = tts.parse_event(frame)
            if isinstance(ev, tts.TaskStarted):
                await sock.send(tts.continue_task_message(task_id, PROBE_TEXT))
                await sock.send(tts.finish_task_message(task_id))
            elif isinstance(ev, tts.TaskFailed):
                return failed(name, f"{model}, voice {voice}: task-failed {ev.code}: {ev.message}",
                              "check pipeline.tts_model and voice.preset against the region's models")
            elif isinstance(ev, tts.TaskFinished):
                break
    except (asyncio.TimeoutError, TimeoutError):
        return failed(name, f"{model}: no task-finished within {3 * timeout:g} s", MISMATCH_FIX)
    except Exception as e:
        return failed(name, f"{model}: {redact(f'{e.__class__.__name__}: {e}')}", MISMATCH_FIX)
    finally:
        await sock.close()
    if audio == 0:
        return failed(name, f"{model}, voice {voice}: task-finished without audio", MISMATCH_FIX)
    ms = audio / 2 / 24000 * 1000
    return passed(name, f"{model}, voice {voice}: {PROBE_TEXT!r} → {audio} bytes of 24 kHz PCM "
                        f"({ms:.0f} ms) in {chunks} frames")


async def probe_llm(settings: Settings, account: DashScopeAccount, http: aiohttp.ClientSession,
                    timeout: float) -> CheckResult:
    name, model = "LLM stream", settings.pipeline.llm_model
    client = LLMClient(account, model, session=http, max_retries=0,
                       connect_timeout_s=timeout, read_timeout_s=2 * timeout)
    pieces: list[str] = []
    try:
        async with client.stream([{"role": "user", "content": LLM_PROMPT}]) as stream:
            async for piece in stream:
                pieces.append(piece)
    except Exception as e:
        return failed(name, f"{model}: {redact(f'{e.__class__.__name__}: {e}')}",
                      "check pipeline.llm_model (is it served in this region?) and the key")
    text = "".join(pieces).strip()
    if not text:
        return failed(name, f"{model}: the stream ended without text", MISMATCH_FIX)
    first = client.last_first_token_latency
    when = f", first text after {first * 1000:.0f} ms" if first is not None else ""
    return passed(name, f"{model}: {len(pieces)} chunks{when}: {text[:40]!r}")


async def run_live(settings: Settings, record: str | None = None,
                   timeout: float = TIMEOUT_S) -> list[CheckResult]:
    """Every row of the probe, in order; later rows are skipped when the key is refused."""
    try:
        key = resolve_api_key(settings)
    except ConfigError as e:
        return [skipped("live probe", f"no API key: {e}")]
    if not key:
        return [skipped("live probe", "no API key")]
    account = DashScopeAccount.from_settings(settings, key)
    wire = WireLog(record, [key])
    try:
        client_timeout = aiohttp.ClientTimeout(total=4 * timeout, connect=timeout)
        async with aiohttp.ClientSession(timeout=client_timeout, trace_configs=[wire.trace_config()]) as http:
            rows = [await probe_key(http, account, settings.dashscope.region, timeout)]
            if not rows[0].ok:
                why = "the key was not accepted"
                return rows + [skipped(n, why) for n in ("realtime session", "synthesis", "LLM stream")]
            rows.append(await probe_realtime(settings, account, wire, timeout))
            rows.append(await probe_synthesis(settings, account, wire, timeout))
            if settings.mode == "pipeline":
                rows.append(await probe_llm(settings, account, http, timeout))
            else:
                rows.append(skipped("LLM stream", "omni mode does not use the LLM"))
            rows.append(await probe_function_calling(
                settings, account, http,
                lambda model: _open(account.urls.realtime_ws(model), account, wire, "tools"), timeout))
            return rows
    finally:
        wire.close()


def format_table(rows: list[CheckResult], stream: Any = None) -> str:
    """row | result | detail, then the fixes of the failed rows."""
    enc = getattr(stream or sys.stdout, "encoding", None) or "ascii"
    width = max([len(r.name) for r in rows] + [3])
    lines = [f"{'row'.ljust(width)}  result  detail"]
    for r in rows:
        result = "pass" if r.ok else "skip" if r.skipped else "FAIL"
        lines.append(f"{r.name.ljust(width)}  {result.ljust(6)}  {r.detail}")
        if r.fix and not r.ok:
            lines.append(f"{' ' * width}          fix: {r.fix}")
    bad = sum(1 for r in rows if not r.ok and not r.skipped)
    lines.append(f"live probe: {bad} of {len(rows)} rows failed" if bad else
                 f"live probe: all {sum(1 for r in rows if r.ok)} probed rows passed")
    text = redact("\n".join(lines))
    return text.encode(enc, "replace").decode(enc)


def live_command(settings: Settings, record: str | None) -> bool:
    """Run and print the probe; True when no row failed (skipped rows do not fail it)."""
    rows = asyncio.run(run_live(settings, record))
    print(format_table(rows, sys.stdout), flush=True)
    if record:
        print(f"wire log (redacted): {record}", flush=True)
    return not any(not r.ok and not r.skipped for r in rows)
