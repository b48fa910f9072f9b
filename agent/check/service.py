"""The checks that ask the network: reach each DashScope host, key accepted, voice present.

The service is asked through the one voice-API client (`agent.voices.client`), without retries
and with short timeouts: `check` must answer in seconds on a device without network.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from urllib.parse import urlsplit

import aiohttp

from agent import __version__
from agent.account import DashScopeAccount
from agent.check.result import KEY_REJECTED_FIX, TIMEOUT_S, CheckResult, failed, passed, skipped
from agent.endpoints import Endpoints
from agent.voices.client import (
    COSY_MODEL,
    QWEN_MODEL,
    CallFailed,
    ClientOptions,
    CustomizationClient,
)
from agent.voices.errors import VoiceError
from agent.voices.plan import VoicePlan, voice_matches


def targets(ep: Endpoints) -> list[tuple[str, int, bool]]:
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
        return failed(name, f"cannot resolve {host}: {e}", "check DNS (/etc/resolv.conf) and the network connection")
    except (TimeoutError, asyncio.TimeoutError):
        return failed(name, f"DNS lookup of {host} timed out after {timeout:.0f} s", "check DNS and the network connection")
    t_dns = time.monotonic()
    ctx = ssl.create_default_context() if tls else None
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if tls else None),
            timeout,
        )
    except (TimeoutError, asyncio.TimeoutError):
        return failed(name, f"no answer within {timeout:.0f} s", net_fix)
    except ssl.SSLCertVerificationError as e:
        return failed(name, f"TLS certificate not trusted: {e.verify_message or e}", "check the system clock (date) and CA certificates (apt install ca-certificates)")
    except ssl.SSLError as e:
        return failed(name, f"TLS handshake failed: {e.reason or e}", "a proxy or firewall may be intercepting TLS; check the network path")
    except ConnectionRefusedError:
        fix = "nothing listens there: is the emulator/proxy of dashscope.http_url running?" if not tls else net_fix
        return failed(name, "connection refused", fix)
    except OSError as e:
        return failed(name, f"cannot connect: {e.strerror or e}", net_fix)
    t_conn = time.monotonic()
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    except Exception:
        pass
    what = "TLS" if tls else "TCP"
    return passed(name, f"DNS {1000 * (t_dns - t0):.0f} ms, {what} {1000 * (t_conn - t_dns):.0f} ms")


# --- the service: key accepted, voice present --------------------------------------------------


def service_client(session: aiohttp.ClientSession, account: DashScopeAccount, timeout: float) -> CustomizationClient:
    """The voice-API client as `check` uses it: one attempt per call, answers within 2 × timeout."""
    options = ClientOptions(request_timeout_s=2 * timeout, retries=0, page_size=100, max_pages=50,
                            user_agent=f"voice-agent/{__version__} (check)")
    return CustomizationClient(session, account, options=options)


def _enrollment_model(plan: VoicePlan | None) -> str:
    return COSY_MODEL if plan is not None and plan.family == "cosyvoice" else QWEN_MODEL


async def check_key_accepted(client: CustomizationClient, plan: VoicePlan | None) -> CheckResult:
    name = "key accepted"
    model = _enrollment_model(plan)
    action = "list_voice" if model == COSY_MODEL else "list"
    try:
        await client.call_once(model, {"action": action, "page_index": 0, "page_size": 1})
    except CallFailed as f:
        if f.reply is None:
            return failed(name, f"no answer from {client.endpoints.customization}: {f.cause}",
                          "check the network; retry later")
        if f.reply.status in (401, 403):
            return failed(name, f.reply.describe(), KEY_REJECTED_FIX)
        return failed(name, f.reply.describe(),
                      "the service refused a read-only call; check the account (arrears, permissions) and retry")
    return passed(name, f"{model} list answered")


async def check_voice(client: CustomizationClient, plan: VoicePlan) -> CheckResult:
    name = "voice"
    try:
        items = await (client.qwen_list() if plan.family == "qwen" else client.cosy_list(plan.request_name))
    except VoiceError as e:
        return failed(name, f"cannot list voices: {e}", "retry later; see the 'key accepted' item")
    # The same rule as enrollment (case-insensitive qwen names, audit R13); a listed voice
    # without a target model is taken as this plan's (CosyVoice ids carry it in the id).
    found = [i for i in items if voice_matches(plan, i.voice_id, i.target_model or plan.target_model)]
    if found:
        best = max(found, key=lambda v: v.created)
        vid, status = best.voice_id, best.status
        if status == "UNDEPLOYED":
            return failed(name, f"{vid} was rejected by review (UNDEPLOYED)", "delete it (`voice-agent voices delete ID`) and enroll a cleaner sample")
        note = f" (status {status})" if status and status != "OK" else ""
        return passed(name, f"{plan.describe()}: {vid}{note}")
    if plan.source:
        fix_src = f"voice.{plan.source}"
        return passed(name, f"{plan.describe()} is not enrolled yet; the first start (or `voice-agent voices ensure`) creates it from {fix_src}")
    return failed(
        name,
        f"{plan.describe()} does not exist and nothing is configured to create it",
        "set voice.sample (or voice.sample_url / voice.design_prompt), or use voice.family: preset",
    )


def voice_offline(plan: VoicePlan | None) -> CheckResult:
    if plan is not None and plan.family == "preset":
        return passed("voice", f"preset system voice {plan.preset!r} (nothing to enroll)")
    return skipped("voice", "the service cannot be asked" if plan else "the config is invalid")
