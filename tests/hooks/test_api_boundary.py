"""Narrow unit tests of the HTTP boundary: answer → result or typed error. Real-server tests are in
test_linkai_hook.py; these pin the translation table itself."""

from __future__ import annotations

import io
import pickle
import threading

import httpx
import pytest

from linkai_provider import exceptions as exc
from linkai_provider._api import HashingReader, RetryPolicy, parse_response, parse_retry_after


def envelope(code: int, message: str = "boom") -> dict:
    return {"success": False, "code": code, "message": message, "data": None}


@pytest.mark.parametrize(
    ("status", "cls", "family"),
    [
        (400, exc.InvalidRequestError, exc.LinkAIFileError),
        (401, exc.AuthenticationError, exc.LinkAIFatalError),
        (402, exc.AgentNotFoundError, exc.LinkAIFatalError),
        (403, exc.PermissionDeniedError, exc.LinkAIFatalError),
        (404, exc.EndpointNotFoundError, exc.LinkAIFatalError),
        (406, exc.InsufficientCreditsError, exc.LinkAIFatalError),
        (408, exc.PlanNotSupportedError, exc.LinkAIFatalError),
        (409, exc.ContentModerationError, exc.LinkAIFileError),
        (413, exc.PayloadTooLargeError, exc.LinkAIFileError),
        (429, exc.RateLimitError, exc.LinkAITransientError),
        (500, exc.ServerError, exc.LinkAITransientError),
        (502, exc.ServerError, exc.LinkAITransientError),
        (503, exc.ServiceUnavailableError, exc.LinkAITransientError),
        (504, exc.ServerError, exc.LinkAITransientError),
        (418, exc.InvalidRequestError, exc.LinkAIFileError),
    ],
)
def test_every_status_maps_to_its_class(status, cls, family):
    response = httpx.Response(status, json=envelope(status, f"message {status}"))
    with pytest.raises(cls) as info:
        parse_response(response)
    error = info.value
    assert isinstance(error, family) and isinstance(error, exc.LinkAIError)
    assert (error.status_code, error.code, error.message) == (status, status, f"message {status}")


def test_envelope_in_http_200_uses_its_code():
    with pytest.raises(exc.InsufficientCreditsError) as info:
        parse_response(httpx.Response(200, json=envelope(406, "Insufficient account credits")))
    assert info.value.status_code == 200 and info.value.code == 406


def test_envelope_code_differs_from_status_class_follows_status():
    # "Determine the error type based on the HTTP status code": the status wins when it is an error
    with pytest.raises(exc.PlanNotSupportedError) as info:
        parse_response(httpx.Response(408, json=envelope(10408, "No API access permission")))
    assert info.value.code == 10408
    assert "HTTP 408" in str(info.value) and "code 10408" in str(info.value)


def test_non_json_and_missing_text_are_malformed():
    with pytest.raises(exc.MalformedResponseError, match="not JSON: <html>gateway</html>"):
        parse_response(httpx.Response(200, text="<html>gateway</html>"))
    with pytest.raises(exc.MalformedResponseError, match="no 'text'"):
        parse_response(httpx.Response(200, json={"result": "hi"}))
    assert parse_response(httpx.Response(200, json={"text": "hello"})) == "hello"


def test_non_json_error_body_keeps_status_class():
    with pytest.raises(exc.ServerError, match="upstream crashed"):
        parse_response(httpx.Response(502, text="upstream crashed"))


def test_rate_limit_reads_retry_after():
    response = httpx.Response(429, headers={"Retry-After": "7"}, json=envelope(429, "slow down"))
    with pytest.raises(exc.RateLimitError) as info:
        parse_response(response)
    assert info.value.retry_after == 7.0
    assert RetryPolicy().wait_seconds(1, info.value) == 7.0
    assert RetryPolicy(max_retry_after=3).wait_seconds(1, info.value) == 3


def test_retry_after_http_date_and_garbage():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_with_jitter_and_is_capped():
    policy = RetryPolicy(initial_backoff=1, max_backoff=8)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (9, 8)]:
        waits = {policy.wait_seconds(attempt, exc.ServerError()) for _ in range(50)}
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(waits) > 1  # jittered, not in lockstep


def test_redaction_applies_to_server_messages():
    response = httpx.Response(401, json=envelope(401, "bad key sk-secret-123"))
    with pytest.raises(exc.AuthenticationError) as info:
        parse_response(response, redact=lambda s: s.replace("sk-secret-123", "***"))
    assert "sk-secret-123" not in str(info.value) and "***" in info.value.message


def test_errors_pickle_with_attributes():
    original = exc.RateLimitError("slow", status_code=429, code=429, retry_after=2.5, attempts=3)
    original.content_sha256 = "ab" * 32
    copy = pickle.loads(pickle.dumps(original))
    assert (type(copy), copy.retry_after, copy.attempts, copy.status_code) == (exc.RateLimitError, 2.5, 3, 429)
    assert copy.content_sha256 == "ab" * 32


def test_hashing_reader_rehashes_from_start_on_seek():
    import hashlib

    data = b"abc" * 100_000
    reader = HashingReader(io.BytesIO(data))
    reader.read(1000)
    reader.seek(0)
    while reader.read(65536):
        pass
    assert reader.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    assert reader.bytes_read == len(data)


def test_hashing_reader_turns_read_failures_into_unreadable_file():
    class Broken(io.BytesIO):
        def read(self, *a):
            raise OSError("disk on fire")

    with pytest.raises(exc.UnreadableFileError, match="disk on fire"):
        HashingReader(Broken(b"x")).read(10)


def test_cancel_event_stops_retry_sleep_early():
    cancel = threading.Event()
    calls = []

    def always_503():
        calls.append(1)
        if len(calls) == 1:
            threading.Timer(0.1, cancel.set).start()
        raise exc.ServiceUnavailableError(status_code=503)

    policy = RetryPolicy(max_retries=5, initial_backoff=30, max_backoff=30)
    import time

    started = time.monotonic()
    with pytest.raises(exc.ServiceUnavailableError):
        policy.call(always_503, cancel=cancel)
    assert len(calls) == 1  # the event stopped further attempts
    assert time.monotonic() - started < 10  # and woke the 15-30 s backoff sleep
