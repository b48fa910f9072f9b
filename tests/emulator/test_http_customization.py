"""Voice customization over HTTP: CosyVoice, Qwen clone and Qwen design families, errors."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import wave

import pytest

from agent.emulator.server import Emulator

PATH = "/api/v1/services/audio/tts/customization"
TS = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"


@pytest.fixture
def call(emulator: Emulator, http, headers):
    async def _call(model: str, action: str, extra_headers=None, parameters=None, **inp):
        body = {"model": model, "input": {"action": action, **inp}}
        if parameters is not None:
            body["parameters"] = parameters
        r = await http.post(
            emulator.base_url + PATH, json=body, headers={**headers, **(extra_headers or {})}
        )
        data = await r.json()
        assert r.headers["x-request-id"] == data["request_id"]
        return r.status, data

    return _call


def cosy(call, action, **inp):
    return call("voice-enrollment", action, **inp)


# --- CosyVoice -----------------------------------------------------------------------------------


async def test_cosy_create_deploys_then_ok(call, emulator: Emulator) -> None:
    status, body = await cosy(
        call,
        "create_voice",
        target_model="cosyvoice-v3-plus",
        prefix="myvoice",
        url="https://host/sample.wav",
        language_hints=["en"],
    )
    assert status == 200 and body["usage"] == {"count": 1}
    voice_id = body["output"]["voice_id"]
    assert re.fullmatch(r"cosyvoice-v3-plus-myvoice-[0-9a-f]{8}", voice_id)

    status, body = await cosy(call, "query_voice", voice_id=voice_id)
    out = body["output"]
    assert out["status"] == "DEPLOYING"
    assert (
        out["target_model"] == "cosyvoice-v3-plus"
        and out["resource_link"] == "https://host/sample.wav"
    )
    assert re.fullmatch(TS, out["gmt_create"]) and re.fullmatch(TS, out["gmt_modified"])
    await asyncio.sleep(emulator.context.options.enroll_delay_s + 0.05)
    _, body = await cosy(call, "query_voice", voice_id=voice_id)
    assert body["output"]["status"] == "OK"


async def test_cosy_list_prefix_and_paging(call) -> None:
    ids = []
    for prefix in ("aa", "aa", "aa", "bb"):
        _, body = await cosy(
            call,
            "create_voice",
            target_model="cosyvoice-v3-flash",
            prefix=prefix,
            url="https://h/x.wav",
        )
        ids.append(body["output"]["voice_id"])
    _, body = await cosy(call, "list_voice", prefix="aa", page_index=0, page_size=2)
    first = body["output"]["voice_list"]
    _, body = await cosy(call, "list_voice", prefix="aa", page_index=1, page_size=2)
    second = body["output"]["voice_list"]
    assert len(first) == 2 and len(second) == 1
    assert {v["voice_id"] for v in first + second} == set(ids[:3])
    assert set(first[0]) == {"gmt_create", "voice_id", "gmt_modified", "status"}
    _, body = await cosy(call, "list_voice")
    assert len(body["output"]["voice_list"]) == 4  # default page_size 10


async def test_cosy_update_and_delete(call) -> None:
    _, body = await cosy(
        call, "create_voice", target_model="cosyvoice-v3-plus", prefix="up", url="https://h/a.wav"
    )
    vid = body["output"]["voice_id"]
    status, body = await cosy(call, "update_voice", voice_id=vid, url="https://h/b.wav")
    assert status == 200 and body["output"] == {}
    _, body = await cosy(call, "query_voice", voice_id=vid)
    assert body["output"]["resource_link"] == "https://h/b.wav"
    assert body["output"]["status"] == "DEPLOYING"  # the new sample is reviewed again
    status, body = await cosy(call, "delete_voice", voice_id=vid)
    assert status == 200 and body["output"] == {}
    for action, extra in (
        ("query_voice", {}),
        ("delete_voice", {}),
        ("update_voice", {"url": "https://h/c.wav"}),
    ):
        status, body = await cosy(call, action, voice_id=vid, **extra)
        assert (status, body["code"], body["message"]) == (
            400,
            "BadRequest.ResourceNotExist",
            "The Required resource not exist.",
        )


async def test_cosy_undeployed_marker(call, emulator: Emulator) -> None:
    _, a = await cosy(
        call,
        "create_voice",
        target_model="cosyvoice-v3-plus",
        prefix="undeployed",
        url="https://h/x.wav",
    )
    _, b = await cosy(
        call,
        "create_voice",
        target_model="cosyvoice-v3-plus",
        prefix="ok",
        url="https://h/undeployed.wav",
    )
    await asyncio.sleep(emulator.context.options.enroll_delay_s + 0.05)
    for body in (a, b):
        _, q = await cosy(call, "query_voice", voice_id=body["output"]["voice_id"])
        assert q["output"]["status"] == "UNDEPLOYED"


@pytest.mark.parametrize("prefix", ["Upper", "under_score", "waytoolong12", "", "sp ace"])
async def test_cosy_prefix_rules(call, prefix) -> None:
    status, body = await cosy(
        call, "create_voice", target_model="cosyvoice-v3-plus", prefix=prefix, url="https://h/x.wav"
    )
    assert status == 400 and body["code"] == "InvalidParameter" and "prefix" in body["message"]


@pytest.mark.parametrize(
    ("inp", "needle"),
    [
        ({"prefix": "a", "url": "https://h/x.wav"}, "target_model"),
        ({"target_model": "cosyvoice-v3-plus", "url": "https://h/x.wav"}, "prefix"),
        ({"target_model": "cosyvoice-v3-plus", "prefix": "a"}, "url"),
        ({"target_model": 5, "prefix": "a", "url": "https://h/x.wav"}, "must be a string"),
        ({"target_model": "gpt-4", "prefix": "a", "url": "https://h/x.wav"}, "target_model"),
        ({"target_model": "cosyvoice-v3-plus", "prefix": "a", "url": "ftp://h/x.wav"}, "url"),
        (
            {
                "target_model": "cosyvoice-v3-plus",
                "prefix": "a",
                "url": "https://h/x.wav",
                "language_hints": "en",
            },
            "language_hints",
        ),
        (
            {
                "target_model": "cosyvoice-v3-plus",
                "prefix": "a",
                "url": "https://h/x.wav",
                "language_hints": ["xx"],
            },
            "language_hints",
        ),
    ],
)
async def test_cosy_create_validation(call, inp, needle) -> None:
    status, body = await cosy(call, "create_voice", **inp)
    assert status == 400 and body["code"] == "InvalidParameter" and needle in body["message"]


async def test_cosy_data_uri_samples(call, samples) -> None:
    base = {"target_model": "cosyvoice-v3-plus", "prefix": "d"}
    status, body = await cosy(
        call, "create_voice", url=samples.data_uri(samples.speech_wav(6.0)), **base
    )
    assert status == 200
    assert body["output"]["voice_id"].startswith("cosyvoice-v3-plus-d-")
    status, body = await cosy(
        call, "create_voice", url=samples.data_uri(b"not audio at all"), **base
    )
    assert (status, body["code"]) == (400, "Audio.DecoderError")
    low = samples.speech_wav(6.0, rate=8000)
    status, body = await cosy(call, "create_voice", url=samples.data_uri(low), **base)
    assert (status, body["code"]) == (400, "Audio.AudioRateError")
    status, body = await cosy(
        call, "create_voice", url=samples.data_uri(samples.speech_wav(61.0, 16000)), **base
    )
    assert (status, body["code"]) == (400, "Audio.DurationLimitError")
    status, body = await cosy(
        call, "create_voice", url=samples.data_uri(samples.silence_wav()), **base
    )
    assert (status, body["code"], body["message"]) == (500, "InternalError", "request asr failed")
    status, body = await cosy(call, "create_voice", url="data:audio/wav;base64,!!!", **base)
    assert (status, body["code"]) == (400, "InvalidParameter")


async def test_cosy_short_speech_ends_undeployed(call, samples, emulator: Emulator) -> None:
    _, body = await cosy(
        call,
        "create_voice",
        target_model="cosyvoice-v3-plus",
        prefix="short",
        url=samples.data_uri(samples.speech_wav(2.0)),
    )
    await asyncio.sleep(emulator.context.options.enroll_delay_s + 0.05)
    _, q = await cosy(call, "query_voice", voice_id=body["output"]["voice_id"])
    assert q["output"]["status"] == "UNDEPLOYED"


async def test_cosy_download_failure_marker(call) -> None:
    status, body = await cosy(
        call,
        "create_voice",
        target_model="cosyvoice-v3-plus",
        prefix="a",
        url="https://h/download_failed.wav",
    )
    assert (status, body["code"]) == (400, "BadRequest.InputDownloadFailed")


async def test_cosy_quota(call, emulator: Emulator) -> None:
    emulator.context.options.voice_quota = 2
    for _ in range(2):
        status, _ = await cosy(
            call,
            "create_voice",
            target_model="cosyvoice-v3-plus",
            prefix="q",
            url="https://h/x.wav",
        )
        assert status == 200
    status, body = await cosy(
        call, "create_voice", target_model="cosyvoice-v3-plus", prefix="q", url="https://h/x.wav"
    )
    assert (status, body["code"]) == (400, "Throttling.AllocationQuota")


async def test_cosy_voice_design(call, emulator: Emulator) -> None:
    status, body = await cosy(
        call,
        "create_voice",
        target_model="cosyvoice-v3.5-plus",
        prefix="announcer",
        voice_prompt="A calm middle-aged male announcer.",
        preview_text="Hello everyone.",
        parameters={"sample_rate": 16000, "response_format": "wav"},
    )
    assert status == 200
    out = body["output"]
    assert re.fullmatch(r"cosyvoice-v3\.5-plus-vd-announcer-[0-9a-f]{8}", out["voice_id"])
    wav = base64.b64decode(out["preview_audio"]["data"])
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getframerate() == 16000 and w.getnframes() > 16000 * 0.3
    status, body = await cosy(
        call,
        "create_voice",
        target_model="cosyvoice-v3.5-plus",
        prefix="a",
        voice_prompt="x" * 501,
        preview_text="hi",
    )
    assert status == 400 and "voice_prompt" in body["message"]
    status, body = await cosy(
        call,
        "create_voice",
        target_model="cosyvoice-v3.5-plus",
        prefix="a",
        voice_prompt="calm",
        preview_text="hi",
        parameters={"response_format": "mp3"},
    )
    assert status == 400 and "response_format" in body["message"]


# --- oss:// resolution ---------------------------------------------------------------------------


async def test_oss_url_needs_resolve_header(call, emulator: Emulator, samples) -> None:
    from agent.emulator.context import StoredUpload

    key = "dashscope-instant/abc/2026-01-01/x/sample.wav"
    emulator.context.stores.uploads[key] = StoredUpload(
        samples.speech_wav(), "audio/x-wav", "voice-enrollment", 0
    )
    base = {"target_model": "cosyvoice-v3-plus", "prefix": "oss", "url": f"oss://{key}"}
    status, body = await cosy(call, "create_voice", **base)
    assert status == 400 and "X-DashScope-OssResourceResolve" in body["message"]
    resolve = {"X-DashScope-OssResourceResolve": "enable"}
    status, body = await call("voice-enrollment", "create_voice", extra_headers=resolve, **base)
    assert status == 200
    status, body = await call(
        "voice-enrollment",
        "create_voice",
        extra_headers=resolve,
        **{**base, "url": "oss://missing/file.wav"},
    )
    assert (status, body["code"]) == (400, "BadRequest.InputDownloadFailed")


# --- Qwen voice enrollment -----------------------------------------------------------------------

QWEN_TARGET = "qwen3-tts-vc-realtime-2026-01-15"


async def test_qwen_clone_create_list_query_delete(call, samples) -> None:
    status, body = await call(
        "qwen-voice-enrollment",
        "create",
        target_model=QWEN_TARGET,
        preferred_name="guan_yu",
        audio={"data": samples.data_uri(samples.speech_wav())},
        language="zh",
    )
    assert status == 200
    voice = body["output"]["voice"]
    assert re.fullmatch(r"qwen-tts-vc-guan_yu-voice-\d{17}-[0-9a-f]{4}", voice)
    assert body["output"]["target_model"] == QWEN_TARGET
    status, body = await call(
        "qwen-voice-enrollment",
        "create",
        target_model="qwen3.5-omni-flash-realtime",
        preferred_name="omni",
        audio={"data": samples.data_uri(samples.speech_wav())},
    )
    omni = body["output"]["voice"]
    assert omni.startswith("qwen-omni-vc-omni-voice-")

    _, body = await call("qwen-voice-enrollment", "list", page_index=0, page_size=10)
    out = body["output"]
    assert out["total_count"] == 2 and [v["voice"] for v in out["voice_list"]] == [omni, voice]
    assert re.fullmatch(TS, out["voice_list"][0]["gmt_create"])
    _, body = await call("qwen-voice-enrollment", "list", page_index=1, page_size=1)
    assert [v["voice"] for v in body["output"]["voice_list"]] == [voice]

    status, body = await call("qwen-voice-enrollment", "query", voice=voice)
    assert status == 200 and body["output"]["voice"] == voice and body["output"]["language"] == "zh"

    status, body = await call("qwen-voice-enrollment", "delete", voice=voice)
    assert status == 200 and "output" not in body and body["usage"] == {"count": 0}
    for action in ("delete", "query"):
        status, body = await call("qwen-voice-enrollment", action, voice=voice)
        assert (status, body["code"], body["message"]) == (
            400,
            "BadRequest.VoiceNotFound",
            f"Voice '{voice}' not found.",
        )


async def test_qwen_clone_audio_checks(call, samples) -> None:
    async def create(data_uri):
        return await call(
            "qwen-voice-enrollment",
            "create",
            target_model=QWEN_TARGET,
            preferred_name="x",
            audio={"data": data_uri},
        )

    cases = [
        (samples.data_uri(b"RIFF\x00\x00\x00\x00WAVEjunk"), "Audio.DecoderError"),
        (samples.data_uri(samples.speech_wav(), "audio/mpeg"), "Audio.DecoderError"),
        (samples.data_uri(samples.speech_wav(6.0, rate=16000)), "Audio.AudioRateError"),
        (samples.data_uri(samples.speech_wav(61.0)), "Audio.DurationLimitError"),
        (samples.data_uri(samples.silence_wav()), "Audio.PreprocessError"),
        (samples.data_uri(samples.speech_wav(1.5)), "Audio.PreprocessError"),
        (samples.data_uri(samples.speech_wav(), "audio/ogg"), "InvalidParameter"),
        ("file:///tmp/x.wav", "InvalidParameter"),
    ]
    for uri, code in cases:
        status, body = await create(uri)
        assert (status, body["code"]) == (400, code), uri[:40]
    mp3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb" * 100
    status, _ = await create(samples.data_uri(mp3, "audio/mpeg"))
    assert status == 200  # MP3 is accepted unchecked
    status, _ = await create("https://example.com/public.wav")
    assert status == 200


@pytest.mark.parametrize(
    ("inp", "needle"),
    [
        ({"preferred_name": "has-dash"}, "preferred_name"),
        ({"preferred_name": "a" * 17}, "preferred_name"),
        ({"preferred_name": None}, "preferred_name"),
        ({"audio": "data:..."}, "audio"),
        ({"audio": {}}, "data"),
        ({"target_model": "cosyvoice-v3-plus"}, "target_model"),
        ({"language": "xx"}, "language"),
    ],
)
async def test_qwen_clone_validation(call, samples, inp, needle) -> None:
    base = {
        "target_model": QWEN_TARGET,
        "preferred_name": "ok",
        "audio": {"data": samples.data_uri(samples.speech_wav())},
    }
    base.update(inp)
    base = {k: v for k, v in base.items() if v is not None}
    status, body = await call("qwen-voice-enrollment", "create", **base)
    assert status == 400 and body["code"] == "InvalidParameter" and needle in body["message"]


async def test_qwen_clone_quota(call, samples, emulator: Emulator) -> None:
    emulator.context.options.voice_quota = 1
    uri = samples.data_uri(samples.speech_wav())
    status, _ = await call(
        "qwen-voice-enrollment",
        "create",
        target_model=QWEN_TARGET,
        preferred_name="a",
        audio={"data": uri},
    )
    assert status == 200
    status, body = await call(
        "qwen-voice-enrollment",
        "create",
        target_model=QWEN_TARGET,
        preferred_name="b",
        audio={"data": uri},
    )
    assert (status, body["code"]) == (400, "Throttling.AllocationQuota")


# --- Qwen voice design ---------------------------------------------------------------------------


async def test_qwen_design_lifecycle(call) -> None:
    status, body = await call(
        "qwen-voice-design",
        "create",
        target_model="qwen3-tts-vd-2026-01-26",
        voice_prompt="A bright young female voice.",
        preview_text="Welcome!",
        preferred_name="bright",
        language="en",
        parameters={"sample_rate": 24000, "response_format": "pcm"},
    )
    assert status == 200
    out = body["output"]
    voice = out["voice"]
    assert voice.startswith("qwen-tts-vd-bright-voice-")
    pcm = base64.b64decode(out["preview_audio"]["data"])
    assert len(pcm) % 2 == 0 and len(pcm) > 24000 * 2 * 0.3
    assert out["preview_audio"]["sample_rate"] == 24000
    _, body = await call("qwen-voice-design", "list")
    assert body["output"]["total_count"] == 1 and body["output"]["voice_list"][0]["voice"] == voice
    status, body = await call("qwen-voice-design", "query", voice=voice)
    assert body["output"]["voice_prompt"] == "A bright young female voice."
    status, body = await call("qwen-voice-design", "delete", voice=voice)
    assert status == 200
    status, body = await call("qwen-voice-design", "query", voice=voice)
    assert body["code"] == "BadRequest.VoiceNotFound"
    status, body = await call(
        "qwen-voice-design",
        "create",
        target_model="qwen3-tts-vd-2026-01-26",
        voice_prompt="calm",
        preview_text="hi",
        parameters={"sample_rate": 22050},
    )
    assert status == 400 and "sample_rate" in body["message"]


# --- envelope errors -----------------------------------------------------------------------------


async def test_envelope_errors(emulator: Emulator, http, headers) -> None:
    url = emulator.base_url + PATH

    async def post(**kw):
        r = await http.post(url, headers=headers, **kw)
        return r.status, await r.json()

    cases = [
        ({"data": b"{not json"}, 400, "InvalidParameter", "not valid JSON"),
        ({"data": b""}, 400, "InvalidParameter", "empty"),
        ({"json": [1, 2]}, 400, "InvalidParameter", "JSON object"),
        ({"json": {"input": {"action": "list_voice"}}}, 400, "InvalidParameter", "model"),
        ({"json": {"model": 3, "input": {}}}, 400, "InvalidParameter", "model"),
        (
            {"json": {"model": "no-such-model", "input": {"action": "x"}}},
            404,
            "ModelNotFound",
            "no-such-model",
        ),
        ({"json": {"model": "voice-enrollment"}}, 400, "InvalidParameter", "input"),
        ({"json": {"model": "voice-enrollment", "input": {}}}, 400, "InvalidParameter", "action"),
        (
            {"json": {"model": "voice-enrollment", "input": {"action": "fly"}}},
            400,
            "InvalidParameter",
            "fly",
        ),
        (
            {
                "json": {
                    "model": "voice-enrollment",
                    "input": {"action": "list_voice"},
                    "parameters": [],
                }
            },
            400,
            "InvalidParameter",
            "parameters",
        ),
        (
            {
                "json": {
                    "model": "voice-enrollment",
                    "input": {"action": "list_voice", "page_size": "10"},
                }
            },
            400,
            "InvalidParameter",
            "page_size",
        ),
        (
            {
                "json": {
                    "model": "voice-enrollment",
                    "input": {"action": "list_voice", "page_index": -1},
                }
            },
            400,
            "InvalidParameter",
            "page_index",
        ),
        (
            {"json": {"model": "qwen-voice-enrollment", "input": {"action": "delete"}}},
            400,
            "InvalidParameter",
            "voice",
        ),
    ]
    for kwargs, status, code, needle in cases:
        got_status, body = await post(**kwargs)
        assert (got_status, body["code"]) == (status, code), kwargs
        assert needle in body["message"], (kwargs, body["message"])
        assert set(body) == {"request_id", "code", "message"}
