"""The start-up algorithm: make sure the configured voice exists, without ever creating two.

    plan (family ↔ mode) → check the sample locally → lock the cache →
    cached id?  → verify it (cosyvoice: query; qwen: list) → use it
    otherwise   → list, reuse the newest voice matching name + target model
                  (skipping voices the cache attributes to an older sample)
    otherwise   → write an intent → create (once) → record the id → cosyvoice: poll until OK

Contract for the daemon (docs/voices.md): `ensure_voice` returns a `VoiceResult`; `verified=False`
means the id came from the cache or `voice.preset` because the service could not be reached, and
the caller should run `ensure_voice` again later (backoff). Failures raise a `VoiceError`
subclass whose `retryable` says whether trying again later can help.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from agent.account import DashScopeAccount
from agent.config import ConfigError, Settings
from agent.statefile import atomic_write
from agent.voices import samples
from agent.voices.cache import (
    DEPLOYING,
    PENDING,
    READY,
    CacheEntry,
    CacheLocked,
    VoiceCache,
)
from agent.voices.client import (
    COSY_MODEL,
    QWEN_MODEL,
    CallFailed,
    ClientOptions,
    CustomizationClient,
    RemoteVoice,
)
from agent.voices.errors import (
    DELETE_HINT,
    Busy,
    DeployTimeout,
    EnrollmentError,
    ServiceUnavailable,
    VoiceError,
    VoiceNotFound,
)
from agent.voices.plan import PREVIEW_TEXT, VoicePlan, plan_voice, voice_matches

CACHED, REUSED, CREATED, PRESET, FALLBACK = "cached", "reused", "created", "preset", "fallback-preset"


@dataclass
class EnsureOptions:
    """Timing of polling and create recovery; defaults for the cloud, tests shrink them."""

    client: ClientOptions = field(default_factory=ClientOptions)
    poll_initial_s: float = 1.0
    poll_factor: float = 1.5
    poll_max_s: float = 10.0
    deploy_timeout_s: float = 300.0
    # After a create whose outcome is unknown: list again after each of these pauses before
    # concluding the voice was not created (a slow server may finish after our timeout).
    settle_delays_s: tuple[float, ...] = (1.0, 3.0, 6.0)
    create_attempts: int = 2
    lock_timeout_s: float = 600.0


@dataclass
class VoiceResult:
    voice_id: str
    family: str
    target_model: str
    outcome: str  # cached | reused | created | preset | fallback-preset
    verified: bool  # False: not confirmed with the service (offline); retry ensure later
    preview_path: Path | None = None
    status: str | None = None  # cosyvoice review status when known
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["preview_path"] = str(self.preview_path) if self.preview_path else None
        return d


async def ensure_voice(
    settings: Settings,
    account: DashScopeAccount,
    state_dir: Path,
    *,
    log: logging.Logger,
    options: EnsureOptions | None = None,
    session: aiohttp.ClientSession | None = None,
) -> VoiceResult:
    """Make sure the configured voice exists; see the module docstring for the contract.

    Raises SampleError/ConfigError (exit 78), AuthError, QuotaError, EnrollmentError (incl.
    DeployTimeout, retryable) or ServiceUnavailable (retryable; only when there is neither a
    cached id nor `voice.preset` to fall back on).
    """
    options = options or EnsureOptions()
    plan = plan_voice(settings)
    if plan.family == "preset":
        return VoiceResult(plan.preset or "", "preset", "", PRESET, True)
    prepared = None
    if plan.source == "sample":
        # Off the event loop: reading, analysing and maybe decoding (ffmpeg) a sample takes a
        # while on a small board, and the daemon's audio must not stall meanwhile.
        prepared = await asyncio.to_thread(
            samples.prepare_sample, plan.source_value or "", plan.family, log=log
        )
        plan = dataclasses.replace(plan, digest=prepared.digest)
    try:
        async with _http(session) as http:
            client = CustomizationClient(http, account, options=options.client, log=log)
            cache = VoiceCache(state_dir, log=log)
            try:
                async with cache.locked(options.lock_timeout_s):
                    return await Enrollment(plan, client, cache, state_dir, log, options, prepared).run()
            except CacheLocked as e:
                raise Busy(f"{e}: another voice-agent process is enrolling; try again later") from None
    except VoiceError as e:
        if e.retryable and settings.voice.preset:
            log.warning("%s; using the preset voice %s until the service is reachable", e, settings.voice.preset)
            return VoiceResult(settings.voice.preset, plan.family, plan.target_model, FALLBACK, False, note=str(e))
        raise


@contextlib.asynccontextmanager
async def _http(session: aiohttp.ClientSession | None) -> AsyncIterator[aiohttp.ClientSession]:
    if session is not None:
        yield session
        return
    async with aiohttp.ClientSession() as own:
        yield own


class Enrollment:
    """One run of the algorithm for one plan, under the cache lock."""

    def __init__(
        self,
        plan: VoicePlan,
        client: CustomizationClient,
        cache: VoiceCache,
        state_dir: Path,
        log: logging.Logger,
        options: EnsureOptions,
        prepared: samples.PreparedSample | None = None,
    ) -> None:
        self.plan, self.client, self.cache = plan, client, cache
        self.state_dir, self.log, self.options, self.prepared = state_dir, log, options, prepared

    async def run(self) -> VoiceResult:
        plan = self.plan
        entry = self.cache.get(plan.key)
        if entry is not None and entry.state in (READY, DEPLOYING) and entry.voice_id:
            try:
                result = await self.verify(entry)
            except ServiceUnavailable as e:
                self.log.warning("cannot verify cached voice %s (%s); using it unverified", entry.voice_id, e)
                return self.result(entry, CACHED, verified=False, note=str(e))
            if result is not None:
                return result
            self.log.warning("cached voice %s no longer exists at the service; looking for another", entry.voice_id)
            self.cache.remove(plan.key)
            entry = None
        pending = entry if entry is not None and entry.state == PENDING else None
        if pending is not None:
            self.log.info(
                "an earlier run sent create for %s at %s and stopped before recording the id; "
                "looking for that voice", plan.describe(), _ts(pending.started_at),
            )
        found = await self.find_existing()
        if found is None and pending is not None and self.recent(pending):
            # That create may still be running at the service (restart right after a crash).
            found = await self.settle_unknown()
        if found is not None:
            return await self.adopt(found, REUSED)
        if pending is not None:
            self.log.info("the interrupted create did not produce a voice; creating it now")
        return await self.create()

    def recent(self, pending: CacheEntry) -> bool:
        return time.time() - pending.started_at < self.options.client.create_timeout_s

    # --- verify / find ----------------------------------------------------------------------

    async def verify(self, entry: CacheEntry) -> VoiceResult | None:
        """The cached voice as the service sees it now; None if the service no longer has it."""
        assert entry.voice_id
        if self.plan.family == "cosyvoice":
            try:
                remote = await self.client.cosy_query(entry.voice_id)
            except VoiceNotFound:
                return None
            if remote.status != "OK":
                remote = await self.wait_deployed(entry.voice_id, remote)
            if entry.state != READY:
                entry.state = READY
                self.cache.put(entry)
            return self.result(entry, CACHED, status=remote.status)
        voices = await self.client.qwen_list()
        if any(v.voice_id == entry.voice_id for v in voices):
            return self.result(entry, CACHED)
        return None

    async def find_existing(self) -> RemoteVoice | None:
        """Newest listed voice matching name + target model that no other sample claims."""
        candidates = [v for v in await self.list_matching() if v.status != "UNDEPLOYED"]
        # Without a source any voice of this name will do; with one, voices the cache records
        # for a different sample are that sample's.
        claimed = self.cache.ids_claimed_elsewhere(self.plan.key) if self.plan.source else set()
        mine = [v for v in candidates if v.voice_id not in claimed]
        if not mine:
            if candidates:
                self.log.info(
                    "%d existing voice(s) named '%s' belong to an earlier sample; not reusing them",
                    len(candidates), self.plan.name,
                )
            return None
        mine.sort(key=lambda v: v.created, reverse=True)
        if len(mine) > 1:
            others = ", ".join(v.voice_id for v in mine[1:])
            self.log.warning(
                "%d voices match %s; using the newest, %s (the others: %s; delete unused ones "
                "with %s)", len(mine), self.plan.describe(), mine[0].voice_id, others, DELETE_HINT,
            )
        return mine[0]

    async def list_matching(self) -> list[RemoteVoice]:
        return [v for v in await self.list_family() if self.matches(v)]

    async def list_family(self) -> list[RemoteVoice]:
        if self.plan.family == "cosyvoice":
            return await self.client.cosy_list(prefix=self.plan.request_name)
        return await self.client.qwen_list()

    def matches(self, v: RemoteVoice) -> bool:
        return voice_matches(self.plan, v.voice_id, v.target_model)

    async def adopt(self, v: RemoteVoice, outcome: str) -> VoiceResult:
        self.log.info("reusing existing %s: %s", self.plan.describe(), v.voice_id)
        entry = self.new_entry(DEPLOYING if v.status not in (None, "OK") else READY)
        entry.voice_id = v.voice_id
        entry.source = entry.source or "existing"
        self.cache.put(entry)
        status = v.status
        if self.plan.family == "cosyvoice" and v.status != "OK":
            status = (await self.wait_deployed(v.voice_id, v)).status
            entry.state = READY
            self.cache.put(entry)
        return self.result(entry, outcome, status=status)

    # --- create -----------------------------------------------------------------------------

    async def create(self) -> VoiceResult:
        plan = self.plan
        if plan.source is None:
            raise ConfigError(
                f"voice.sample: no {plan.describe()} exists and there is nothing to create it "
                "from: set voice.sample (a local recording), voice.sample_url or, for cosyvoice, "
                "voice.design_prompt"
            )
        oss_url = None
        if plan.family == "cosyvoice" and plan.source == "sample":
            assert self.prepared is not None
            p = self.prepared
            # Uploading first is harmless to repeat; only create has a lasting effect.
            oss_url = await self.client.upload(COSY_MODEL, p.filename, p.data, p.mime)
            self.log.info("uploaded the voice sample (%d bytes) as %s", len(p.data), oss_url)
        intent = self.new_entry(PENDING)
        intent.started_at = time.time()
        self.cache.put(intent)  # before create: a crash from here on is healed by listing
        model, inp, params, oss = self.create_request(oss_url)
        what = f"create {plan.describe()}"
        attempts = max(1, self.options.create_attempts)
        for attempt in range(attempts):
            self.log.info("creating %s (%s)", plan.describe(), plan.source)
            try:
                doc = await self.client.create_once(model, inp, parameters=params, oss=oss)
                break
            except CallFailed as f:
                if not (f.outcome_unknown or f.throttled):
                    self.cache.remove(plan.key)  # a definite "no": nothing was created
                    raise self.client.error_for(f, what) from None
                self.log.warning("%s: %s; checking whether it was created before trying again", what, f.cause)
                found = await self.settle(attempt, f)
                if found is not None:
                    return await self.adopt(found, CREATED)
                if attempt + 1 >= attempts:
                    raise ServiceUnavailable(
                        f"{what} failed: {f.cause}; the voice was not created (checked by "
                        "listing); will try again"
                    ) from None
        return await self.record_created(doc)

    async def settle(self, attempt: int, failure: CallFailed) -> RemoteVoice | None:
        """After a failed create: pause and list before any new attempt."""
        if failure.outcome_unknown:
            return await self.settle_unknown()
        return await self.settle_unknown((self.client.backoff(attempt, failure.reply),))

    async def settle_unknown(self, delays: tuple[float, ...] | None = None) -> RemoteVoice | None:
        """List (after each pause) for a voice an unanswered create may have made."""
        for delay in self.options.settle_delays_s if delays is None else delays:
            await asyncio.sleep(delay)
            found = await self.find_existing()
            if found is not None:
                self.log.info("the create did go through: found %s", found.voice_id)
                return found
        return None

    def create_request(self, oss_url: str | None) -> tuple[str, dict[str, Any], dict[str, Any] | None, bool]:
        plan = self.plan
        if plan.family == "qwen":
            inp: dict[str, Any] = {
                "action": "create", "target_model": plan.target_model,
                "preferred_name": plan.request_name,
            }
            if plan.source == "sample":
                assert self.prepared is not None
                inp["audio"] = {"data": self.prepared.data_uri()}
            else:
                inp["audio"] = {"data": plan.source_value}
            if plan.language:
                inp["language"] = plan.language
            oss = bool(plan.source == "sample_url" and (plan.source_value or "").startswith("oss://"))
            return QWEN_MODEL, inp, None, oss
        inp = {"action": "create_voice", "target_model": plan.target_model, "prefix": plan.request_name}
        if plan.language:
            inp["language_hints"] = [plan.language]
        if plan.is_design:
            # The hint defaults to zh and must match the preview text's language (audit R5).
            lang = plan.language if plan.language in PREVIEW_TEXT else "en"
            inp["voice_prompt"] = plan.source_value
            inp["preview_text"] = PREVIEW_TEXT[lang]
            inp["language_hints"] = [lang]
            return COSY_MODEL, inp, {"sample_rate": 24000, "response_format": "wav"}, False
        url = oss_url or plan.source_value or ""
        return COSY_MODEL, {**inp, "url": url}, None, url.startswith("oss://")

    async def record_created(self, doc: dict[str, Any]) -> VoiceResult:
        plan = self.plan
        out = doc.get("output") or {}
        voice_id = out.get("voice_id") or out.get("voice")
        if not isinstance(voice_id, str) or not voice_id:
            raise EnrollmentError(f"create {plan.describe()}: the reply carries no voice id")
        entry = self.new_entry(DEPLOYING if plan.family == "cosyvoice" else READY)
        entry.voice_id = voice_id
        entry.started_at = (self.cache.get(plan.key) or entry).started_at
        preview = out.get("preview_audio")
        if isinstance(preview, dict) and isinstance(preview.get("data"), str):
            entry.preview = str(self.save_preview(voice_id, preview["data"]))
        self.cache.put(entry)
        self.log.info("created %s: %s", plan.describe(), voice_id)
        for old in self.cache.others_for_name(plan.key):
            self.log.warning(
                "the voice source changed, so a new voice was created; the previous one, %s, "
                "still exists: delete it with `voice-agent voices delete %s` if unused",
                old.voice_id, old.voice_id,
            )
        status = None
        if plan.family == "cosyvoice":
            status = (await self.wait_deployed(voice_id)).status
            entry.state = READY
            self.cache.put(entry)
        return self.result(entry, CREATED, status=status)

    def save_preview(self, voice_id: str, data_b64: str) -> Path:
        """Designed voices come with a spoken preview; keep it so the operator can listen."""
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", voice_id)
        path = self.state_dir / f"voice-preview-{safe}.wav"
        try:
            atomic_write(path, base64.b64decode(data_b64))
        except (ValueError, OSError) as e:
            self.log.warning("could not save the voice preview to %s: %s", path, e)
        else:
            self.log.info("saved the designed voice's preview audio to %s", path)
        return path

    # --- CosyVoice review -------------------------------------------------------------------

    async def wait_deployed(self, voice_id: str, first: RemoteVoice | None = None) -> RemoteVoice:
        """Poll query_voice until OK (backoff, overall timeout); UNDEPLOYED is final."""
        opts = self.options
        deadline = time.monotonic() + opts.deploy_timeout_s
        delay = opts.poll_initial_s
        remote = first
        announced = False
        while True:
            if remote is not None:
                if remote.status == "OK":
                    return remote
                if remote.status == "UNDEPLOYED":
                    raise EnrollmentError(
                        f"voice {voice_id} was rejected by the service's review (UNDEPLOYED) "
                        "and cannot be used. Use a cleaner sample (at least 5 s of continuous "
                        "speech, no music, noise or other voices), then delete the rejected "
                        f"voice with `voice-agent voices delete {voice_id}`"
                    )
                if not announced:
                    self.log.info("voice %s is %s; waiting for the review", voice_id, remote.status)
                    announced = True
            if time.monotonic() + delay > deadline:
                raise DeployTimeout(
                    f"voice {voice_id} is still {remote.status if remote else 'unknown'} after "
                    f"{opts.deploy_timeout_s:.0f} s; it will be checked again at the next attempt"
                )
            await asyncio.sleep(delay)
            delay = min(opts.poll_max_s, delay * opts.poll_factor)
            try:
                remote = await self.client.cosy_query(voice_id)
            except VoiceNotFound:
                raise EnrollmentError(f"voice {voice_id} disappeared while waiting for its review") from None

    # --- helpers ----------------------------------------------------------------------------

    def new_entry(self, state: str) -> CacheEntry:
        p = self.plan
        return CacheEntry(
            family=p.family, target_model=p.target_model, name=p.name, digest=p.digest,
            state=state, request_name=p.request_name, source=p.source or "",
        )

    def result(self, entry: CacheEntry, outcome: str, *, verified: bool = True,
               status: str | None = None, note: str = "") -> VoiceResult:
        assert entry.voice_id
        preview = Path(entry.preview) if entry.preview else None
        return VoiceResult(entry.voice_id, self.plan.family, self.plan.target_model, outcome,
                           verified, preview, status, note)


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "an unknown time"
