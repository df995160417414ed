"""LinkAIHook against linkai-server in both error dialects (LinkAI's envelope, OpenAI's
``{"error": {...}}``) over real HTTP: the same errors come out with the same classes, the
server's own message, its code and type, the 413's stated limit, and ``model_not_found`` as a
batch-fatal configuration error naming the model."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from linkai_provider import exceptions as exc
from linkai_provider._api import RetryPolicy
from linkai_provider.hooks.linkai import LinkAIHook
from linkai_provider.server.testing import LinkAIServerHandle, start_server

FAST = RetryPolicy(max_retries=2, initial_backoff=0.01, max_backoff=0.02)
LIMIT = 64 * 1024
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 64


@pytest.fixture(scope="module", params=["linkai", "openai"])
def server(request) -> Iterator[LinkAIServerHandle]:
    with start_server(
        error_style=request.param,
        models=("whisper-1", "tiny"),
        max_upload_bytes=LIMIT,
        allow_fault_header=True,
        retry_after=0,
    ) as handle:
        yield handle


def hook_for(conn_env, server, *, host: str | None = None, fault: str | None = None, **extra) -> LinkAIHook:
    conn = json.loads(server.airflow_conn_json)
    if host is not None:
        conn["host"] = host
    if extra:
        conn["extra"] = extra
    conn_env(linkai_default=conn)
    hook = LinkAIHook(retry_policy=FAST)
    if fault:
        hook.client.headers["X-LinkAI-Fault"] = fault
    return hook


def dialect(server) -> str:
    return server.healthz()["error_style"]


def test_413_keeps_the_servers_message_and_limit(conn_env, server):
    server.reset_stats()
    with pytest.raises(exc.PayloadTooLargeError) as info:
        hook_for(conn_env, server).transcribe(WAV + b"\x00" * (2 * LIMIT), filename="big.wav")
    error = info.value
    if dialect(server) == "openai":
        assert error.message.startswith(f"Maximum content size limit ({LIMIT}) exceeded (")
        assert error.type == "server_error"
    else:
        assert error.message == f"File too large: the upload limit is {LIMIT} bytes (64 KiB)"
        assert error.type is None
    assert error.limit_bytes == LIMIT and error.status_code == 413
    assert "{" not in error.message and error.attempts == 1


def test_model_not_found_names_the_model_and_is_fatal(conn_env, server):
    server.reset_stats()
    hook = hook_for(conn_env, server, extra_fields={"model": "whisper-9"})
    with pytest.raises(exc.ModelNotFoundError) as info:
        hook.transcribe(WAV, filename="a.wav")
    error = info.value
    assert isinstance(error, exc.LinkAIFatalError) and not isinstance(error, exc.EndpointNotFoundError)
    assert error.model == "whisper-9" and "whisper-9" in str(error)
    assert (error.status_code, error.attempts) == (404, 1)
    if dialect(server) == "openai":
        assert (error.api_code, error.param, error.type) == ("model_not_found", "model", "invalid_request_error")
    assert server.stats()["requests_total"] == 1  # not retried
    # a served model, and no model at all (LinkAI's API has no such field), are transcribed
    assert hook.transcribe(WAV, filename="a.wav", extra_fields={"model": "tiny"}).text.startswith("sha256:")
    assert hook_for(conn_env, server).transcribe(WAV, filename="a.wav").text.startswith("sha256:")


def test_a_wrong_url_stays_a_wrong_url(conn_env, server):
    hook = hook_for(conn_env, server, host=server.url + "/wrong", extra_fields={"model": "whisper-9"})
    with pytest.raises(exc.EndpointNotFoundError) as info:
        hook.transcribe(WAV, filename="a.wav")
    assert type(info.value) is exc.EndpointNotFoundError
    if dialect(server) == "openai":
        assert info.value.message == "Invalid URL (POST /wrong/v1/audio/transcriptions)"
    else:
        assert info.value.message == "Not found"


@pytest.mark.parametrize(
    ("fault", "cls", "openai_type"),
    [
        ("400", exc.InvalidRequestError, "invalid_request_error"),
        ("403", exc.PermissionDeniedError, "permission_error"),
        ("409", exc.ContentModerationError, "invalid_request_error"),
        ("500", exc.ServerError, "server_error"),
        ("503", exc.ServiceUnavailableError, "server_error"),
        ("429", exc.RateLimitError, "requests"),
    ],
)
def test_every_error_reads_the_same_in_both_dialects(conn_env, server, fault, cls, openai_type):
    server.reset_stats()
    with pytest.raises(cls) as info:
        hook_for(conn_env, server, fault=fault).transcribe(WAV, filename="a.wav")
    error = info.value
    assert error.status_code == int(fault) and error.message and not error.message.startswith("{")
    assert error.type == (openai_type if dialect(server) == "openai" else None)
    transient = issubclass(cls, exc.LinkAITransientError)
    assert error.attempts == (3 if transient else 1) == server.stats()["requests_total"]


def test_wrong_key_and_test_connection(conn_env, server):
    conn = json.loads(server.airflow_conn_json)
    conn_env(linkai_default={**conn, "password": "sk-wrong-key-123"})
    with pytest.raises(exc.AuthenticationError) as info:
        LinkAIHook(retry_policy=FAST).transcribe(WAV, filename="a.wav")
    assert "sk-wrong-key-123" not in str(info.value)
    if dialect(server) == "openai":
        assert info.value.api_code == "invalid_api_key"
    ok, message = hook_for(conn_env, server, extra_fields={"model": "tiny"}).test_connection()
    assert ok, message
    ok, message = hook_for(conn_env, server, extra_fields={"model": "whisper-9"}).test_connection()
    assert not ok and "does not serve the model 'whisper-9'" in message


@pytest.mark.parametrize("style", ["linkai", "openai"])
def test_spent_credits_are_fatal_in_both_dialects(conn_env, style):
    """LinkAI answers 406; OpenAI 429 ``insufficient_quota``, which no retry cures."""
    with start_server(error_style=style, credits=1) as server:
        hook = hook_for(conn_env, server)
        hook.transcribe(WAV, filename="a.wav")
        with pytest.raises(exc.InsufficientCreditsError) as info:
            hook.transcribe(WAV, filename="b.wav")
        assert info.value.status_code == (429 if style == "openai" else 406)
        assert info.value.attempts == 1 and server.stats()["requests_total"] == 2
