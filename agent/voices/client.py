"""Async HTTP client for voice customization and temporary upload (reference §2–3), over aiohttp.

Why not the SDK's `VoiceEnrollmentService`: it is synchronous (it would block the daemon's event
loop) and it retries every call, `create_voice` included, on timeouts and connection errors, which
can create the same voice twice and spend quota. Here idempotent calls (list, query, delete,
getPolicy) retry transient failures with capped exponential backoff, while `create` makes exactly
one attempt and reports whether its outcome is *unknown* (timeout, dropped connection, 5xx) so the
caller can list before it tries again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import aiohttp

from agent import __version__
from agent.account import DashScopeAccount
from agent.secrets import redact
from agent.voices.errors import (
    EnrollmentError,
    ServiceReply,
    ServiceUnavailable,
    classify,
    is_throttle,
    is_transient,
)

COSY_MODEL = "voice-enrollment"
QWEN_MODEL = "qwen-voice-enrollment"
OSS_RESOLVE_HEADER = "X-DashScope-OssResourceResolve"


@dataclass
class ClientOptions:
    """Timeouts and retry policy; tests shrink them."""

    request_timeout_s: float = 30.0
    create_timeout_s: float = 120.0  # the service decodes and checks the audio before answering
    upload_timeout_s: float = 120.0
    retries: int = 4  # extra attempts for idempotent calls
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    page_size: int = 100
    max_pages: int = 100
    user_agent: str = f"voice-agent/{__version__}"


@dataclass
class RemoteVoice:
    """One voice as the service lists it (fields differ per family; normalised here)."""

    voice_id: str
    target_model: str | None = None  # qwen lists it; cosyvoice only in query
    status: str | None = None  # cosyvoice: DEPLOYING | OK | UNDEPLOYED; qwen: None (usable)
    created: str = ""  # gmt_create, "YYYY-MM-DD HH:MM:SS" (sorts as text)
    modified: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


class CallFailed(Exception):
    """One attempt failed. `reply` is None for transport failures (no answer at all)."""

    def __init__(self, reply: ServiceReply | None, cause: str) -> None:
        super().__init__(cause)
        self.reply = reply
        self.cause = cause

    @property
    def outcome_unknown(self) -> bool:
        """True when the service may have acted although we got no success reply."""
        return self.reply is None or self.reply.status in (408, 500, 502, 503, 504)

    @property
    def throttled(self) -> bool:
        return self.reply is not None and is_throttle(self.reply)


class CustomizationClient:
    """The customization endpoint for both families, plus the temporary-upload flow."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        account: DashScopeAccount,
        *,
        options: ClientOptions | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        """`account` must carry its endpoints (`DashScopeAccount.from_settings` does)."""
        self.session = session
        self.endpoints = account.urls
        self.account = account
        self.options = options or ClientOptions()
        self.log = log or logging.getLogger("voice-agent.voices")

    # --- plumbing ---------------------------------------------------------------------------

    def _headers(self, *, oss: bool = False, json_body: bool = True) -> dict[str, str]:
        h = {
            "Accept": "application/json",
            "User-Agent": self.options.user_agent,
        }
        if json_body:
            h["Content-Type"] = "application/json; charset=utf-8"
        if oss:
            h[OSS_RESOLVE_HEADER] = "enable"
        return self.account.headers(h)

    async def _once(
        self, method: str, url: str, *, action: str, timeout_s: float, **kwargs: Any
    ) -> dict[str, Any]:
        """One HTTP exchange → the JSON body of a 2xx reply; CallFailed otherwise."""
        try:
            async with self.session.request(
                method, url, timeout=aiohttp.ClientTimeout(total=timeout_s), **kwargs
            ) as resp:
                body = await resp.read()
                status = resp.status
                headers = resp.headers
        except asyncio.TimeoutError:
            raise CallFailed(None, f"no answer within {timeout_s:g} s") from None
        except (aiohttp.ClientError, OSError) as e:
            raise CallFailed(None, redact(f"{e.__class__.__name__}: {e}")) from None
        if 200 <= status < 300:
            try:
                doc = json.loads(body) if body else {}
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise CallFailed(
                    ServiceReply(status, "", "the reply is not JSON", action=action),
                    "malformed reply",
                ) from None
            if not isinstance(doc, dict):
                raise CallFailed(ServiceReply(status, "", "unexpected reply", action=action), "malformed reply")
            return doc
        reply = _parse_error(status, body, headers, action)
        raise CallFailed(reply, reply.describe())

    async def _retrying(self, method: str, url: str, *, action: str, what: str, **kwargs: Any) -> dict[str, Any]:
        """Idempotent call: retry transport failures and transient replies, then classify."""
        opts = self.options
        attempt = 0
        while True:
            try:
                return await self._once(method, url, action=action, timeout_s=opts.request_timeout_s, **kwargs)
            except CallFailed as f:
                retry = f.reply is None or is_transient(f.reply)
                if not retry or attempt >= opts.retries:
                    raise self.error_for(f, what) from None
                delay = self.backoff(attempt, f.reply)
                self.log.info("%s: %s; retrying in %.1f s", what, f.cause, delay)
                attempt += 1
                await asyncio.sleep(delay)

    def backoff(self, attempt: int, reply: ServiceReply | None = None) -> float:
        """Capped exponential backoff with jitter; a server's Retry-After wins if longer."""
        base = min(self.options.backoff_max_s, self.options.backoff_initial_s * 2**attempt)
        delay = base * random.uniform(0.75, 1.25)
        if reply is not None and reply.retry_after_s is not None:
            delay = max(delay, min(reply.retry_after_s, 60.0))
        return delay

    @staticmethod
    def error_for(f: CallFailed, what: str) -> Exception:
        if f.reply is None:
            return ServiceUnavailable(f"{what} failed: cannot reach the service ({f.cause})")
        return classify(f.reply, what=what)

    async def customization(
        self,
        model: str,
        inp: dict[str, Any],
        *,
        what: str,
        parameters: dict[str, Any] | None = None,
        oss: bool = False,
    ) -> dict[str, Any]:
        """An idempotent customization call (list, query, delete), with retries."""
        body: dict[str, Any] = {"model": model, "input": inp}
        if parameters:
            body["parameters"] = parameters
        return await self._retrying(
            "POST", self.endpoints.customization, action=str(inp.get("action")), what=what,
            json=body, headers=self._headers(oss=oss),
        )

    async def call_once(self, model: str, inp: dict[str, Any]) -> dict[str, Any]:
        """Exactly one read-only customization call; CallFailed says what went wrong (`check`)."""
        return await self._once(
            "POST", self.endpoints.customization, action=str(inp.get("action")),
            timeout_s=self.options.request_timeout_s, json={"model": model, "input": inp},
            headers=self._headers(),
        )

    async def create_once(
        self,
        model: str,
        inp: dict[str, Any],
        *,
        parameters: dict[str, Any] | None = None,
        oss: bool = False,
    ) -> dict[str, Any]:
        """Exactly one create attempt; raises CallFailed (see `outcome_unknown`)."""
        body: dict[str, Any] = {"model": model, "input": inp}
        if parameters:
            body["parameters"] = parameters
        return await self._once(
            "POST", self.endpoints.customization, action=str(inp.get("action")),
            timeout_s=self.options.create_timeout_s, json=body, headers=self._headers(oss=oss),
        )

    async def _all_pages(self, model: str, inp: dict[str, Any], what: str) -> list[dict[str, Any]]:
        """Every page of a list. Stops at an empty page (the services' page caps are not
        documented, so a short page does not prove it was the last one)."""
        seen: dict[str, dict[str, Any]] = {}
        size = self.options.page_size
        for index in range(self.options.max_pages):
            doc = await self.customization(
                model, {**inp, "page_index": index, "page_size": size}, what=what
            )
            output = doc.get("output") or {}
            items = output.get("voice_list") or []
            if not isinstance(items, list):
                raise EnrollmentError(f"{what}: unexpected reply (voice_list is not a list)")
            for item in items:
                if isinstance(item, dict):
                    vid = item.get("voice_id") or item.get("voice")
                    if isinstance(vid, str):
                        seen.setdefault(vid, item)
            total = output.get("total_count")
            if not items or (isinstance(total, int) and len(seen) >= total):
                break
        return list(seen.values())

    # --- CosyVoice (voice-enrollment) -------------------------------------------------------

    async def cosy_list(self, prefix: str | None = None) -> list[RemoteVoice]:
        inp: dict[str, Any] = {"action": "list_voice"}
        if prefix:
            inp["prefix"] = prefix
        items = await self._all_pages(COSY_MODEL, inp, "list cosyvoice voices")
        return [
            RemoteVoice(
                voice_id=i["voice_id"],
                target_model=i.get("target_model"),
                status=i.get("status"),
                created=str(i.get("gmt_create") or ""),
                modified=str(i.get("gmt_modified") or ""),
                raw=i,
            )
            for i in items
        ]

    async def cosy_query(self, voice_id: str) -> RemoteVoice:
        doc = await self.customization(
            COSY_MODEL, {"action": "query_voice", "voice_id": voice_id},
            what=f"query cosyvoice voice {voice_id}",
        )
        out = doc.get("output") or {}
        return RemoteVoice(
            voice_id=voice_id,
            target_model=out.get("target_model"),
            status=out.get("status"),
            created=str(out.get("gmt_create") or ""),
            modified=str(out.get("gmt_modified") or ""),
            raw=out,
        )

    async def cosy_delete(self, voice_id: str) -> None:
        await self.customization(
            COSY_MODEL, {"action": "delete_voice", "voice_id": voice_id},
            what=f"delete cosyvoice voice {voice_id}",
        )

    # --- Qwen (qwen-voice-enrollment) -------------------------------------------------------

    async def qwen_list(self) -> list[RemoteVoice]:
        items = await self._all_pages(QWEN_MODEL, {"action": "list"}, "list qwen voices")
        return [
            RemoteVoice(
                voice_id=i["voice"],
                target_model=i.get("target_model"),
                created=str(i.get("gmt_create") or ""),
                modified=str(i.get("gmt_modified") or ""),
                raw=i,
            )
            for i in items
        ]

    async def qwen_delete(self, voice: str) -> None:
        await self.customization(
            QWEN_MODEL, {"action": "delete", "voice": voice}, what=f"delete qwen voice {voice}"
        )

    # --- temporary upload (local file → oss:// URL) -----------------------------------------

    async def upload(self, model: str, filename: str, data: bytes, mime: str) -> str:
        """getPolicy, then a multipart POST to the policy's upload host; returns `oss://<key>`.

        The file is bound to `model` (it must be the model that will read it). A policy that
        expired between the two steps is fetched again once.
        """
        for fresh_policy_attempt in range(2):
            doc = await self._retrying(
                "GET", self.endpoints.uploads, action="getPolicy",
                what="get an upload policy", params={"action": "getPolicy", "model": model},
                headers=self._headers(json_body=False),
            )
            policy = doc.get("data") or doc.get("output")
            if not isinstance(policy, dict) or "upload_host" not in policy:
                raise EnrollmentError("get an upload policy: unexpected reply (no upload_host)")
            try:
                return await self._post_to_oss(policy, filename, data, mime)
            except _PolicyExpired:
                if fresh_policy_attempt:
                    raise EnrollmentError("upload the voice sample: the upload policy keeps expiring") from None
        raise AssertionError("unreachable")

    async def _post_to_oss(self, policy: dict[str, Any], filename: str, data: bytes, mime: str) -> str:
        key = f"{policy['upload_dir']}/{filename}"
        headers = {
            "User-Agent": f"voice-agent/{__version__}",
            "Accept": "application/json",
            "Date": formatdate(usegmt=True),
        }
        attempt = 0
        while True:
            form = aiohttp.FormData()
            # The SDK's field set and order (OssUtils.upload); the file part must come last.
            form.add_field("OSSAccessKeyId", str(policy["oss_access_key_id"]))
            form.add_field("Signature", str(policy["signature"]))
            form.add_field("policy", str(policy["policy"]))
            form.add_field("key", key)
            form.add_field("x-oss-object-acl", str(policy["x_oss_object_acl"]))
            form.add_field("x-oss-forbid-overwrite", str(policy["x_oss_forbid_overwrite"]))
            form.add_field("success_action_status", "200")
            form.add_field("x-oss-content-type", mime)
            form.add_field("file", data, filename=filename, content_type=mime)
            try:
                async with self.session.post(
                    policy["upload_host"], data=form, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.options.upload_timeout_s),
                ) as resp:
                    text = (await resp.read()).decode("utf-8", "replace")
                    status = resp.status
            except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as e:
                cause = "timed out" if isinstance(e, asyncio.TimeoutError) else f"{e.__class__.__name__}: {e}"
                if attempt >= self.options.retries:
                    raise ServiceUnavailable(redact(f"upload the voice sample failed: {cause}")) from None
                attempt += 1
                await asyncio.sleep(self.backoff(attempt))
                continue
            code = _xml_field(text, "Code")
            if 200 <= status < 300:
                return f"oss://{key}"
            if status == 409 and code == "FileAlreadyExists" and attempt > 0:
                return f"oss://{key}"  # an earlier attempt landed; its answer was lost
            if status == 403 and "expired" in text.lower():
                raise _PolicyExpired()
            message = _xml_field(text, "Message") or text[:200]
            if status >= 500 and attempt < self.options.retries:
                attempt += 1
                await asyncio.sleep(self.backoff(attempt))
                continue
            cls = ServiceUnavailable if status >= 500 else EnrollmentError
            raise cls(redact(f"upload the voice sample failed: HTTP {status} {code}: {message}"))


class _PolicyExpired(Exception):
    pass


def _xml_field(text: str, name: str) -> str:
    m = re.search(rf"<{name}>(.*?)</{name}>", text, re.S)
    return m.group(1).strip() if m else ""


def _parse_error(status: int, body: bytes, headers: Any, action: str) -> ServiceReply:
    code, message, rid = "", "", ""
    try:
        doc = json.loads(body) if body else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error") if isinstance(doc.get("error"), dict) else doc
        code = str(err.get("code") or "")
        message = str(err.get("message") or err.get("msg") or "")
        rid = str(doc.get("request_id") or "")
    else:
        message = body[:200].decode("utf-8", "replace")
    rid = rid or headers.get("x-request-id", "")
    retry_after: float | None = None
    try:
        if headers.get("retry-after-ms"):
            retry_after = float(headers["retry-after-ms"]) / 1000.0
        elif headers.get("retry-after"):
            retry_after = float(headers["retry-after"])
    except ValueError:
        retry_after = None
    return ServiceReply(status, code, message, rid, action, retry_after)
