"""Temporary file upload: `GET /api/v1/uploads?action=getPolicy` and an OSS-style POST sink.

The real flow hands the client a signed OSS browser-upload policy; the client posts the file to
the bucket and then refers to it as `oss://<key>`. The emulator signs its own policies (HMAC-SHA1
with a per-run secret, like OSS) and stores the files in memory, so the SDK's `OssUtils.upload`
works unchanged and customization can resolve the `oss://` URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from agent.emulator.context import EmulatorContext, StoredUpload
from agent.emulator.errors import invalid, request_id
from agent.emulator.faults import FAULTS_HEADER, FaultSpecError
from agent.emulator.httputil import abort_connection, json_response, wait_until_client_leaves
from agent.emulator.region import check_upload

SINK_PATH = "/_oss/upload"
BUCKET = "dashscope-emulator"
POLICY_TTL_S = 300
MAX_FILE_MB = 100
CAPACITY_LIMIT_MB = 999_999_999
REQUIRED_FIELDS = ("OSSAccessKeyId", "Signature", "policy", "key")
_OSS_FAULTS = {
    403: ("AccessDenied", "AccessDenied"),
    429: ("RequestRateLimit", "Too many requests."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    503: ("ServiceUnavailable", "Please reduce your request rate."),
}


def _secret(ctx: EmulatorContext) -> bytes:
    """Per-emulator signing secret (never leaves the process)."""
    secret = getattr(ctx, "_oss_secret", None)
    if secret is None:
        secret = secrets.token_bytes(32)
        ctx._oss_secret = secret  # type: ignore[attr-defined]
    return secret


def _access_key_id(ctx: EmulatorContext) -> str:
    return "LTAI" + hashlib.sha1(_secret(ctx)).hexdigest()[:16]


def _sign(ctx: EmulatorContext, policy_b64: str) -> str:
    return base64.b64encode(
        hmac.new(_secret(ctx), policy_b64.encode(), hashlib.sha1).digest()
    ).decode()


async def handle_get_policy(request: web.Request, ctx: EmulatorContext) -> web.StreamResponse:
    action = request.query.get("action")
    if action != "getPolicy":
        raise invalid(f"Unsupported action '{action}'; only action=getPolicy is supported.")
    model = request.query.get("model", "").strip()
    if not model:
        raise invalid("Missing required parameter 'model'.")
    check_upload(ctx.options.region)  # Beijing only (UPLOAD)
    upload_dir = (
        f"dashscope-instant/{hashlib.md5(model.encode()).hexdigest()}/"
        + time.strftime("%Y-%m-%d")
        + f"/{uuid.uuid4()}"
    )
    expiration = datetime.fromtimestamp(time.time() + POLICY_TTL_S, tz=timezone.utc)
    policy = {
        "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "conditions": [
            {"bucket": BUCKET},
            ["content-length-range", 0, MAX_FILE_MB * 1024 * 1024],
            ["starts-with", "$key", upload_dir],
            {"x-oss-object-acl": "private"},
            {"x-oss-forbid-overwrite": "true"},
            {"x-emulator-model": model},
        ],
    }
    policy_b64 = base64.b64encode(json.dumps(policy).encode()).decode()
    data = {
        "policy": policy_b64,
        "signature": _sign(ctx, policy_b64),
        "upload_dir": upload_dir,
        "upload_host": f"{request.scheme}://{request.host}{SINK_PATH}",
        "expire_in_seconds": POLICY_TTL_S,
        "max_file_size_mb": MAX_FILE_MB,
        "capacity_limit_mb": CAPACITY_LIMIT_MB,
        "oss_access_key_id": _access_key_id(ctx),
        "x_oss_object_acl": "private",
        "x_oss_forbid_overwrite": "true",
    }
    return json_response(request, {"request_id": request_id(request), "data": data})


def _oss_error(status: int, code: str, message: str) -> web.Response:
    """OSS answers in XML, not in the DashScope JSON envelope."""
    rid = uuid.uuid4().hex.upper()[:24]
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{escape(code)}</Code>\n  <Message>{escape(message)}</Message>\n"
        f"  <RequestId>{rid}</RequestId>\n  <HostId>{BUCKET}.emulator</HostId>\n</Error>\n"
    )
    return web.Response(
        status=status, text=body, content_type="application/xml", headers={"x-oss-request-id": rid}
    )


def _check_policy(ctx: EmulatorContext, form: dict[str, Any]) -> tuple[dict, web.Response | None]:
    missing = [f for f in REQUIRED_FIELDS if not form.get(f)]
    if missing:
        return {}, _oss_error(
            400, "InvalidArgument", f"Missing form field(s): {', '.join(missing)}"
        )
    if form["OSSAccessKeyId"] != _access_key_id(ctx):
        return {}, _oss_error(403, "InvalidAccessKeyId", "The OSS Access Key Id does not exist.")
    if not hmac.compare_digest(form["Signature"], _sign(ctx, form["policy"])):
        return {}, _oss_error(
            403, "SignatureDoesNotMatch", "The request signature we calculated does not match."
        )
    policy = json.loads(base64.b64decode(form["policy"]))
    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%S.000Z").replace(
        tzinfo=timezone.utc
    )
    if expires.timestamp() < time.time():
        return {}, _oss_error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    return policy, None


def sink_handler(ctx: EmulatorContext) -> web.RequestHandler:
    """The bucket: multipart POST, authorised by the signed policy (no DashScope API key)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            cf = ctx.faults.for_connection("uploads", request)
        except FaultSpecError as e:
            return _oss_error(400, "InvalidArgument", f"{FAULTS_HEADER}: {e}")
        if cf.active:
            await cf.start_stall()
            await cf.delay()
            if cf.http_status:
                code, message = _OSS_FAULTS.get(
                    cf.http_status, ("InternalError", "Injected fault.")
                )
                return _oss_error(cf.http_status, code, message)
            if cf.drop_after is not None or cf.half_open:
                if cf.half_open:
                    await wait_until_client_leaves(request)
                abort_connection(request)
                return web.Response(status=500)  # never reaches the client
        try:
            form_data = await request.post()
        except ValueError as e:
            return _oss_error(400, "MalformedPOSTRequest", f"The body is not valid multipart: {e}")
        form = {k: v for k, v in form_data.items() if isinstance(v, str)}
        policy, error = _check_policy(ctx, form)
        if error is not None:
            return error
        conditions = policy["conditions"]
        upload_dir = next(c[2] for c in conditions if isinstance(c, list) and c[0] == "starts-with")
        model = next(c["x-emulator-model"] for c in conditions if "x-emulator-model" in c)
        key = form["key"]
        if not key.startswith(upload_dir):
            return _oss_error(
                403,
                "AccessDenied",
                'Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", ...]',
            )
        file = form_data.get("file")
        if file is None or isinstance(file, str):
            return _oss_error(400, "InvalidArgument", "Missing file part 'file'.")
        data = file.file.read()
        if len(data) > MAX_FILE_MB * 1024 * 1024:
            return _oss_error(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."
            )
        if key in ctx.stores.uploads and form.get("x-oss-forbid-overwrite", "false") == "true":
            return _oss_error(409, "FileAlreadyExists", "The object you specified already exists.")
        content_type = (
            form.get("x-oss-content-type") or file.content_type or "application/octet-stream"
        )
        ctx.stores.uploads[key] = StoredUpload(data, content_type, model, time.time())
        ctx.log.info("oss upload %s (%d bytes, model %s)", key, len(data), model)
        status = form.get("success_action_status", "204")
        if status == "200":
            return web.Response(status=200)
        if status == "201":
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>'
                f"<Bucket>{BUCKET}</Bucket><Key>{escape(key)}</Key></PostResponse>\n"
            )
            return web.Response(status=201, text=body, content_type="application/xml")
        return web.Response(status=204)

    return handle
