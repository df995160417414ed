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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import httpx
import tenacity

from linkai_provider.exceptions import (
    LinkAIConnectionError,
    LinkAIError,
    LinkAITimeoutError,
    LinkAITransientError,
    MalformedResponseError,
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


def parse_response(response: httpx.Response, redact: Callable[[str], str] = lambda s: s) -> str:
    """Return the transcript of a response or raise the error it stands for.

    The error envelope ``{"success": false, "code", "message", "data"}`` is honoured wherever it
    appears, an HTTP 200 body included; there its ``code`` picks the class.
    """
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    envelope = body if isinstance(body, dict) and body.get("success") is False else None

    if status >= 400 or envelope is not None:
        code = envelope.get("code") if envelope is not None else None
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        message = envelope.get("message") if envelope is not None else None
        if not isinstance(message, str) or not message:
            message = _snippet(response.text) or response.reason_phrase or "no message"
        cls = error_for_status(status if status >= 400 else (code or 500))
        kwargs: dict[str, Any] = {
            "status_code": status,
            "code": code,
            "data": envelope.get("data") if envelope is not None else None,
        }
        if cls is RateLimitError:
            kwargs["retry_after"] = parse_retry_after(response.headers.get("retry-after"))
        raise cls(redact(message), **kwargs)

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
