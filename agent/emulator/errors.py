"""Error bodies shaped like the real service's, so clients exercise their real error paths.

Native APIs answer `{"request_id","code","message"}` with the HTTP status of the error class;
OpenAI-compatible routes answer `{"error":{"message","type","param","code"},"request_id"}`. Both
carry the request id in the `x-request-id` header too (the v2 SDK reads it from there).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

try:  # typed request keys (aiohttp >= 3.12 warns on plain string keys)
    REQUEST_ID_KEY: Any = web.RequestKey("emulator_request_id", str)
except AttributeError:  # older aiohttp
    REQUEST_ID_KEY = "emulator_request_id"


def compact(obj: Any) -> str:
    """JSON the way the service writes it: no spaces, UTF-8 text unescaped."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# Status -> (DashScope code, message) used for injected faults and generic HTTP errors.
STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("InvalidParameter", "The request is invalid."),
    401: ("InvalidApiKey", "Invalid API-key provided."),
    403: ("AccessDenied", "Access denied."),
    404: ("NotFound", "The requested resource does not exist."),
    405: ("MethodNotAllowed", "The HTTP method is not allowed for this resource."),
    408: ("RequestTimeOut", "Request timed out, please try again later."),
    413: ("InvalidParameter", "The request body is too large."),
    429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    500: (
        "InternalError",
        "An internal error has occured, please try again later or contact service support.",
    ),
    502: ("BadGateway", "Bad gateway, please try again later."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable, please try again later."),
    504: ("RequestTimeOut", "Gateway timed out, please try again later."),
}

# Status -> (OpenAI type, OpenAI code) for the compatible-mode routes.
OPENAI_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_parameter_error"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "access_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("limit_requests", "limit_requests"),
    500: ("internal_error", "internal_error"),
    503: ("service_unavailable", "service_unavailable"),
}


class ApiError(Exception):
    """Raised by handlers; turned into the documented JSON error body by the route wrapper."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidParameter", message)


def for_status(status: int, message: str | None = None) -> ApiError:
    code, default = STATUS_ERRORS.get(status, ("EmulatorFault", f"Injected HTTP {status}."))
    return ApiError(status, code, message or default)


def request_id(request: web.Request) -> str:
    return str(request.get(REQUEST_ID_KEY, ""))


def _json_response(status: int, body: dict[str, Any], rid: str) -> web.Response:
    return web.Response(
        status=status,
        text=compact(body),
        content_type="application/json",
        headers={"x-request-id": rid},
    )


def dashscope_error(request: web.Request, err: ApiError) -> web.Response:
    rid = request_id(request)
    return _json_response(
        err.status, {"request_id": rid, "code": err.code, "message": err.message}, rid
    )


def openai_error_body(err: ApiError, rid: str) -> dict[str, Any]:
    etype, ecode = OPENAI_ERRORS.get(err.status, ("internal_error", "internal_error"))
    message = err.message
    if err.status == 401:
        message = "Incorrect API key provided. "
    return {
        "error": {"message": message, "type": etype, "param": None, "code": ecode},
        "request_id": rid,
    }


def openai_error(request: web.Request, err: ApiError) -> web.Response:
    rid = request_id(request)
    return _json_response(err.status, openai_error_body(err, rid), rid)


def is_openai_route(request: web.Request) -> bool:
    return request.path.startswith("/compatible-mode/")


def error_response(request: web.Request, err: ApiError) -> web.Response:
    """The error body in the shape the route's clients expect."""
    return openai_error(request, err) if is_openai_route(request) else dashscope_error(request, err)
