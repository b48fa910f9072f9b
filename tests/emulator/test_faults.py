"""Fault spec grammar, plan semantics (scopes, counts, overrides) and HTTP fault injection."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from agent.emulator.faults import FaultPlan, FaultSpecError, parse_spec
from agent.emulator.server import Emulator

FULL = (
    "latency=50ms,jitter=20ms,stall=3s,drop_after=25,error_event,task_failed,http=429,"
    "http=500@llm,http=401@customization,malformed,binary_frame,oversized,half_open"
)


class FakeRequest:
    """Just the two mappings for_connection reads (plain dicts; no caching)."""

    def __init__(self, headers=None, query=None) -> None:
        self.headers = headers or {}
        self.query = query or {}


@pytest.mark.unit
def test_full_example_parses() -> None:
    plan = FaultPlan(FULL)
    rt = plan.for_connection("realtime")
    assert (rt.latency_s, rt.jitter_s, rt.stall_s, rt.drop_after) == (0.05, 0.02, 3.0, 25)
    assert rt.error_event and rt.task_failed and rt.malformed and rt.binary_frame
    assert rt.oversized and rt.oversized_bytes > 1024 * 1024 and rt.half_open
    assert rt.http_status == 429  # unscoped http applies everywhere...
    assert plan.http_status_for("llm") == 500  # ...and a later scoped rule overrides it
    assert plan.http_status_for("customization") == 401
    assert plan.http_status_for("uploads") == 429


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "unknown fault 'bogus'"),
        ("latency=50", "needs a unit"),
        ("latency", "needs a value"),
        ("http=200", "400..599"),
        ("http=abc", "must be an integer"),
        ("drop_after=0", "at least 1"),
        ("task_failed=3", "takes no value"),
        ("drop_after=2@moon", "unknown scope 'moon'"),
        ("stall=1s*0", "count must be at least 1"),
        ("latency=1s,,stall=1s", "empty item"),
        ("latency=1s@ws@http", "not of the form"),
        ("misreport=colour", "field must be one of voice"),
        ("misreport", "needs a value"),
        ("refuse_input_text=1", "takes no value"),
        ("response_failed=0", "at least 1"),
        ("response_failed=x", "must be an integer"),
        ("call_failed=0", "at least 1"),
    ],
)
def test_bad_specs_are_rejected_clearly(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_spec(spec)


@pytest.mark.unit
def test_fidelity_faults_refuse_text_items_and_misreport_fields() -> None:
    view = FaultPlan("refuse_input_text@realtime,misreport=voice,misreport=turn_detection").for_connection(
        "realtime")
    assert view.refuse_input_text and view.misreport == ("voice", "turn_detection")
    assert not FaultPlan("refuse_input_text@realtime").for_connection("inference").refuse_input_text


@pytest.mark.unit
def test_response_failed_names_the_answer_that_fails() -> None:
    assert FaultPlan("response_failed@realtime").for_connection("realtime").response_failed == 1
    assert FaultPlan("response_failed=3").for_connection("realtime").response_failed == 3
    assert FaultPlan("response_failed@realtime").for_connection("inference").response_failed is None


@pytest.mark.unit
def test_call_failed_names_the_calling_response_that_fails() -> None:
    assert FaultPlan("call_failed@realtime").for_connection("realtime").call_failed == 1
    assert FaultPlan("call_failed=2").for_connection("realtime").call_failed == 2
    assert FaultPlan("call_failed@realtime").for_connection("realtime").response_failed is None


@pytest.mark.unit
def test_empty_and_none_specs() -> None:
    assert parse_spec(None) == parse_spec("") == parse_spec("none") == parse_spec("  ") == []
    assert not FaultPlan().for_connection("llm").active


@pytest.mark.unit
def test_scopes_and_aliases() -> None:
    plan = FaultPlan("drop_after=3@ws,http=503@http,stall=1s@inference")
    rt, inf, llm = (plan.for_connection(k) for k in ("realtime", "inference", "llm"))
    assert rt.drop_after == 3 and inf.drop_after == 3 and llm.drop_after is None
    assert llm.http_status == 503 and rt.http_status is None
    assert inf.stall_s == 1.0 and rt.stall_s == 0.0
    with pytest.raises(ValueError):
        plan.for_connection("carrier-pigeon")


@pytest.mark.unit
def test_counted_faults_apply_to_first_connections_then_stop() -> None:
    plan = FaultPlan("drop_after=2@realtime*once,latency=10ms@realtime*2,stall=1s@realtime")
    first, second, third = (plan.for_connection("realtime") for _ in range(3))
    assert first.drop_after == 2 and second.drop_after is None
    assert first.latency_s == second.latency_s == 0.01 and third.latency_s == 0
    assert third.stall_s == 1.0  # uncounted rules stay
    assert plan.for_connection("inference").drop_after is None  # other kinds consume nothing
    assert [r["remaining"] for r in plan.describe()["rules"]] == [0, 0, None]


@pytest.mark.unit
def test_override_header_or_query_replaces_plan_without_consuming() -> None:
    plan = FaultPlan("drop_after=1*once")
    cf = plan.for_connection("realtime", FakeRequest(headers={"X-Emulator-Faults": "stall=2s"}))
    assert cf.stall_s == 2.0 and cf.drop_after is None
    cf = plan.for_connection("realtime", FakeRequest(query={"faults": "half_open=4"}))
    assert cf.half_open and cf.is_silent(4) and not cf.is_silent(3)
    assert plan.for_connection("realtime").drop_after == 1  # the counted rule was still there
    with pytest.raises(FaultSpecError):
        plan.for_connection("realtime", FakeRequest(query={"faults": "nope"}))


@pytest.mark.unit
def test_set_validates_before_replacing() -> None:
    plan = FaultPlan("latency=5ms")
    with pytest.raises(FaultSpecError):
        plan.set("latency=5")
    assert plan.spec == "latency=5ms"
    plan.clear()
    assert plan.describe() == {"spec": "", "rules": []}


@pytest.mark.unit
def test_connection_counters() -> None:
    cf = FaultPlan("drop_after=3,half_open=2,error_event=5,oversized=4096").for_connection(
        "realtime"
    )
    assert [cf.should_drop(n) for n in range(5)] == [False, False, False, True, True]
    assert not cf.is_silent(1) and cf.is_silent(2)
    assert cf.error_after == 5 and cf.oversized_bytes == 4096


async def test_delay_and_stall_take_time() -> None:
    cf = FaultPlan("latency=30ms,jitter=20ms,stall=50ms").for_connection("inference")
    t0 = time.monotonic()
    await cf.start_stall()
    t1 = time.monotonic()
    await cf.delay()
    t2 = time.monotonic()
    assert t1 - t0 >= 0.045 and 0.028 <= t2 - t1 < 0.2


# --- HTTP fault injection end to end ------------------------------------------------------------

GEN = "/api/v1/services/aigc/text-generation/generation"
CUSTOM = "/api/v1/services/audio/tts/customization"
LIST = {"model": "voice-enrollment", "input": {"action": "list_voice"}}
GEN_BODY = {"model": "qwen-plus", "input": {"prompt": "hello"}}


async def test_http_status_fault_per_group_and_once(emulator: Emulator, http, headers) -> None:
    emulator.context.faults.set("http=429@customization*once,http=500@llm")
    r = await http.post(emulator.base_url + CUSTOM, json=LIST, headers=headers)
    assert r.status == 429
    body = await r.json()
    assert (
        body["code"] == "Throttling.RateQuota" and body["request_id"] == r.headers["x-request-id"]
    )
    r = await http.post(emulator.base_url + CUSTOM, json=LIST, headers=headers)
    assert r.status == 200  # recovered after the first request
    r = await http.post(emulator.base_url + GEN, json=GEN_BODY, headers=headers)
    assert r.status == 500 and (await r.json())["code"] == "InternalError"
    r = await http.post(
        emulator.base_url + "/compatible-mode/v1/chat/completions",
        json={"model": "qwen-plus", "messages": [{"role": "user", "content": "hi"}]},
        headers=headers,
    )
    assert r.status == 500 and (await r.json())["error"]["code"] == "internal_error"


async def test_auth_is_checked_before_faults(emulator: Emulator, http) -> None:
    emulator.context.faults.set("http=500")
    r = await http.post(
        emulator.base_url + CUSTOM, json=LIST, headers={"Authorization": "Bearer x"}
    )
    assert r.status == 401


async def test_latency_fault_on_http(emulator: Emulator, http, headers) -> None:
    t0 = time.monotonic()
    r = await http.post(
        emulator.base_url + CUSTOM,
        json=LIST,
        headers={**headers, "X-Emulator-Faults": "latency=150ms"},
    )
    assert r.status == 200 and time.monotonic() - t0 >= 0.14


async def test_bad_override_header_is_a_400(emulator: Emulator, http, headers) -> None:
    r = await http.post(
        emulator.base_url + CUSTOM, json=LIST, headers={**headers, "X-Emulator-Faults": "latency"}
    )
    assert r.status == 400
    body = await r.json()
    assert body["code"] == "InvalidParameter" and "X-Emulator-Faults" in body["message"]


async def test_drop_on_plain_http_closes_without_answer(emulator: Emulator, http, headers) -> None:
    with pytest.raises(aiohttp.ClientError):
        await http.post(
            emulator.base_url + CUSTOM,
            json=LIST,
            headers={**headers, "X-Emulator-Faults": "drop_after=1"},
        )
    r = await http.post(emulator.base_url + CUSTOM, json=LIST, headers=headers)
    assert r.status == 200


async def test_half_open_http_never_answers(emulator: Emulator, http, headers) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await http.post(
            emulator.base_url + CUSTOM,
            json=LIST,
            headers={**headers, "X-Emulator-Faults": "half_open"},
            timeout=aiohttp.ClientTimeout(total=0.5),
        )


async def test_sse_drop_after_n_events(emulator: Emulator, http, headers) -> None:
    sse = {**headers, "X-DashScope-SSE": "enable", "X-Emulator-Faults": "drop_after=3"}
    async with http.post(emulator.base_url + GEN, json=GEN_BODY, headers=sse) as r:
        assert r.status == 200
        received = b""
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in r.content.iter_any():
                received += chunk
    assert received.count(b"\ndata:") + received.startswith(b"data:") == 3
    assert b'"finish_reason":"stop"' not in received


async def test_sse_half_open_goes_silent(emulator: Emulator, http, headers) -> None:
    sse = {**headers, "X-DashScope-SSE": "enable", "X-Emulator-Faults": "half_open=2"}
    async with http.post(emulator.base_url + GEN, json=GEN_BODY, headers=sse) as r:
        received = bytearray()

        async def read_all() -> None:
            async for chunk in r.content.iter_any():
                received.extend(chunk)

        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(read_all(), 0.6)
    assert received.count(b"event:result") == 2


async def test_sse_malformed_event(emulator: Emulator, http, headers) -> None:
    sse = {**headers, "X-DashScope-SSE": "enable", "X-Emulator-Faults": "malformed=1"}
    async with http.post(emulator.base_url + GEN, json=GEN_BODY, headers=sse) as r:
        text = await r.text()
    datas = [line[5:] for line in text.split("\n") if line.startswith("data:")]
    assert datas[1].endswith('"content":"')  # the second event is truncated JSON
    assert '"finish_reason":"stop"' in datas[-1]


async def test_stall_delays_first_sse_event(emulator: Emulator, http, headers) -> None:
    sse = {**headers, "X-DashScope-SSE": "enable", "X-Emulator-Faults": "stall=300ms"}
    t0 = time.monotonic()
    async with http.post(emulator.base_url + GEN, json=GEN_BODY, headers=sse) as r:
        await r.content.readline()
        assert time.monotonic() - t0 >= 0.29


async def test_control_api(emulator: Emulator, http, headers) -> None:
    url = emulator.base_url + "/_emulator/faults"
    r = await http.post(url, data="http=503@llm*2", headers=headers)
    assert r.status == 200 and (await r.json())["spec"] == "http=503@llm*2"
    r = await http.get(url, headers=headers)
    rule = (await r.json())["rules"][0]
    assert rule == {
        "fault": "http",
        "value": 503,
        "scopes": ["llm"],
        "remaining": 2,
        "text": "http=503@llm*2",
    }
    r = await http.put(url, json={"spec": "stall=1s"}, headers=headers)
    assert (await r.json())["spec"] == "stall=1s"
    r = await http.post(url, data="stall=1", headers=headers)
    assert r.status == 400 and "needs a unit" in (await r.json())["message"]
    assert emulator.context.faults.spec == "stall=1s"  # a bad spec leaves the plan in force
    r = await http.post(url, json={"spec": 5}, headers=headers)
    assert r.status == 400
    r = await http.delete(url, headers=headers)
    assert (await r.json())["spec"] == "" and emulator.context.faults.spec == ""
    r = await http.get(url)
    assert r.status == 401


async def test_ws_upgrade_refused_with_injected_status(emulator: Emulator, http, headers) -> None:
    emulator.context.faults.set("http=429@realtime*once")
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await http.ws_connect(
            emulator.ws_url + "/api-ws/v1/realtime?model=qwen3.5-omni-flash-realtime",
            headers=headers,
        )
    assert exc.value.status == 429


async def test_faults_given_at_construction() -> None:
    em = Emulator(faults="http=503@uploads")
    await em.start()
    try:
        async with aiohttp.ClientSession() as s:
            r = await s.get(
                em.base_url + "/api/v1/uploads?action=getPolicy&model=m",
                headers={"Authorization": "Bearer sk-emulator"},
            )
            assert r.status == 503 and (await r.json())["code"] == "ServiceUnavailable"
    finally:
        await em.stop()
    with pytest.raises(FaultSpecError):
        Emulator(faults="latency")
