"""The API's error bodies and status table, in the two dialects the server speaks.

``--error-style linkai`` (the default) answers every error as LinkAI does:
``{"success": false, "code": N, "message": "...", "data": null}`` with ``code`` equal to the HTTP
status. ``--error-style openai`` answers as OpenAI's API does:
``{"error": {"message": "...", "type": "...", "param": ..., "code": ...}}`` where ``type`` is
the kind (``invalid_request_error``, ``server_error``, ...), ``code`` a name or ``null`` (e.g.
``model_not_found``, ``rate_limit_exceeded``) and ``param`` the field blamed (e.g. ``file``).
Code inside the server raises :class:`ApiError` with both dialects' details; one place turns it
into the body of the configured style.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ERROR_STYLES",
    "OPENAI_CODES",
    "OPENAI_MESSAGES",
    "OPENAI_TYPES",
    "STATUS_MESSAGES",
    "ApiError",
    "envelope",
    "envelope_bytes",
    "model_not_found",
    "openai_error",
    "out_of_credits",
    "unknown_route",
]

ERROR_STYLES: tuple[str, ...] = ("linkai", "openai")

#: Default messages: the API's table (400-503), then statuses the server adds (413, 429, 5xx).
STATUS_MESSAGES: dict[int, str] = {
    400: "Invalid request format",
    401: "Authentication failed, please check if your API Key is correct",
    402: "Agent does not exist, please check if the app_code parameter is correct",
    403: "No access permission, for private Agents, only the creator account can call",
    404: "Not found",
    405: "Method not allowed",
    406: "Insufficient account credits",
    408: "No API access permission, this API supports Pro version and above",
    409: "Content moderation failed, sensitive content may exist in the question, answer, or knowledge base",
    413: "Request entity too large",
    429: "Too many requests, please retry later",
    500: "Internal server error",
    502: "Bad gateway",
    503: "API call exception, please contact customer service",
    504: "Gateway timeout",
}

#: OpenAI's ``error.type`` by status (others: ``invalid_request_error`` below 500, else ``server_error``).
OPENAI_TYPES: dict[int, str] = {
    401: "invalid_request_error",
    403: "permission_error",
    413: "server_error",  # OpenAI's 413 "Maximum content size limit (...) exceeded" says so
    429: "requests",
}

#: OpenAI's ``error.code`` by status where it names one whatever the cause.
OPENAI_CODES: dict[int, str] = {429: "rate_limit_exceeded"}
#: OpenAI's wording where the table's LinkAI text would be out of place.
OPENAI_MESSAGES: dict[int, str] = {
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The server is overloaded or not ready yet.",
}


class ApiError(Exception):
    """An error answer.

    :param status: the HTTP status (also the LinkAI envelope's ``code``).
    :param message: the message; defaults to the table's text.
    :param headers: extra response headers, e.g. ``Retry-After``.
    :param type: OpenAI's ``error.type``; defaults by status (:data:`OPENAI_TYPES`).
    :param code: OpenAI's ``error.code`` (a name such as ``model_not_found``), else ``null``.
    :param param: OpenAI's ``error.param``: the request field the error is about.
    :param openai_message: the message in the OpenAI dialect when it words it differently.
    :param openai_status: the status in the OpenAI dialect when it differs (credits: 406 vs 429).
    """

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        openai_message: str | None = None,
        openai_status: int | None = None,
    ):
        self.status = status
        self.message = message or STATUS_MESSAGES.get(status, "Error")
        self.headers = dict(headers or {})
        self.type = type or OPENAI_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
        self.code = code or OPENAI_CODES.get(status)
        self.param = param
        default = OPENAI_MESSAGES.get(status) if message is None else None
        self.openai_message = openai_message or default or self.message
        self.openai_status = openai_status or status
        super().__init__(f"{status}: {self.message}")

    def status_for(self, style: str) -> int:
        return self.openai_status if style == "openai" else self.status

    def body(self, style: str) -> bytes:
        """The error body in ``style`` (``linkai`` or ``openai``)."""
        if style == "openai":
            return _dumps(openai_error(self.openai_message, self.type, self.code, self.param))
        return envelope_bytes(self.status, self.message)


def envelope(code: int, message: str) -> dict[str, Any]:
    """The error body of the LinkAI API."""
    return {"success": False, "code": code, "message": message, "data": None}


def envelope_bytes(code: int, message: str) -> bytes:
    """The LinkAI error body, serialised (UTF-8 JSON, non-ASCII kept readable)."""
    return _dumps(envelope(code, message))


def openai_error(message: str, type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The error body of OpenAI's API."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def model_not_found(model: str, served: tuple[str, ...]) -> ApiError:
    """404 ``model_not_found``, worded as OpenAI words it (the LinkAI dialect adds what is served)."""
    sentence = f"The model `{model}` does not exist or you do not have access to it."
    return ApiError(
        404,
        f"{sentence} This server serves: {', '.join(served)}",
        code="model_not_found",
        param="model",
        openai_message=sentence,
    )


def out_of_credits() -> ApiError:
    """The account's balance is spent: LinkAI's 406, OpenAI's 429 ``insufficient_quota``."""
    return ApiError(
        406,
        type="insufficient_quota",
        code="insufficient_quota",
        openai_message="You exceeded your current quota, please check your plan and billing details.",
        openai_status=429,
    )


def unknown_route(status: int, method: str, path: str) -> ApiError:
    """404/405 for a path or method the server does not serve (OpenAI: "Invalid URL (POST /x)")."""
    return ApiError(status, openai_message=f"Invalid URL ({method} {path})")
