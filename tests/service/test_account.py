"""The DashScope account builds every auth header, and the key goes nowhere but `Authorization`."""

from __future__ import annotations

import pytest

from agent.account import WORKSPACE_HEADER, DashScopeAccount
from agent.config import parse_settings
from agent.endpoints import Endpoints
from agent.secrets import redact

pytestmark = pytest.mark.unit

KEY = "sk-0123456789abcdef0123"


def test_the_key_is_only_in_the_authorization_header() -> None:
    account = DashScopeAccount(KEY, "ws-kiosk", "intl", Endpoints("https://h", "wss://h"))
    for headers in (account.headers(), account.ws_headers({"user-agent": "voice-agent"})):
        holding = [name for name, value in headers.items() if KEY in value]
        assert holding == ["Authorization"]
        assert headers["Authorization"] == f"Bearer {KEY}"
        assert headers[WORKSPACE_HEADER] == "ws-kiosk"


def test_without_a_workspace_there_is_no_workspace_header() -> None:
    assert DashScopeAccount(KEY).headers() == {"Authorization": f"Bearer {KEY}"}


def test_extra_headers_are_kept_but_cannot_replace_the_auth() -> None:
    h = DashScopeAccount(KEY, "ws1").headers(
        {"Accept": "text/event-stream", "Authorization": "Bearer someone-else", WORKSPACE_HEADER: "x"}
    )
    assert h == {"Accept": "text/event-stream", "Authorization": f"Bearer {KEY}", WORKSPACE_HEADER: "ws1"}


def test_repr_and_str_redact_the_key() -> None:
    account = DashScopeAccount(KEY, "ws-kiosk", "cn", Endpoints("https://h", "wss://h"))
    for text in (repr(account), str(account), f"{account}", repr([account])):
        assert KEY not in text and KEY[3:] not in text
        assert "ws-kiosk" in text and "cn" in text


def test_a_key_held_by_an_account_is_redacted_from_any_text() -> None:
    key = "sk-fedcba9876543210fedc"
    DashScopeAccount(key)
    assert key not in redact(f"GET wss://x/?key={key} -> 401 for Bearer {key}")


def test_from_settings_takes_key_region_workspace_and_endpoints() -> None:
    s = parse_settings(
        f"dashscope: {{api_key: {KEY}, region: cn, workspace: ws-2, http_url: 'http://127.0.0.1:9'}}\n"
    )
    account = DashScopeAccount.from_settings(s)
    assert (account.api_key, account.region, account.workspace) == (KEY, "cn", "ws-2")
    assert account.endpoints == Endpoints("http://127.0.0.1:9", "ws://127.0.0.1:9")
    assert DashScopeAccount.from_settings(s, "sk-given-key-123456").api_key == "sk-given-key-123456"


def test_components_get_their_urls_from_the_account_and_a_headers_only_account_has_none() -> None:
    account = DashScopeAccount(KEY, endpoints=Endpoints("http://127.0.0.1:8700", "ws://127.0.0.1:8700"))
    assert account.urls.inference_ws == "ws://127.0.0.1:8700/api-ws/v1/inference"
    assert account.urls.realtime_ws("m") == "ws://127.0.0.1:8700/api-ws/v1/realtime?model=m"
    with pytest.raises(ValueError, match="no endpoints"):
        DashScopeAccount(KEY).urls  # noqa: B018 - the property raises
