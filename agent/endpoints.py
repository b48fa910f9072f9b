"""Region → DashScope base URLs, with the `http_url` / `ws_url` overrides (emulator, proxies)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from agent.config import DashScopeSettings

REGION_HOSTS = {
    "intl": "dashscope-intl.aliyuncs.com",  # Singapore
    "cn": "dashscope.aliyuncs.com",  # Beijing
}


@dataclass(frozen=True)
class Endpoints:
    http_base: str  # e.g. https://dashscope-intl.aliyuncs.com (no trailing slash)
    ws_base: str  # e.g. wss://dashscope-intl.aliyuncs.com

    @property
    def customization(self) -> str:
        return f"{self.http_base}/api/v1/services/audio/tts/customization"

    @property
    def uploads(self) -> str:
        return f"{self.http_base}/api/v1/uploads"

    @property
    def generation(self) -> str:
        return f"{self.http_base}/api/v1/services/aigc/text-generation/generation"

    @property
    def chat_completions(self) -> str:
        return f"{self.http_base}/compatible-mode/v1/chat/completions"

    @property
    def inference_ws(self) -> str:
        return f"{self.ws_base}/api-ws/v1/inference"

    def realtime_ws(self, model: str) -> str:
        return f"{self.ws_base}/api-ws/v1/realtime?model={model}"


def _ws_from_http(http: str) -> str:
    parts = urlsplit(http)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def _http_from_ws(ws: str) -> str:
    parts = urlsplit(ws)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "", "", ""))


def resolve_endpoints(ds: DashScopeSettings) -> Endpoints:
    """Overrides win; one override implies the other (the emulator serves both on one port)."""
    host = REGION_HOSTS[ds.region]
    http = (ds.http_url or "").rstrip("/")
    ws = (ds.ws_url or "").rstrip("/")
    if http and not ws:
        ws = _ws_from_http(http)
    elif ws and not http:
        http = _http_from_ws(ws)
    return Endpoints(http_base=http or f"https://{host}", ws_base=ws or f"wss://{host}")
