"""The DashScope account: key, region, workspace and base URLs, and the only place auth headers
are built.

Every DashScope request — HTTP (customization, uploads, text generation) and WebSocket
(realtime, CosyVoice) — carries `Authorization: Bearer <key>` and, for a sub-workspace,
`X-DashScope-WorkSpace`. Building them in one place keeps the key in exactly one header: it is
never put in a URL or another header, and the account's repr/str show a redacted key, so logging
the object (or an exception holding it) cannot leak it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.config import Settings
from agent.endpoints import Endpoints, resolve_endpoints
from agent.secrets import register_secret, resolve_api_key

WORKSPACE_HEADER = "X-DashScope-WorkSpace"


@dataclass(frozen=True)
class DashScopeAccount:
    """Who the daemon is to DashScope. `endpoints` is None for a caller that only needs headers."""

    api_key: str = field(repr=False)
    workspace: str | None = None
    region: str = "intl"
    endpoints: Endpoints | None = None

    def __post_init__(self) -> None:
        register_secret(self.api_key)  # whatever text it ends up in, `redact` removes it

    @classmethod
    def from_settings(cls, settings: Settings, api_key: str | None = None) -> DashScopeAccount:
        """The configured account; the key is resolved (SPEC §4 order) unless given."""
        key = api_key if api_key is not None else resolve_api_key(settings)
        assert key is not None  # resolve_api_key raises ConfigError when there is none
        ds = settings.dashscope
        return cls(key, ds.workspace, ds.region, resolve_endpoints(ds))

    @property
    def urls(self) -> Endpoints:
        """The base URLs; an account made for headers alone has none, and asking is a bug."""
        if self.endpoints is None:
            raise ValueError("this DashScopeAccount carries no endpoints")
        return self.endpoints

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Auth headers for an HTTP request, plus the caller's own (which cannot override auth)."""
        h = dict(extra or {})
        h["Authorization"] = f"Bearer {self.api_key}"
        if self.workspace:
            h[WORKSPACE_HEADER] = self.workspace
        return h

    def ws_headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The same headers for a WebSocket handshake (`additional_headers`)."""
        return self.headers(extra)

    def __str__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        shown = f"{self.api_key[:3]}…" if len(self.api_key) > 8 else "…"
        return (
            f"DashScopeAccount(api_key={shown!r}, workspace={self.workspace!r}, "
            f"region={self.region!r}, endpoints={self.endpoints!r})"
        )
