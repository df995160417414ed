"""Narrow unit tests of the HTTP boundary: answer → result or typed error. Real-server tests are in
test_linkai_hook.py; these pin the translation table itself."""

from __future__ import annotations

import io
import pickle
import threading

import httpx
import pytest

from linkai_provider import exceptions as exc
from linkai_provider._api import HashingReader, RetryPolicy, parse_limit_bytes, parse_response, parse_retry_after


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


# -- OpenAI's dialect and other bodies of OpenAI-compatible servers --------------------------------
def openai_body(message: str, type_: str = "invalid_request_error", code=None, param=None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def test_openai_error_gives_message_type_code_and_param():
    long = "Invalid file format. " + "Supported formats: flac, m4a, mp3, mp4, mpeg, mpga, oga, ogg, wav, webm. " * 4
    with pytest.raises(exc.InvalidRequestError) as info:
        parse_response(httpx.Response(400, json=openai_body(long, code="invalid_value", param="file")))
    error = info.value
    assert error.message == long  # whole, not raw JSON cut at 200 characters
    assert (error.status_code, error.code, error.type, error.api_code, error.param) == (
        400, 400, "invalid_request_error", "invalid_value", "file"
    )  # fmt: skip
    assert str(error) == f"{long} (HTTP 400, invalid_value)"


def test_openai_numeric_code_and_other_shapes():
    with pytest.raises(exc.ServiceUnavailableError) as info:  # vLLM-style: a number in "code"
        parse_response(httpx.Response(503, json=openai_body("overloaded", "ServiceUnavailableError", code=503)))
    assert (info.value.code, info.value.api_code, info.value.message) == (503, None, "overloaded")
    with pytest.raises(exc.InvalidRequestError) as info:
        parse_response(httpx.Response(400, json={"error": "bad audio"}))
    assert info.value.message == "bad audio"
    with pytest.raises(exc.InvalidRequestError) as info:  # FastAPI's HTTPException
        parse_response(httpx.Response(400, json={"detail": "Unsupported file"}))
    assert info.value.message == "Unsupported file"
    with pytest.raises(exc.ServerError, match="exploded") as info:  # an OpenAI error body in an HTTP 200
        parse_response(httpx.Response(200, json=openai_body("exploded", "server_error")))
    assert info.value.status_code == 200
    # a transcript is a transcript, whatever else the body holds
    assert parse_response(httpx.Response(200, json={"text": "hi", "error": None, "detail": "x"})) == "hi"


def test_413_keeps_the_message_and_the_limit_it_states():
    openai = "Maximum content size limit (26214400) exceeded (26420683 bytes read)"
    with pytest.raises(exc.PayloadTooLargeError) as info:
        parse_response(httpx.Response(413, json=openai_body(openai, "server_error")))
    assert (info.value.message, info.value.limit_bytes, info.value.type) == (openai, 26214400, "server_error")
    nginx = ("<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 "
             "Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
    with pytest.raises(exc.PayloadTooLargeError) as info:
        parse_response(httpx.Response(413, text=nginx, headers={"content-type": "text/html"}))
    assert (info.value.message, info.value.limit_bytes) == ("413 Request Entity Too Large", None)


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        ("Maximum content size limit (26214400) exceeded (26420683 bytes read)", 26214400),
        ("File too large: the upload limit is 1048576 bytes (1 MiB)", 1048576),
        ("Max file size is 25 MB", 25_000_000),
        ("File size exceeds the limit of 25MiB", 25 * 1024 * 1024),
        ("request body larger than 26,214,400 bytes", 26214400),
        ("413 Request Entity Too Large", None),
        ("maximum 3 files per request", None),  # no upload limit: under 1 KiB
        (None, None),
    ],
)
def test_parse_limit_bytes(message, limit):
    assert parse_limit_bytes(message) == limit


def test_model_not_found_is_fatal_and_names_the_model():
    body = openai_body("The model `whisper-9` does not exist or you do not have access to it.", code="model_not_found")
    with pytest.raises(exc.ModelNotFoundError) as info:
        parse_response(httpx.Response(404, json=body), model="sent-model")
    error = info.value
    assert isinstance(error, exc.LinkAIFatalError) and not isinstance(error, exc.EndpointNotFoundError)
    assert (error.model, error.api_code, error.status_code) == ("whisper-9", "model_not_found", 404)
    # the answer does not name it: the field sent does
    with pytest.raises(exc.ModelNotFoundError) as info:
        parse_response(httpx.Response(404, json=openai_body("No such model", code="model_not_found")), model="w-2")
    assert (info.value.model, info.value.message) == ("w-2", "No such model (model 'w-2')")
    # a 404 that blames the model without the code; LinkAI's envelope saying so
    with pytest.raises(exc.ModelNotFoundError):
        parse_response(httpx.Response(404, json=openai_body("not served", param="model")), model="x")
    with pytest.raises(exc.ModelNotFoundError) as info:
        parse_response(httpx.Response(404, json=envelope(404, "Model 'tiny' not found")))
    assert info.value.model == "tiny"


def test_a_404_without_model_not_found_stays_a_wrong_url():
    for body in (openai_body("Invalid URL (POST /v2/audio/transcriptions)"), envelope(404, "Not found"), None):
        response = httpx.Response(404, json=body) if body else httpx.Response(404, text="404 page not found")
        with pytest.raises(exc.EndpointNotFoundError) as info:
            parse_response(response, model="whisper-1")
        assert type(info.value) is exc.EndpointNotFoundError


def test_insufficient_quota_is_fatal_not_a_rate_limit():
    body = openai_body("You exceeded your current quota", "insufficient_quota", code="insufficient_quota")
    with pytest.raises(exc.InsufficientCreditsError) as info:
        parse_response(httpx.Response(429, json=body, headers={"Retry-After": "1"}))
    assert info.value.status_code == 429 and not isinstance(info.value, exc.LinkAITransientError)
    with pytest.raises(exc.RateLimitError) as limited:  # an ordinary 429 stays transient
        parse_response(httpx.Response(429, json=openai_body("slow down", "requests", code="rate_limit_exceeded"),
                                      headers={"Retry-After": "2"}))
    assert limited.value.retry_after == 2.0


def test_new_attributes_survive_pickling():
    too_large = exc.PayloadTooLargeError("big", status_code=413, limit_bytes=1024, type="server_error")
    model = exc.ModelNotFoundError("gone", status_code=404, model="m", api_code="model_not_found", param="model")
    for original in (too_large, model):
        copy = pickle.loads(pickle.dumps(original))
        assert type(copy) is type(original) and copy._state() == original._state()
    assert pickle.loads(pickle.dumps(too_large)).limit_bytes == 1024
    assert pickle.loads(pickle.dumps(model)).model == "m"
