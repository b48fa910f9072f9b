"""Temporary upload: getPolicy and the OSS-style multipart sink."""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest

from agent.emulator.server import Emulator

POLICY_FIELDS = {
    "policy",
    "signature",
    "upload_dir",
    "upload_host",
    "oss_access_key_id",
    "x_oss_object_acl",
    "x_oss_forbid_overwrite",
    "max_file_size_mb",
    "expire_in_seconds",
    "capacity_limit_mb",
}


@pytest.fixture
def get_policy(emulator: Emulator, http, headers):
    async def _get(model="voice-enrollment"):
        r = await http.get(
            emulator.base_url + "/api/v1/uploads",
            params={"action": "getPolicy", "model": model},
            headers=headers,
        )
        assert r.status == 200
        return (await r.json())["data"]

    return _get


def form_for(
    cert: dict, name: str = "a.wav", data: bytes = b"RIFF....", overrides: dict | None = None
) -> aiohttp.FormData:
    fields = {
        "OSSAccessKeyId": cert["oss_access_key_id"],
        "Signature": cert["signature"],
        "policy": cert["policy"],
        "key": cert["upload_dir"] + "/" + name,
        "x-oss-object-acl": cert["x_oss_object_acl"],
        "x-oss-forbid-overwrite": cert["x_oss_forbid_overwrite"],
        "success_action_status": "200",
        "x-oss-content-type": "audio/wav",
    }
    fields.update(overrides or {})
    form = aiohttp.FormData()
    for k, v in fields.items():
        if v is not None:
            form.add_field(k, v)
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    return form


async def test_policy_fields(get_policy, emulator: Emulator) -> None:
    data = await get_policy("qwen-voice-enrollment")
    assert set(data) == POLICY_FIELDS
    assert data["upload_host"] == emulator.base_url + "/_oss/upload"
    assert data["upload_dir"].startswith("dashscope-instant/")
    assert data["x_oss_forbid_overwrite"] == "true" and data["x_oss_object_acl"] == "private"
    policy = json.loads(base64.b64decode(data["policy"]))
    assert "expiration" in policy and policy["conditions"]


async def test_policy_request_errors(emulator: Emulator, http, headers) -> None:
    url = emulator.base_url + "/api/v1/uploads"
    r = await http.get(url, params={"action": "getPolicy"}, headers=headers)
    assert r.status == 400 and "model" in (await r.json())["message"]
    r = await http.get(url, params={"action": "list", "model": "m"}, headers=headers)
    assert r.status == 400 and "getPolicy" in (await r.json())["message"]
    r = await http.get(url, params={"action": "getPolicy", "model": "m"})
    assert r.status == 401 and (await r.json())["code"] == "InvalidApiKey"


async def test_upload_and_store(get_policy, emulator: Emulator, http) -> None:
    policy = await get_policy()
    r = await http.post(policy["upload_host"], data=form_for(policy, data=b"hello bytes"))
    assert r.status == 200 and await r.read() == b""
    stored = emulator.context.stores.uploads[policy["upload_dir"] + "/a.wav"]
    assert stored.data == b"hello bytes" and stored.content_type == "audio/wav"
    assert stored.model == "voice-enrollment"
    # forbid-overwrite
    r = await http.post(policy["upload_host"], data=form_for(policy, data=b"again"))
    assert r.status == 409 and "<Code>FileAlreadyExists</Code>" in await r.text()
    # default success status is 204, as on OSS
    r = await http.post(
        policy["upload_host"],
        data=form_for(policy, "b.wav", overrides={"success_action_status": None}),
    )
    assert r.status == 204


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"Signature": "AAAA"}, 403, "SignatureDoesNotMatch"),
        ({"OSSAccessKeyId": "LTAIwrong"}, 403, "InvalidAccessKeyId"),
        ({"policy": None}, 400, "InvalidArgument"),
        ({"key": "elsewhere/a.wav"}, 403, "AccessDenied"),
    ],
)
async def test_upload_rejections(get_policy, http, overrides, status, code) -> None:
    policy = await get_policy()
    r = await http.post(policy["upload_host"], data=form_for(policy, overrides=overrides))
    assert r.status == status
    text = await r.text()
    assert (
        r.headers["Content-Type"].startswith("application/xml") and f"<Code>{code}</Code>" in text
    )


async def test_upload_without_file_or_multipart(get_policy, http) -> None:
    policy = await get_policy()
    form = aiohttp.FormData()
    for k, v in (
        ("OSSAccessKeyId", policy["oss_access_key_id"]),
        ("Signature", policy["signature"]),
        ("policy", policy["policy"]),
        ("key", policy["upload_dir"] + "/x"),
    ):
        form.add_field(k, v)
    r = await http.post(policy["upload_host"], data=form)
    assert r.status == 400 and "file" in await r.text()
    r = await http.post(policy["upload_host"], data=b"raw")
    assert r.status == 400


async def test_policy_of_other_emulator_is_rejected(get_policy, http) -> None:
    policy = await get_policy()
    other = Emulator()
    await other.start()
    try:
        r = await http.post(other.base_url + "/_oss/upload", data=form_for(policy))
        assert r.status == 403
    finally:
        await other.stop()


async def test_sink_honours_upload_faults(get_policy, emulator: Emulator, http) -> None:
    policy = await get_policy()
    emulator.context.faults.set("http=503@uploads*once")
    r = await http.post(policy["upload_host"], data=form_for(policy))
    assert r.status == 503 and "<Code>ServiceUnavailable</Code>" in await r.text()
    r = await http.post(policy["upload_host"], data=form_for(policy))
    assert r.status == 200
    with pytest.raises(aiohttp.ClientError):
        await http.post(
            policy["upload_host"],
            data=form_for(policy, "c.wav"),
            headers={"X-Emulator-Faults": "drop_after=1"},
        )
    assert policy["upload_dir"] + "/c.wav" not in emulator.context.stores.uploads
