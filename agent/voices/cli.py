"""`voice-agent voices list|show ID|create|delete ID|ensure [--config PATH] [--json]`.

Operators need this when the account's voice quota is full (list, delete), to enroll ahead of
deployment (ensure, create), and to see which voice a device uses (list marks it). Tables for
people, `--json` for scripts. Exit codes follow SPEC §3: 0 ok, 78 configuration (bad sample, bad
key), 1 anything else, including `ensure` when the voice could not be verified with the service.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

import aiohttp

from agent.account import DashScopeAccount
from agent.config import EX_CONFIG, ConfigError, Settings, load_settings
from agent.secrets import redact
from agent.statedir import open_state_dir
from agent.voices import samples
from agent.voices.cache import VoiceCache
from agent.voices.client import CustomizationClient, RemoteVoice
from agent.voices.ensure import Enrollment, EnsureOptions, ensure_voice
from agent.voices.errors import AuthError, VoiceError, VoiceNotFound
from agent.voices.plan import VoicePlan, plan_voice, voice_matches

log = logging.getLogger("voice-agent.voices")


def main_voices(args: argparse.Namespace, *, options: EnsureOptions | None = None) -> int:
    """Entry point for `agent.cli` (sync); maps errors to exit codes and prints them redacted."""
    try:
        return asyncio.run(voices_command(args, options=options))
    except (ConfigError, AuthError) as e:
        print(f"voice-agent: configuration error: {redact(str(e))}", file=sys.stderr)
        return EX_CONFIG
    except VoiceError as e:
        print(f"voice-agent: {redact(str(e))}", file=sys.stderr)
        return 1


async def voices_command(args: argparse.Namespace, *, options: EnsureOptions | None = None) -> int:
    """Run one `voices` action. Raises ConfigError / VoiceError for the caller to map."""
    settings: Settings = getattr(args, "settings", None) or load_settings(getattr(args, "config", None))
    _setup_logging(settings)
    action = args.voices_command
    as_json = bool(getattr(args, "json", False))
    options = options or EnsureOptions()
    plan = plan_voice(settings)
    account = DashScopeAccount.from_settings(settings)
    state_dir = open_state_dir(settings)
    if action == "ensure":
        result = await ensure_voice(settings, account, state_dir, log=log, options=options)
        _emit(result.to_json() if as_json else result.voice_id, as_json)
        if not result.verified:
            print(f"voice-agent: voice {result.voice_id} could not be verified with the service "
                  f"({result.outcome}): {redact(result.note)}", file=sys.stderr)
            return 1
        return 0
    if plan.family == "preset":
        raise ConfigError(
            f"{settings.source}: voice.family: preset uses the system voice "
            f"'{settings.voice.preset}'; there are no enrolled voices to {action}. Set voice.family "
            "to qwen (omni mode) or cosyvoice (pipeline mode) to manage cloned voices"
        )
    async with aiohttp.ClientSession() as http:
        client = CustomizationClient(http, account, options=options.client, log=log)
        cache = VoiceCache(state_dir, log=log)
        if action == "list":
            return await _list(plan, client, cache, as_json)
        if action == "show":
            return await _show(plan, client, cache, args.voice_id, as_json)
        if action == "delete":
            return await _delete(plan, client, cache, args.voice_id, as_json)
        if action == "create":
            return await _create(plan, client, cache, state_dir, options, as_json)
    raise ValueError(f"unknown voices action {action!r}")


def _setup_logging(settings: Settings) -> None:
    """Progress and warnings go to stderr (stdout carries only the result), key redacted."""
    from agent.logs import setup_logging

    setup_logging(settings.log.level, settings.log.format)


def _emit(doc: Any, as_json: bool) -> None:
    print(json.dumps(doc, indent=2, ensure_ascii=False) if as_json else doc)


async def _family_voices(plan: VoicePlan, client: CustomizationClient) -> list[RemoteVoice]:
    voices = await (client.cosy_list() if plan.family == "cosyvoice" else client.qwen_list())
    return sorted(voices, key=lambda v: v.created, reverse=True)


def _describe_voice(v: RemoteVoice, plan: VoicePlan, cache: VoiceCache) -> dict[str, Any]:
    cached = [e for e in cache.entries if e.voice_id == v.voice_id]
    in_use = any(e.key == plan.key or (not plan.digest and e.name == plan.name) for e in cached)
    note = "in use" if in_use else "cached (earlier sample)" if cached else (
        "matches voice.name" if voice_matches(plan, v.voice_id, v.target_model) else "")
    target = v.target_model or ("" if plan.family == "qwen" else _cosy_target(v.voice_id, plan))
    return {
        "voice_id": v.voice_id, "target_model": target or None, "status": v.status,
        "created": v.created or None, "modified": v.modified or None, "note": note or None,
    }


def _cosy_target(voice_id: str, plan: VoicePlan) -> str:
    return plan.target_model if voice_id.startswith(plan.target_model + "-") else ""


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    cells = [[h for _, h in columns]] + [[str(r.get(k) or "-") for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


async def _list(plan: VoicePlan, client: CustomizationClient, cache: VoiceCache, as_json: bool) -> int:
    cache.load()
    rows = [_describe_voice(v, plan, cache) for v in await _family_voices(plan, client)]
    if as_json:
        _emit({"family": plan.family, "voices": rows}, True)
        return 0
    columns = [("voice_id", "VOICE ID"), ("target_model", "TARGET MODEL")]
    if plan.family == "cosyvoice":
        columns.append(("status", "STATUS"))
    columns += [("created", "CREATED"), ("note", "NOTE")]
    print(_table(rows, columns))
    print(f"\n{len(rows)} {plan.family} voice(s); the account may keep 1000. "
          "Delete unused ones with `voice-agent voices delete ID`.")
    return 0


async def _find(plan: VoicePlan, client: CustomizationClient, voice_id: str) -> RemoteVoice:
    if plan.family == "cosyvoice":
        return await client.cosy_query(voice_id)
    for v in await client.qwen_list():  # qwen has no documented query action
        if v.voice_id == voice_id:
            return v
    raise VoiceNotFound(f"voice {voice_id} not found among the account's qwen voices")


async def _show(plan: VoicePlan, client: CustomizationClient, cache: VoiceCache, voice_id: str, as_json: bool) -> int:
    cache.load()
    try:
        v = await _find(plan, client, voice_id)
    except VoiceNotFound as e:
        print(f"voice-agent: {redact(str(e))}", file=sys.stderr)
        return 1
    doc = _describe_voice(v, plan, cache)
    shown = ("voice", "voice_id", "gmt_create", "gmt_modified", "status", "target_model")
    doc.update({k: val for k, val in v.raw.items() if k not in shown and val is not None
                and not (isinstance(val, str) and val.startswith("data:"))})
    entries = [e for e in cache.entries if e.voice_id == voice_id]
    if entries:
        doc["cache"] = {"name": entries[0].name, "digest": entries[0].digest,
                        "source": entries[0].source, "preview": entries[0].preview}
    if as_json:
        _emit(doc, True)
    else:
        width = max(len(k) for k in doc)
        for k, val in doc.items():
            print(f"{k.ljust(width)}  {json.dumps(val, ensure_ascii=False) if isinstance(val, (dict, list)) else val}")
    return 0


async def _delete(plan: VoicePlan, client: CustomizationClient, cache: VoiceCache, voice_id: str, as_json: bool) -> int:
    try:
        if plan.family == "cosyvoice":
            await client.cosy_delete(voice_id)
        else:
            await client.qwen_delete(voice_id)
    except VoiceNotFound as e:
        print(f"voice-agent: {redact(str(e))}", file=sys.stderr)
        return 1
    async with cache.locked():
        was_in_use = any(e.key == plan.key and e.voice_id == voice_id for e in cache.entries)
        cache.forget_voice(voice_id)
    if was_in_use:
        log.warning("deleted the voice this device uses; the next start enrolls (or finds) another")
    _emit({"deleted": voice_id} if as_json else f"deleted {voice_id}", as_json)
    return 0


async def _create(plan: VoicePlan, client: CustomizationClient, cache: VoiceCache, state_dir: Path,
                  options: EnsureOptions, as_json: bool) -> int:
    """Create a new voice now, even if one exists (re-enrollment); it becomes the one in use."""
    prepared = None
    if plan.source == "sample":
        prepared = await asyncio.to_thread(samples.prepare_sample, plan.source_value or "", plan.family, log=log)
        plan = dataclasses.replace(plan, digest=prepared.digest)
    async with cache.locked(options.lock_timeout_s):
        result = await Enrollment(plan, client, cache, state_dir, log, options, prepared).create()
    _emit(result.to_json() if as_json else result.voice_id, as_json)
    return 0
