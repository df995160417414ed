"""The HTTP boundary: one place where answers and transport failures become LinkAI errors.

Kept apart from the hook so that the translation, the retry policy and the streaming upload can be
tested on their own (``httpx.MockTransport``) and read in one sitting.
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import httpx
import tenacity

from linkai_provider.exceptions import (
    InsufficientCreditsError,
    LinkAIConnectionError,
    LinkAIError,
    LinkAITimeoutError,
    LinkAITransientError,
    MalformedResponseError,
    ModelNotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    UnreadableFileError,
    error_for_status,
)

log = logging.getLogger(__name__)

SNIPPET_CHARS = 200
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for transient errors; ``Retry-After`` wins when given."""

    max_retries: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0

    def wait_seconds(self, attempt: int, error: BaseException | None) -> float:
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter": never zero, never in lockstep

    def call(
        self,
        fn: Callable[[], T],
        *,
        cancel: threading.Event | None = None,
        on_retry: Callable[[tenacity.RetryCallState], None] | None = None,
    ) -> T:
        """Run ``fn`` with retries. Once ``cancel`` is set no further attempt is made: the last
        real error is raised (tenacity would otherwise start one more attempt after the sleep)."""
        errors: list[BaseException] = []

        def guarded() -> T:
            if errors and cancel is not None and cancel.is_set():
                raise errors[-1]
            try:
                return fn()
            except BaseException as exc:
                errors.append(exc)
                raise

        return self.retrying(cancel, on_retry or (lambda state: None))(guarded)

    def retrying(self, cancel: threading.Event | None, on_retry: Callable[[tenacity.RetryCallState], None]):
        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.wait_seconds(state.attempt_number, error)

        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.max_retries + 1)
        if cancel is not None:
            stop = stop | tenacity.stop_when_event_set(cancel)
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(LinkAITransientError),
            stop=stop,
            wait=wait,
            # a batch-fatal error elsewhere wakes sleepers at once instead of after the backoff
            sleep=_interruptible_sleep(cancel),
            before_sleep=on_retry,
            reraise=True,
        )


def _interruptible_sleep(cancel: threading.Event | None) -> Callable[[float], None]:
    if cancel is None:
        return time.sleep

    def sleep(seconds: float) -> None:
        cancel.wait(seconds)

    return sleep


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")


@dataclass(frozen=True)
class ErrorBody:
    """The error an answer's body states, in whichever dialect it came."""

    message: str | None = None
    code: int | None = None  # a numeric code (LinkAI's envelope; some OpenAI-compatible servers)
    api_code: str | None = None  # a named code (OpenAI's ``error.code``, e.g. ``model_not_found``)
    type: str | None = None
    param: str | None = None
    data: Any = None


def _as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def error_body(body: Any) -> ErrorBody | None:
    """Read the error a JSON body states, or ``None`` when it states none.

    Dialects: LinkAI's envelope ``{"success": false, "code", "message", "data"}``; OpenAI's
    ``{"error": {"message", "type", "code", "param"}}`` (also ``{"error": "message"}``); and the
    ``{"detail": "..."}`` of FastAPI-based OpenAI-compatible servers.
    """
    if not isinstance(body, dict):
        return None
    if body.get("success") is not False and isinstance(body.get("text"), str):
        return None  # a transcript
    if body.get("success") is False:
        code = body.get("code")
        return ErrorBody(
            message=_as_str(body.get("message")),
            code=_as_int(code),
            api_code=None if _as_int(code) is not None else _as_str(code),
            data=body.get("data"),
        )
    error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return ErrorBody(
            message=_as_str(error.get("message")),
            code=_as_int(code),
            api_code=None if _as_int(code) is not None else _as_str(code),
            type=_as_str(error.get("type")),
            param=_as_str(error.get("param")),
        )
    if _as_str(error):
        return ErrorBody(message=error)
    if _as_str(body.get("detail")):
        return ErrorBody(message=body["detail"])
    return None


_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _text_message(response: httpx.Response) -> str:
    """The message of a non-JSON answer: an HTML page's title (a proxy's error page), else its start."""
    text = response.text
    title = _HTML_TITLE.search(text) if "<" in text else None
    if title and title.group(1).strip():
        return " ".join(title.group(1).split())
    return _snippet(text) or response.reason_phrase or "no message"


_UNITS = {
    "": 1, "b": 1, "byte": 1, "bytes": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
}  # fmt: skip
_LIMIT = re.compile(
    r"\b(?:limit|max(?:imum)?|at most|up to|exceed(?:s|ed)?|larger than)\b\D{0,40}?"
    r"(\d+(?:,\d{3})*(?:\.\d+)?)\s*(bytes?|[kmg]i?b|[kmg]|b)?\b",
    re.IGNORECASE,
)


def parse_limit_bytes(message: str | None) -> int | None:
    """The upload limit a 413's message states, in bytes, or ``None``.

    ``"Maximum content size limit (26214400) exceeded (26420683 bytes read)"`` (OpenAI) gives
    26214400; ``"the upload limit is 1048576 bytes (1 MiB)"`` 1048576; ``"Max file size is 25 MB"``
    25000000 (decimal units are taken as written: the lower reading is the safe one); nginx's
    "413 Request Entity Too Large" none. A figure under 1 KiB is no upload limit and is ignored.
    """
    if not message:
        return None
    match = _LIMIT.search(message)
    if match is None:
        return None
    value = float(match.group(1).replace(",", "")) * _UNITS[(match.group(2) or "").lower()]
    return int(value) if value >= 1024 else None


_MODEL_MISSING = re.compile(r"\bmodel\b.*\b(?:does not exist|not found|not exist|unknown|not available)", re.I)
_MODEL_NAME = re.compile(r"\bmodel\s*[`'\"]([^`'\"]+)[`'\"]", re.IGNORECASE)


def _is_model_not_found(status: int, err: ErrorBody) -> bool:
    if err.api_code == "model_not_found":
        return True
    if status != 404:
        return False  # any other 404 (a wrong URL, "Invalid URL (POST /v1/...)") stays what it is
    return err.param == "model" or bool(err.message and _MODEL_MISSING.search(err.message))


def _error_class(status: int, err: ErrorBody) -> type[LinkAIError]:
    if err.api_code == "insufficient_quota":  # OpenAI says so with a 429, which no retry can cure
        return InsufficientCreditsError
    if status >= 400:
        return error_for_status(status)
    return error_for_status(err.code or 500)


def parse_response(
    response: httpx.Response, redact: Callable[[str], str] = lambda s: s, *, model: str | None = None
) -> str:
    """Return the transcript of a response or raise the error it stands for.

    An error body is read in LinkAI's envelope and in OpenAI's dialect (see :func:`error_body`),
    wherever it appears, an HTTP 200 body included; there its numeric ``code`` picks the class.
    Otherwise the HTTP status does, but for two named codes: ``model_not_found`` (or a 404 that
    blames the model) is :class:`ModelNotFoundError`, naming the model (from the answer, else
    ``model``: the field sent); ``insufficient_quota`` is :class:`InsufficientCreditsError`.
    """
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    err = error_body(body)

    if status >= 400 or err is not None:
        err = err or ErrorBody()
        message = err.message or _text_message(response)
        common: dict[str, Any] = {
            "status_code": status,
            "code": err.code,
            "data": err.data,
            "type": err.type,
            "api_code": err.api_code,
            "param": err.param,
        }
        if _is_model_not_found(status, err):
            named = _MODEL_NAME.search(message)
            name = named.group(1) if named else model
            if name and name not in message:
                message = f"{message} (model {name!r})"
            raise ModelNotFoundError(redact(message), model=name, **common)
        cls = _error_class(status, err)
        if cls is RateLimitError:
            raise RateLimitError(
                redact(message), retry_after=parse_retry_after(response.headers.get("retry-after")), **common
            )
        if cls is PayloadTooLargeError:
            raise PayloadTooLargeError(redact(message), limit_bytes=parse_limit_bytes(message), **common)
        raise cls(redact(message), **common)

    if body is None:
        raise MalformedResponseError(
            redact(f"answer is not JSON: {_snippet(response.text) or '(empty body)'}"), status_code=status
        )
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str):
        keys = sorted(body) if isinstance(body, dict) else type(body).__name__
        raise MalformedResponseError(f"JSON answer has no 'text' string (got {keys})", status_code=status)
    return text


def translate_transport_error(exc: httpx.TransportError, redact: Callable[[str], str]) -> LinkAIError:
    detail = redact(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    if isinstance(exc, httpx.TimeoutException):
        return LinkAITimeoutError(f"no answer in time ({detail})")
    return LinkAIConnectionError(f"connection failed ({detail})")


class HashingReader(io.RawIOBase):
    """Wraps a binary file: streams it to httpx in chunks while hashing and counting the bytes.

    httpx seeks to 0 before it renders a multipart body, so every attempt hashes from the start.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw
        self._start = raw.tell() if raw.seekable() else 0
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0
        self.complete = False  # read to the end since the last rewind: the hash covers the whole file

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def tell(self) -> int:
        return self._raw.tell() - self._start

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = self._raw.seek(self._start + offset) - self._start
        else:
            position = self._raw.seek(offset, whence) - self._start
        if position == 0:
            self.sha256 = hashlib.sha256()
            self.bytes_read = 0
            self.complete = False
        return position

    def read(self, size: int = -1) -> bytes:
        try:
            chunk = self._raw.read(size)
        except OSError as exc:  # a read failure is the file's fault, never a reason to retry the API
            raise UnreadableFileError(f"reading the file failed: {exc}") from exc
        self.sha256.update(chunk)
        self.bytes_read += len(chunk)
        if not chunk and size != 0:
            self.complete = True
        return chunk

    def readinto(self, buffer: Any) -> int:  # pragma: no cover - httpx uses read()
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


@dataclass
class AttemptLog:
    """What the retry loop did for one file, kept for the result row."""

    count: int = 0
    first_sent: float | None = None
