"""The official dashscope SDK (unchanged; only base URL and key set) against the emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dashscope
import pytest
from dashscope.audio.tts_v2 import VoiceEnrollmentService
from dashscope.audio.tts_v2.enrollment import VoiceEnrollmentException
from dashscope.common.error import UploadFileException
from dashscope.utils.oss_utils import OssUtils, check_and_upload_local

from agent.emulator.server import EmulatorThread

pytestmark = pytest.mark.sdk


@pytest.fixture
def sdk(emulator_thread: EmulatorThread) -> Iterator[EmulatorThread]:
    saved = (dashscope.base_http_api_url, dashscope.api_key)
    dashscope.base_http_api_url = emulator_thread.base_url + "/api/v1"
    dashscope.api_key = emulator_thread.api_key
    try:
        yield emulator_thread
    finally:
        dashscope.base_http_api_url, dashscope.api_key = saved


def test_voice_enrollment_lifecycle(sdk: EmulatorThread) -> None:
    svc = VoiceEnrollmentService()
    voice_id = svc.create_voice(
        target_model="cosyvoice-v3-plus", prefix="kiosk", url="https://example.com/sample.wav"
    )
    assert voice_id.startswith("cosyvoice-v3-plus-kiosk-")
    assert svc.query_voice(voice_id)["status"] == "DEPLOYING"
    deadline = time.monotonic() + 5
    while svc.query_voice(voice_id)["status"] == "DEPLOYING":
        assert time.monotonic() < deadline, "voice never left DEPLOYING"
        time.sleep(0.05)
    info = svc.query_voice(voice_id)
    assert info["status"] == "OK"
    assert info["target_model"] == "cosyvoice-v3-plus"
    assert info["resource_link"] == "https://example.com/sample.wav"

    listed = svc.list_voices(prefix="kiosk")
    assert [v["voice_id"] for v in listed] == [voice_id]
    assert svc.list_voices(prefix="other") == []

    svc.update_voice(voice_id, "https://example.com/better.wav")
    assert svc.query_voice(voice_id)["resource_link"] == "https://example.com/better.wav"
    svc.delete_voice(voice_id)
    with pytest.raises(VoiceEnrollmentException) as exc:
        svc.query_voice(voice_id)
    assert "BadRequest.ResourceNotExist" in str(exc.value)
    assert svc.get_last_request_id()


def test_sdk_sees_invalid_key(sdk: EmulatorThread) -> None:
    svc = VoiceEnrollmentService(api_key="sk-wrong")
    with pytest.raises(VoiceEnrollmentException) as exc:
        svc.list_voices()
    assert "401" in str(exc.value) and "InvalidApiKey" in str(exc.value)


def test_generation_stream_incremental(sdk: EmulatorThread) -> None:
    chunks = list(
        dashscope.Generation.call(
            model="qwen-plus",
            messages=[{"role": "user", "content": "What is the weather like?"}],
            stream=True,
            incremental_output=True,
            result_format="message",
        )
    )
    assert len(chunks) > 10
    assert all(c.status_code == 200 for c in chunks)
    deltas = [c.output.choices[0].message.content for c in chunks]
    text = "".join(deltas)
    assert text.startswith("Today it is sunny")
    assert all(len(d.split()) <= 1 for d in deltas)  # true deltas, not cumulative text
    reasons = [c.output.choices[0].finish_reason for c in chunks]
    assert reasons[-1] == "stop" and set(reasons[:-1]) == {"null"}
    assert chunks[-1].usage.output_tokens == len(text.split())


def test_generation_non_incremental_stream_is_merged_by_sdk(sdk: EmulatorThread) -> None:
    chunks = list(
        dashscope.Generation.call(
            model="qwen-plus", prompt="tell me a joke", stream=True, incremental_output=False
        )
    )
    assert chunks[-1].output.text.startswith("Why did the microphone")
    assert chunks[-1].output.finish_reason == "stop"


def test_generation_non_stream(sdk: EmulatorThread) -> None:
    rsp = dashscope.Generation.call(
        model="qwen-plus", messages=[{"role": "user", "content": "hello"}], result_format="message"
    )
    assert rsp.status_code == 200
    assert rsp.output.choices[0].message.content.startswith("Hello!")
    assert rsp.output.choices[0].finish_reason == "stop"
    assert rsp.request_id


def test_generation_mid_stream_error(sdk: EmulatorThread) -> None:
    sdk.context.faults.set("error_event=3@llm")
    chunks = list(
        dashscope.Generation.call(
            model="qwen-plus", prompt="hello", stream=True, incremental_output=True
        )
    )
    assert [c.status_code for c in chunks[:3]] == [200, 200, 200]
    assert chunks[-1].status_code != 200 and chunks[-1].code == "InternalError"
    assert len(chunks) == 4


def test_oss_upload_then_clone(sdk: EmulatorThread, tmp_path, samples) -> None:
    path = tmp_path / "voice sample.wav"
    path.write_bytes(samples.speech_wav(6.0))
    url, cert = OssUtils.upload(model="voice-enrollment", file_path=str(path))
    assert url.startswith("oss://dashscope-instant/") and url.endswith("/voice sample.wav")
    stored = sdk.context.stores.uploads[url[len("oss://") :]]
    assert stored.data == path.read_bytes() and stored.model == "voice-enrollment"

    is_upload, url2, cert2 = check_and_upload_local(
        model="voice-enrollment", content=f"file://{path}", api_key=sdk.api_key
    )
    assert is_upload and url2 != url and cert2["upload_dir"] != cert["upload_dir"]
    with pytest.raises(UploadFileException, match="FileAlreadyExists"):
        OssUtils.upload(model="voice-enrollment", file_path=str(path), upload_certificate=cert)

    svc = VoiceEnrollmentService()
    with pytest.raises(VoiceEnrollmentException) as exc:
        svc.create_voice(target_model="cosyvoice-v3-plus", prefix="oss", url=url)
    assert "X-DashScope-OssResourceResolve" in str(exc.value)
    svc = VoiceEnrollmentService(headers={"X-DashScope-OssResourceResolve": "enable"})
    voice_id = svc.create_voice(target_model="cosyvoice-v3-plus", prefix="oss", url=url)
    assert svc.query_voice(voice_id)["resource_link"] == url
