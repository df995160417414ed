"""The API's error envelope and status table, as the server answers them.

Every error answer is ``{"success": false, "code": N, "message": "...", "data": null}`` with
``code`` equal to the HTTP status, exactly like the hosted LinkAI API. Code inside the server
raises :class:`ApiError`; one handler turns it into that response.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["STATUS_MESSAGES", "ApiError", "envelope", "envelope_bytes"]

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


class ApiError(Exception):
    """An answer in the error envelope.

    :param status: the HTTP status (also the envelope's ``code``).
    :param message: the envelope's ``message``; defaults to the table's text.
    :param headers: extra response headers, e.g. ``Retry-After``.
    """

    def __init__(self, status: int, message: str | None = None, *, headers: dict[str, str] | None = None):
        self.status = status
        self.message = message or STATUS_MESSAGES.get(status, "Error")
        self.headers = dict(headers or {})
        super().__init__(f"{status}: {self.message}")


def envelope(code: int, message: str) -> dict[str, Any]:
    """The error body of the API."""
    return {"success": False, "code": code, "message": message, "data": None}


def envelope_bytes(code: int, message: str) -> bytes:
    """The error body, serialised (UTF-8 JSON, non-ASCII kept readable)."""
    return json.dumps(envelope(code, message), ensure_ascii=False).encode("utf-8")
