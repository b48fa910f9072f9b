"""The LLM client's typed errors: what the pipeline can act on (stop, retry later, retry now, bug).

Kept apart from the HTTP client so the conversation core can classify failures without aiohttp.
"""

from __future__ import annotations

from typing import Any

from agent.secrets import redact


class LLMError(Exception):
    """Base of every LLM failure; the message never contains the API key."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(redact(message))
        self.code = code
        self.status = status
        self.request_id = request_id


class AuthError(LLMError):
    """401/403: the key (or workspace/region) is wrong. Retrying will not help."""


class ThrottledError(LLMError):
    """429: rate or quota limit. Retry later (`retry_after` seconds when the server said)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class TransientError(LLMError):
    """5xx, timeouts, dropped or truncated streams: worth retrying soon."""


class RequestError(LLMError):
    """Other 4xx (bad model name, bad parameters, content inspection): a configuration problem."""


_TRANSIENT_CODES = ("InternalError", "SystemError", "ServiceUnavailable", "ModelUnavailable",
                    "RequestTimeOut", "ModelServiceFailed")


def error_for(
    status: int | None, code: str | None, message: str, request_id: str | None = None,
    retry_after: float | None = None,
) -> LLMError:
    """Map an HTTP status (or, lacking one, the error code) to the typed error."""
    kw: dict[str, Any] = {"code": code, "status": status, "request_id": request_id}
    text = f"LLM request failed: {status or '-'} {code or ''} {message}".strip()
    code_s = code or ""
    if status in (401, 403) or (status is None and code_s in ("InvalidApiKey", "AccessDenied")):
        return AuthError(text, **kw)
    if status == 429 or (status is None and code_s.startswith("Throttling")):
        return ThrottledError(text, retry_after=retry_after, **kw)
    if status is None or status >= 500 or status == 408 or code_s.startswith(_TRANSIENT_CODES):
        return TransientError(text, **kw)
    return RequestError(text, **kw)
