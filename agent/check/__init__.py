"""`voice-agent check`: everything the daemon needs, checked in seconds, with a fix for each failure.

Installers run this on a fresh device before enabling the service, so each item says what was
checked, where the value came from, and — when it fails — what to change. It never prints the API
key (only where it came from), and every line goes through `redact` anyway. Network checks time out
after a few seconds each, so a device without network gets a clear answer quickly, not a hang.

Layout: `result` (one checklist line), `local` (config, key, state dir, audio, echo),
`capabilities` (the region × model rows that concern the configuration, SPEC §13), `service`
(reach, key accepted, voice); this module runs them in order and prints the checklist.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from agent.account import DashScopeAccount
from agent.check.capabilities import check_capabilities
from agent.check.local import (
    check_audio,
    check_config,
    check_echo,
    check_key,
    check_listen,
    check_state_dir,
    check_tools,
    key_origin,
)
from agent.check.result import KEY_REJECTED_FIX, TIMEOUT_S, CheckResult, skipped
from agent.check.service import (
    check_key_accepted,
    check_reach,
    check_voice,
    service_client,
    targets,
    voice_offline,
)
from agent.config import Settings
from agent.endpoints import resolve_endpoints
from agent.secrets import redact
from agent.voices.plan import VoicePlan

__all__ = [
    "KEY_REJECTED_FIX",
    "CheckResult",
    "check_audio",
    "check_command",
    "check_config",
    "check_echo",
    "check_listen",
    "check_key",
    "check_state_dir",
    "format_checklist",
    "key_origin",
    "run_checks",
]


async def run_checks(settings: Settings, *, timeout: float = TIMEOUT_S) -> list[CheckResult]:
    """Run every check in order; later checks that depend on a failed one are marked skipped."""
    results: list[CheckResult] = []
    cfg, plan = check_config(settings)
    results.append(cfg)
    if plan is not None:
        results.extend(check_capabilities(settings))
    key_result, key = check_key(settings)
    results.append(key_result)
    results.append(check_state_dir(settings))
    results.extend(await check_audio(settings))
    results.append(check_tools(settings))

    ep = resolve_endpoints(settings.dashscope)
    hosts = targets(ep)
    reach = await asyncio.gather(*(check_reach(h, p, tls, timeout) for h, p, tls in hosts))
    results.extend(reach)
    http_host = urlsplit(ep.http_base).hostname
    http_ok = all(r.ok for r, (h, _, _) in zip(reach, hosts, strict=True) if h == http_host)

    if key is None:
        results += [skipped("key accepted", "no API key"), voice_offline(plan)]
    elif not http_ok:
        results += [skipped("key accepted", f"{ep.http_base} is unreachable"), voice_offline(plan)]
    else:
        account = DashScopeAccount.from_settings(settings, key)
        results += await _service_checks(account, plan, timeout)
    return results


async def _service_checks(
    account: DashScopeAccount, plan: VoicePlan | None, timeout: float
) -> list[CheckResult]:
    client_timeout = aiohttp.ClientTimeout(total=timeout * 2, connect=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        client = service_client(session, account, timeout)
        accepted = await check_key_accepted(client, plan)
        if plan is None or plan.family == "preset" or not accepted.ok:
            voice = voice_offline(plan) if plan is None or plan.family == "preset" else skipped(
                "voice", "the key was not accepted"
            )
        else:
            voice = await check_voice(client, plan)
    return [accepted, voice]


def _symbols(stream: Any) -> tuple[str, str, str, str]:
    """✓/✗/–/! where the terminal can show them, else ASCII (a serial console, LANG=C)."""
    enc = getattr(stream, "encoding", None) or "ascii"
    try:
        "✓✗–".encode(enc)
        return "✓", "✗", "–", "!"
    except (UnicodeEncodeError, LookupError):
        return "OK", "FAIL", "-", "WARN"


def format_checklist(results: list[CheckResult], stream: Any = None) -> str:
    ok_s, fail_s, skip_s, warn_s = _symbols(stream or sys.stdout)
    width = max(len(r.name) for r in results) if results else 0
    lines = []
    for r in results:
        mark = (warn_s if r.warning else ok_s) if r.ok else (skip_s if r.skipped else fail_s)
        lines.append(f"{mark} {r.name.ljust(width)}  {r.detail}")
        if r.fix and (not r.ok or r.warning):
            lines.append(f"  {' ' * len(mark)}{' ' * width} fix: {r.fix}")
    failed = sum(1 for r in results if not r.ok and not r.skipped)
    skipped = sum(1 for r in results if r.skipped)
    if failed:
        tail = f"{failed} of {len(results)} checks failed" + (f", {skipped} skipped" if skipped else "")
    else:
        tail = f"all {len(results)} checks passed"
    warned = sum(1 for r in results if r.ok and r.warning)
    if warned:
        tail += f" ({warned} with a warning: the documents disagree, see '!' above)"
    lines.append(tail)
    return redact("\n".join(lines))


def check_command(settings: Settings, live: bool = False, record: str | None = None) -> int:
    """`voice-agent check [--live [--record FILE]]`: print the checklist (and the live probe's
    table, `agent.check.live`); 0 only if every check passed and no probed row failed."""
    results = asyncio.run(run_checks(settings))
    print(format_checklist(results, sys.stdout), flush=True)
    ok = all(r.ok for r in results)
    if live:
        from agent.check.live import live_command

        print(flush=True)
        ok = live_command(settings, record) and ok
    return 0 if ok else 1
