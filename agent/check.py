"""`voice-agent check`: everything the daemon needs, checked in seconds, with a fix for each failure.

Installers run this on a fresh device before enabling the service, so each item says what was
checked, where the value came from, and — when it fails — what to change. It never prints the API
key (only where it came from), and every line goes through `redact` anyway. Network checks time out
after a few seconds each, so a device without network gets a clear answer quickly, not a hang.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from agent import __version__
from agent.config import ConfigError, Settings, StreamSettings, validate
from agent.endpoints import Endpoints, resolve_endpoints
from agent.secrets import CREDENTIAL_NAME, redact, resolve_api_key
from agent.statedir import open_state_dir
from agent.voices.plan import VoicePlan, plan_voice

TIMEOUT_S = 5.0
INPUT_RATE = 16000  # the microphone rate sent upstream (SPEC §5.5)
OUTPUT_RATE = 24000  # the playout rate
QWEN_ENROLLMENT = "qwen-voice-enrollment"
COSY_ENROLLMENT = "voice-enrollment"
KEY_REJECTED_FIX = "key rejected: check dashscope.api_key and region (keys are region-specific)"


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False  # not run because an earlier check failed (that one carries the fix)

    def __post_init__(self) -> None:
        self.detail = redact(self.detail)
        self.fix = redact(self.fix) if self.fix else None


def _pass(name: str, detail: str) -> CheckResult:
    return CheckResult(name, True, detail)


def _fail(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, False, detail, fix)


def _skip(name: str, why: str) -> CheckResult:
    return CheckResult(name, False, f"skipped: {why}", skipped=True)


# --- config, key, state dir --------------------------------------------------------------------


def check_config(settings: Settings) -> tuple[CheckResult, VoicePlan | None]:
    try:
        validate(settings)
        plan = plan_voice(settings)
    except ConfigError as e:
        return _fail("config", str(e), f"edit {settings.source} as the message says"), None
    detail = f"{settings.source} is valid (mode {settings.mode}, region {settings.dashscope.region})"
    return _pass("config", detail), plan


def key_origin(settings: Settings) -> str:
    """Where `resolve_api_key` takes the key from (same order), for the checklist."""
    ds = settings.dashscope
    if ds.api_key:
        return f"dashscope.api_key in {settings.source}"
    if os.environ.get("DASHSCOPE_API_KEY"):
        return "$DASHSCOPE_API_KEY"
    if ds.api_key_file:
        return f"dashscope.api_key_file ({ds.api_key_file})"
    return f"systemd credential {CREDENTIAL_NAME} ($CREDENTIALS_DIRECTORY)"


def check_key(settings: Settings) -> tuple[CheckResult, str | None]:
    try:
        key = resolve_api_key(settings, required=True)
    except ConfigError as e:
        fix = (
            "put the key in /etc/voice-agent/dashscope-api-key (system unit: LoadCredential), "
            "or set $DASHSCOPE_API_KEY, dashscope.api_key_file or dashscope.api_key"
        )
        return _fail("API key", str(e), fix), None
    return _pass("API key", f"present, from {key_origin(settings)}"), key


def check_state_dir(settings: Settings) -> CheckResult:
    try:
        path = open_state_dir(settings)
    except ConfigError as e:
        return _fail(
            "state dir",
            str(e),
            "make it writable by the daemon's user (chown/chmod 700) or set state_dir",
        )
    return _pass("state dir", f"{path} is writable")


# --- audio -------------------------------------------------------------------------------------


def wav_info(path: Path) -> tuple[int, int, float]:
    """(rate, channels, seconds) of a RIFF/WAVE file; ValueError if it is not one we can read."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError("not a WAV file (no RIFF/WAVE header)")
        fmt: tuple[int, int, int, int] | None = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise ValueError("no audio data chunk")
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                body = f.read(size)
                if len(body) < 16:
                    raise ValueError("truncated fmt chunk")
                tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                fmt = (tag, channels, rate, bits)
                if size % 2:
                    f.read(1)
            elif cid == b"data":
                if fmt is None:
                    raise ValueError("data before the fmt chunk")
                tag, channels, rate, bits = fmt
                if tag not in (1, 3, 0xFFFE):
                    raise ValueError(f"unsupported WAV encoding (format tag {tag}); use PCM")
                if channels < 1 or rate <= 0 or bits not in (8, 16, 24, 32, 64):
                    raise ValueError("invalid WAV format fields")
                seconds = size / (channels * bits // 8) / rate
                return rate, channels, seconds
            else:
                f.seek(size + (size % 2), os.SEEK_CUR)


def _check_file_input(st: StreamSettings) -> CheckResult:
    name = "audio input"
    path = Path(st.path or "").expanduser()
    try:
        rate, channels, seconds = wav_info(path)
    except OSError as e:
        return _fail(name, f"cannot read {path}: {e.strerror or e}", "set audio.input.path to a readable WAV file")
    except ValueError as e:
        return _fail(name, f"{path}: {e}", "convert it to WAV, e.g. `sox in.mp3 -b 16 out.wav`")
    return _pass(name, f"file {path}: WAV {rate} Hz, {channels} ch, {seconds:.1f} s")


def _check_file_output(st: StreamSettings) -> CheckResult:
    name = "audio output"
    path = Path(st.path or "").expanduser()
    parent = path.parent
    fix = "set audio.output.path to a file in a directory the daemon can write"
    if path.is_dir():
        return _fail(name, f"{path} is a directory", fix)
    if not parent.is_dir():
        return _fail(name, f"directory {parent} does not exist", fix)
    if path.exists() and not os.access(path, os.W_OK):
        return _fail(name, f"{path} is not writable", fix)
    try:
        fd, probe = tempfile.mkstemp(prefix=".voice-agent-check-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return _fail(name, f"cannot write in {parent}: {e.strerror or e}", fix)
    return _pass(name, f"file {path} (24 kHz mono WAV) is writable")


def _check_sounddevice(kind: str, device: int | str | None, rate: int) -> CheckResult:
    """Find the configured device the way the audio engine does (`agent.audio.devices`) and ask
    PortAudio whether it opens at `rate`, or at its own default rate, which the daemon resamples
    from (SPEC §5.5)."""
    from agent.audio.backend import AudioConfigError
    from agent.audio.devices import DeviceNotFoundError, load_portaudio, resolve_device

    name = f"audio {kind}"
    fix_pick = f"run `voice-agent devices` and set audio.{kind}.device to an index or a name substring"
    try:
        pa = load_portaudio()
        rows = pa.query()
        idx = resolve_device(device, kind, rows)
    except DeviceNotFoundError as e:
        return _fail(name, str(e), fix_pick)
    except AudioConfigError as e:
        return _fail(name, str(e), "install PortAudio (apt install libportaudio2) or use backend file/null")
    if idx is None:
        default = [r for r in rows if (r.default_input if kind == "input" else r.default_output)]
        if not default:
            return _fail(
                name,
                f"no default {kind} device",
                f"connect one; check that the daemon's user is in the audio group; or {fix_pick}",
            )
        row = default[0]
    else:
        row = next(r for r in rows if r.index == idx)
    label = f"{row.name} (#{row.index})"
    check = pa.sd.check_input_settings if kind == "input" else pa.sd.check_output_settings
    try:
        check(device=row.index, samplerate=rate, channels=1, dtype="int16")
        return _pass(name, f"{label} opens at {rate} Hz")
    except Exception as first:
        native = int(row.default_samplerate)
        if native and native != rate:
            try:
                check(device=row.index, samplerate=native, channels=1, dtype="int16")
                return _pass(name, f"{label} opens at {native} Hz (resampled to/from {rate} Hz)")
            except Exception:
                pass
        return _fail(
            name,
            f"{label} cannot be opened: {first}",
            "is another program holding it? is the daemon's user in the audio group? "
            f"or {fix_pick}",
        )


async def check_audio(settings: Settings) -> list[CheckResult]:
    out: list[CheckResult] = []
    for kind, rate in (("input", INPUT_RATE), ("output", OUTPUT_RATE)):
        st: StreamSettings = getattr(settings.audio, kind)
        if st.backend == "null":
            out.append(_pass(f"audio {kind}", "null backend (no audio)"))
        elif st.backend == "file":
            out.append(_check_file_input(st) if kind == "input" else _check_file_output(st))
        else:
            out.append(await asyncio.to_thread(_check_sounddevice, kind, st.device, rate))
    out.append(check_echo(settings))
    return out


ECHO_MODES = {
    "none": "none (the hardware or the sound server cancels the echo)",
    "half_duplex": "half_duplex (microphone closed while the speaker plays; no barge-in by voice)",
    "gate": "gate (energy gate; barge-in when louder than the echo)",
}


def check_echo(settings: Settings) -> CheckResult:
    """Can `audio.echo` run here? Only `aec` needs something extra (docs/echo.md)."""
    mode = settings.audio.echo
    if mode != "aec":
        return _pass("echo", ECHO_MODES.get(mode, mode))
    from agent.echo import INSTALL_HINT, aec_problem

    why = aec_problem()
    if why is not None:
        return _fail("echo", f"aec: {why}", f"{INSTALL_HINT}; or set audio.echo: gate")
    return _pass("echo", "aec (WebRTC AEC3 echo canceller installed)")


# --- network -----------------------------------------------------------------------------------


def _targets(ep: Endpoints) -> list[tuple[str, int, bool]]:
    """Distinct (host, port, tls) behind the HTTP and WebSocket bases."""
    seen: list[tuple[str, int, bool]] = []
    for url in (ep.http_base, ep.ws_base):
        parts = urlsplit(url)
        tls = parts.scheme in ("https", "wss")
        host = parts.hostname or ""
        port = parts.port or (443 if tls else 80)
        if (host, port, tls) not in seen:
            seen.append((host, port, tls))
    return seen


async def check_reach(host: str, port: int, tls: bool, timeout: float = TIMEOUT_S) -> CheckResult:
    name = f"reach {host}:{port}"
    loop = asyncio.get_running_loop()
    net_fix = "check the network connection, firewall or proxy (outbound TCP to this port)"
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except (socket.gaierror, UnicodeError) as e:
        return _fail(name, f"cannot resolve {host}: {e}", "check DNS (/etc/resolv.conf) and the network connection")
    except (TimeoutError, asyncio.TimeoutError):
        return _fail(name, f"DNS lookup of {host} timed out after {timeout:.0f} s", "check DNS and the network connection")
    t_dns = time.monotonic()
    ctx = ssl.create_default_context() if tls else None
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if tls else None),
            timeout,
        )
    except (TimeoutError, asyncio.TimeoutError):
        return _fail(name, f"no answer within {timeout:.0f} s", net_fix)
    except ssl.SSLCertVerificationError as e:
        return _fail(name, f"TLS certificate not trusted: {e.verify_message or e}", "check the system clock (date) and CA certificates (apt install ca-certificates)")
    except ssl.SSLError as e:
        return _fail(name, f"TLS handshake failed: {e.reason or e}", "a proxy or firewall may be intercepting TLS; check the network path")
    except ConnectionRefusedError:
        fix = "nothing listens there: is the emulator/proxy of dashscope.http_url running?" if not tls else net_fix
        return _fail(name, "connection refused", fix)
    except OSError as e:
        return _fail(name, f"cannot connect: {e.strerror or e}", net_fix)
    t_conn = time.monotonic()
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except Exception:
        pass
    what = "TLS" if tls else "TCP"
    return _pass(name, f"DNS {1000 * (t_dns - t0):.0f} ms, {what} {1000 * (t_conn - t_dns):.0f} ms")


# --- the service: key accepted, voice present --------------------------------------------------


class _Service:
    """Just enough of the customization API for two read-only calls."""

    def __init__(
        self, session: aiohttp.ClientSession, ep: Endpoints, key: str, workspace: str | None, timeout: float
    ) -> None:
        self.session = session
        self.timeout = timeout
        self.url = ep.customization
        self.headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"voice-agent/{__version__} (check)",
        }
        if workspace:
            self.headers["X-DashScope-WorkSpace"] = workspace

    async def call(self, model: str, inp: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with self.session.post(self.url, json={"model": model, "input": inp}, headers=self.headers) as r:
            try:
                doc = await r.json(content_type=None)
            except (ValueError, aiohttp.ContentTypeError):
                doc = {}
            return r.status, doc if isinstance(doc, dict) else {}

    async def list_all(self, model: str, inp: dict[str, Any], max_pages: int = 50) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for index in range(max_pages):
            status, doc = await self.call(model, {**inp, "page_index": index, "page_size": 100})
            if status != 200:
                raise _HttpError(status, doc)
            output = doc.get("output") or {}
            page = [i for i in output.get("voice_list") or [] if isinstance(i, dict)]
            items.extend(page)
            total = output.get("total_count")
            if not page or (isinstance(total, int) and len(items) >= total):
                break
        return items


class _HttpError(Exception):
    def __init__(self, status: int, doc: dict[str, Any]) -> None:
        code, msg = doc.get("code") or "", doc.get("message") or ""
        super().__init__(f"HTTP {status} {code}: {msg}".strip().rstrip(":"))
        self.status = status


def _enrollment_model(plan: VoicePlan | None) -> str:
    return COSY_ENROLLMENT if plan is not None and plan.family == "cosyvoice" else QWEN_ENROLLMENT


async def check_key_accepted(svc: _Service, plan: VoicePlan | None) -> CheckResult:
    name = "key accepted"
    model = _enrollment_model(plan)
    action = "list_voice" if model == COSY_ENROLLMENT else "list"
    try:
        status, doc = await svc.call(model, {"action": action, "page_index": 0, "page_size": 1})
    except (TimeoutError, asyncio.TimeoutError):
        return _fail(name, f"no answer from {svc.url} within {2 * svc.timeout:g} s", "check the network; retry later")
    except aiohttp.ClientError as e:
        return _fail(name, f"request failed: {e.__class__.__name__}: {e}", "check the network; retry later")
    if status == 200:
        return _pass(name, f"{model} list answered")
    err = _HttpError(status, doc)
    if status in (401, 403):
        return _fail(name, str(err), KEY_REJECTED_FIX)
    return _fail(name, str(err), "the service refused a read-only call; check the account (arrears, permissions) and retry")


def _matches(plan: VoicePlan, item: dict[str, Any]) -> bool:
    if plan.family == "qwen":
        vid = str(item.get("voice") or "")
        target = item.get("target_model")
        return f"-{plan.request_name}-voice-" in vid and (target is None or target == plan.target_model)
    vid = str(item.get("voice_id") or "")
    return vid.startswith((f"{plan.target_model}-{plan.request_name}-", f"{plan.target_model}-vd-{plan.request_name}-"))


async def check_voice(svc: _Service, plan: VoicePlan) -> CheckResult:
    name = "voice"
    try:
        if plan.family == "qwen":
            items = await svc.list_all(QWEN_ENROLLMENT, {"action": "list"})
        else:
            items = await svc.list_all(COSY_ENROLLMENT, {"action": "list_voice", "prefix": plan.request_name})
    except _HttpError as e:
        return _fail(name, f"cannot list voices: {e}", "retry later; see the 'key accepted' item")
    except (TimeoutError, asyncio.TimeoutError, aiohttp.ClientError) as e:
        return _fail(name, f"cannot list voices: {e.__class__.__name__}", "check the network; retry later")
    found = [i for i in items if _matches(plan, i)]
    if found:
        found.sort(key=lambda i: str(i.get("gmt_create") or ""), reverse=True)
        best = found[0]
        vid = str(best.get("voice") or best.get("voice_id"))
        status = best.get("status")
        if status == "UNDEPLOYED":
            return _fail(name, f"{vid} was rejected by review (UNDEPLOYED)", "delete it (`voice-agent voices delete ID`) and enroll a cleaner sample")
        note = f" (status {status})" if status and status != "OK" else ""
        return _pass(name, f"{plan.describe()}: {vid}{note}")
    if plan.source:
        fix_src = f"voice.{plan.source}"
        return _pass(name, f"{plan.describe()} is not enrolled yet; the first start (or `voice-agent voices ensure`) creates it from {fix_src}")
    return _fail(
        name,
        f"{plan.describe()} does not exist and nothing is configured to create it",
        "set voice.sample (or voice.sample_url / voice.design_prompt), or use voice.family: preset",
    )


# --- all together ------------------------------------------------------------------------------


async def run_checks(settings: Settings, *, timeout: float = TIMEOUT_S) -> list[CheckResult]:
    """Run every check in order; later checks that depend on a failed one are marked skipped."""
    results: list[CheckResult] = []
    cfg, plan = check_config(settings)
    results.append(cfg)
    key_result, key = check_key(settings)
    results.append(key_result)
    results.append(check_state_dir(settings))
    results.extend(await check_audio(settings))

    ep = resolve_endpoints(settings.dashscope)
    targets = _targets(ep)
    reach = await asyncio.gather(*(check_reach(h, p, tls, timeout) for h, p, tls in targets))
    results.extend(reach)
    http_host = urlsplit(ep.http_base).hostname
    http_ok = all(r.ok for r, (h, _, _) in zip(reach, targets, strict=True) if h == http_host)

    if key is None:
        results += [_skip("key accepted", "no API key"), _voice_offline(plan)]
    elif not http_ok:
        results += [_skip("key accepted", f"{ep.http_base} is unreachable"), _voice_offline(plan)]
    else:
        results += await _service_checks(settings, ep, key, plan, timeout)
    return results


def _voice_offline(plan: VoicePlan | None) -> CheckResult:
    if plan is not None and plan.family == "preset":
        return _pass("voice", f"preset system voice {plan.preset!r} (nothing to enroll)")
    return _skip("voice", "the service cannot be asked" if plan else "the config is invalid")


async def _service_checks(
    settings: Settings, ep: Endpoints, key: str, plan: VoicePlan | None, timeout: float
) -> list[CheckResult]:
    client_timeout = aiohttp.ClientTimeout(total=timeout * 2, connect=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        svc = _Service(session, ep, key, settings.dashscope.workspace, timeout)
        accepted = await check_key_accepted(svc, plan)
        if plan is None or plan.family == "preset" or not accepted.ok:
            voice = _voice_offline(plan) if plan is None or plan.family == "preset" else _skip(
                "voice", "the key was not accepted"
            )
        else:
            voice = await check_voice(svc, plan)
    return [accepted, voice]


def _symbols(stream: Any) -> tuple[str, str, str]:
    """✓/✗/– where the terminal can show them, else ASCII (a serial console, LANG=C)."""
    enc = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗–".encode(enc)
        return "✓", "✗", "–"
    except (UnicodeEncodeError, LookupError):
        return "OK", "FAIL", "-"


def format_checklist(results: list[CheckResult], stream: Any = None) -> str:
    ok_s, fail_s, skip_s = _symbols(stream or sys.stdout)
    width = max(len(r.name) for r in results) if results else 0
    lines = []
    for r in results:
        mark = ok_s if r.ok else (skip_s if r.skipped else fail_s)
        lines.append(f"{mark} {r.name.ljust(width)}  {r.detail}")
        if r.fix and not r.ok:
            lines.append(f"  {' ' * len(mark)}{' ' * width} fix: {r.fix}")
    failed = sum(1 for r in results if not r.ok and not r.skipped)
    skipped = sum(1 for r in results if r.skipped)
    if failed:
        tail = f"{failed} of {len(results)} checks failed" + (f", {skipped} skipped" if skipped else "")
    else:
        tail = f"all {len(results)} checks passed"
    lines.append(tail)
    return redact("\n".join(lines))


def check_command(settings: Settings) -> int:
    """`voice-agent check`: print the checklist; 0 only if every check passed."""
    results = asyncio.run(run_checks(settings))
    print(format_checklist(results, sys.stdout), flush=True)
    return 0 if all(r.ok for r in results) else 1
