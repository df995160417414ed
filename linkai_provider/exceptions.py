"""The LinkAI error tree.

Every error the provider raises derives from ``LinkAIError`` (an ``AirflowException``) and
carries ``status_code`` (HTTP status, ``None`` when no answer came), ``code`` (the API envelope's
numeric ``code``, or the status) and ``message`` (the API's message or a local reason) as
attributes. Answers in OpenAI's dialect (``{"error": {"message", "type", "code", "param"}}``) add
``type`` (e.g. ``invalid_request_error``), ``api_code`` (OpenAI's code is a name, e.g.
``model_not_found``; ``code`` stays a number because the dataset's ``error_code`` column is one)
and ``param``. The three branches are the operator's error policy::

    LinkAIError
    ├── LinkAIConfigurationError      connection unusable (no key, bad extra): raised before any call
    ├── LinkAITransientError          retried with backoff, then the file is recorded as failed
    │   ├── RateLimitError            429 (``retry_after`` honoured)
    │   ├── ServerError               500, 502, 504 and other 5xx
    │   │   └── ServiceUnavailableError   503 "API call exception"
    │   ├── LinkAITimeoutError        no answer within the timeout
    │   └── LinkAIConnectionError     refused, reset or dropped connection
    ├── LinkAIFileError               per-file: recorded as a failed row, the batch goes on
    │   ├── InvalidRequestError       400 invalid request format (bad or unsupported audio)
    │   ├── ContentModerationError    409 content moderation failed
    │   ├── PayloadTooLargeError      413 (``limit_bytes`` when the message states the limit)
    │   ├── MalformedResponseError    answer is not JSON, or JSON without ``text``
    │   └── UnreadableFileError       local: file missing, unreadable, unsupported, over the size limit
    ├── LinkAIFatalError              batch-fatal: stop sending, keep finished rows, fail the task
    │   ├── AuthenticationError       401 wrong API key
    │   ├── AgentNotFoundError        402 agent / app_code does not exist
    │   ├── PermissionDeniedError     403 no access permission
    │   ├── InsufficientCreditsError  406 insufficient account credits
    │   ├── PlanNotSupportedError     408 API needs the Pro plan or above
    │   ├── EndpointNotFoundError     404/405: the base URL serves no LinkAI API
    │   └── ModelNotFoundError        ``model_not_found``: the ``model`` field names a model the API lacks
    └── PartialBatchError             raised by the operator after the batch: some files failed
"""

from __future__ import annotations

from typing import Any

from airflow.exceptions import AirflowException

__all__ = [
    "AgentNotFoundError",
    "AuthenticationError",
    "ContentModerationError",
    "EndpointNotFoundError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "LinkAIConfigurationError",
    "LinkAIConnectionError",
    "LinkAIError",
    "LinkAIFatalError",
    "LinkAIFileError",
    "LinkAITimeoutError",
    "LinkAITransientError",
    "MalformedResponseError",
    "ModelNotFoundError",
    "PayloadTooLargeError",
    "PartialBatchError",
    "PermissionDeniedError",
    "PlanNotSupportedError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "UnreadableFileError",
    "error_for_status",
]


class LinkAIError(AirflowException):
    """Root of every LinkAI error; attributes, not string parsing, tell what happened."""

    default_message = "LinkAI request failed"
    #: sha256 of the file when the whole file was sent and an answer came back (set by the hook)
    content_sha256: str | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        code: int | None = None,
        data: Any = None,
        attempts: int = 0,
        type: str | None = None,  # the name OpenAI's error object gives it
        api_code: str | None = None,
        param: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        # AirflowException types status_code as an HTTPStatus for its REST API; here it is the answer's
        self.status_code = status_code  # type: ignore[assignment]
        self.code = code if code is not None else status_code
        self.data = data
        self.attempts = attempts
        #: the error's kind as an OpenAI-style API names it (``error.type``), e.g. ``invalid_request_error``
        self.type = type
        #: the API's own code when it is a name (OpenAI's ``error.code``), e.g. ``model_not_found``
        self.api_code = api_code
        #: the request parameter the API blames (OpenAI's ``error.param``), e.g. ``model``
        self.param = param
        super().__init__(self.message)

    def __str__(self) -> str:
        parts = [f"HTTP {self.status_code}" if self.status_code is not None else "no HTTP answer"]
        if self.code is not None and self.code != self.status_code:
            parts.append(f"code {self.code}")
        if self.api_code or self.type:
            parts.append(str(self.api_code or self.type))
        return f"{self.message} ({', '.join(parts)})"

    def _state(self) -> dict[str, Any]:
        return {
            "status_code": self.status_code,
            "code": self.code,
            "data": self.data,
            "attempts": self.attempts,
            "type": self.type,
            "api_code": self.api_code,
            "param": self.param,
        }

    def __reduce__(self):  # keep attributes across pickling (multiprocessing, task results)
        return (_rebuild, (type(self), self.message, self._state()), {"content_sha256": self.content_sha256})


def _rebuild(cls: type[LinkAIError], message: str, state: dict[str, Any]) -> LinkAIError:
    return cls(message, **state)


class LinkAIConfigurationError(LinkAIError, ValueError):
    default_message = "LinkAI connection is not usable"


# -- transient: retried -------------------------------------------------------------------------
class LinkAITransientError(LinkAIError):
    default_message = "LinkAI is temporarily unavailable"


class RateLimitError(LinkAITransientError):
    default_message = "Rate limited by LinkAI"

    def __init__(self, message: str | None = None, *, retry_after: float | None = None, **kw: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "retry_after": self.retry_after}


class ServerError(LinkAITransientError):
    default_message = "LinkAI server error"


class ServiceUnavailableError(ServerError):
    default_message = "API call exception, please contact customer service"


class LinkAITimeoutError(LinkAITransientError):
    default_message = "LinkAI did not answer in time"


class LinkAIConnectionError(LinkAITransientError):
    default_message = "Could not reach LinkAI"


# -- per file: recorded as a failed row --------------------------------------------------------
class LinkAIFileError(LinkAIError):
    default_message = "LinkAI could not transcribe this file"


class InvalidRequestError(LinkAIFileError):
    default_message = "Invalid request format"


class ContentModerationError(LinkAIFileError):
    default_message = "Content moderation failed"


class PayloadTooLargeError(LinkAIFileError):
    """413: ``message`` is the server's own (a proxy's page is reduced to its title), and
    ``limit_bytes`` the limit it states, e.g. 26214400 for OpenAI's "Maximum content size limit
    (26214400) exceeded"; ``None`` when it states none (nginx's page)."""

    default_message = "File too large for LinkAI"

    def __init__(self, message: str | None = None, *, limit_bytes: int | None = None, **kw: Any) -> None:
        self.limit_bytes = limit_bytes
        super().__init__(message, **kw)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "limit_bytes": self.limit_bytes}


class MalformedResponseError(LinkAIFileError):
    default_message = "LinkAI answered with an unexpected body"


class UnreadableFileError(LinkAIFileError):
    default_message = "Audio file cannot be read"


# -- batch-fatal: stop the batch ----------------------------------------------------------------
class LinkAIFatalError(LinkAIError):
    default_message = "LinkAI refused the batch"


class AuthenticationError(LinkAIFatalError):
    default_message = "Authentication failed, please check if your API Key is correct"


class AgentNotFoundError(LinkAIFatalError):
    default_message = "Agent does not exist, please check if the app_code parameter is correct"


class PermissionDeniedError(LinkAIFatalError):
    default_message = "No access permission"


class InsufficientCreditsError(LinkAIFatalError):
    default_message = "Insufficient account credits"


class PlanNotSupportedError(LinkAIFatalError):
    default_message = "No API access permission, this API supports Pro version and above"


class EndpointNotFoundError(LinkAIFatalError):
    default_message = "No LinkAI transcription endpoint at this URL"


class ModelNotFoundError(LinkAIFatalError):
    """The API does not serve the model the request named (``model_not_found``): a configuration
    error, fatal to the batch because every file would get the same answer. ``model`` is the
    model's name, from the answer or else the ``model`` field sent (``None`` if neither names it)."""

    default_message = "The requested model does not exist at this endpoint"

    def __init__(self, message: str | None = None, *, model: str | None = None, **kw: Any) -> None:
        self.model = model
        super().__init__(message, **kw)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "model": self.model}


class PartialBatchError(LinkAIError):
    """The batch ran to its end, its rows are written, and some files failed (``failed`` of ``total``)."""

    default_message = "Some files could not be transcribed"

    def __init__(self, message: str | None = None, *, failed: int = 0, total: int = 0, **kw: Any) -> None:
        self.failed = failed
        self.total = total
        super().__init__(message, **kw)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "failed": self.failed, "total": self.total}


_BY_STATUS: dict[int, type[LinkAIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: AgentNotFoundError,
    403: PermissionDeniedError,
    404: EndpointNotFoundError,
    405: EndpointNotFoundError,
    406: InsufficientCreditsError,
    408: PlanNotSupportedError,
    409: ContentModerationError,
    413: PayloadTooLargeError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_for_status(status: int) -> type[LinkAIError]:
    """The class for an HTTP status (or envelope ``code``): the API's table first, then by range."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    if 400 <= status < 500:
        return InvalidRequestError
    return MalformedResponseError
