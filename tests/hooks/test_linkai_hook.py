"""LinkAIHook against linkai-server over real HTTP on 127.0.0.1: every status of the API's table,
retries, Retry-After, dropped connections, odd bodies, timeouts, streaming, test_connection."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc

import httpx
import pytest

from linkai_provider import exceptions as exc
from linkai_provider._api import RetryPolicy
from linkai_provider.hooks.linkai import LinkAIHook, normalize_base_url
from tests.helpers import digest_text

FAST = RetryPolicy(max_retries=3, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def fault_server(linkai_server_factory):
    return linkai_server_factory(allow_fault_header=True, retry_after=0)


def make_hook(conn_env, server, *, fault: str | None = None, policy=FAST, **conn_extra) -> LinkAIHook:
    conn = json.loads(server.airflow_conn_json)
    if conn_extra:
        conn["extra"] = conn_extra
    conn_env(linkai_default=conn)
    hook = LinkAIHook(retry_policy=policy)
    if fault:
        hook.client.headers["X-LinkAI-Fault"] = fault
    return hook


def test_transcribes_path_bytes_and_file_objects(tmp_path, conn_env, linkai_server, speech):
    hook = make_hook(conn_env, linkai_server)
    wav = speech.dir / "clip_06.wav"
    data = wav.read_bytes()
    for source in (wav, str(wav), data, open(wav, "rb"), lambda: open(wav, "rb")):  # noqa: SIM115
        result = hook.transcribe(source, filename="clip.wav")
        assert result.text == digest_text(data)
        assert result.content_sha256 == hashlib.sha256(data).hexdigest()
        assert (result.size_bytes, result.attempts) == (len(data), 1)
        assert result.latency_ms >= 0


@pytest.mark.parametrize(
    ("fault", "cls", "status"),
    [
        ("400", exc.InvalidRequestError, 400),
        ("401", exc.AuthenticationError, 401),
        ("402", exc.AgentNotFoundError, 402),
        ("403", exc.PermissionDeniedError, 403),
        ("406", exc.InsufficientCreditsError, 406),
        ("408", exc.PlanNotSupportedError, 408),
        ("409", exc.ContentModerationError, 409),
        ("413", exc.PayloadTooLargeError, 413),
        ("nonjson", exc.MalformedResponseError, 200),
        ("notext", exc.MalformedResponseError, 200),
    ],
)
def test_non_transient_statuses_raise_their_class_without_retry(conn_env, fault_server, fault, cls, status):
    hook = make_hook(conn_env, fault_server, fault=fault)
    fault_server.reset_stats()
    with pytest.raises(cls) as info:
        hook.transcribe(b"RIFF....WAVEfmt ", filename="a.wav")
    error = info.value
    assert (error.status_code, error.attempts) == (status, 1)
    assert error.content_sha256 == hashlib.sha256(b"RIFF....WAVEfmt ").hexdigest()  # sent whole, answered
    assert error.message and fault_server.api_key not in str(error)
    assert fault_server.stats()["requests_total"] == 1  # never retried


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        ("503", exc.ServiceUnavailableError),
        ("500", exc.ServerError),
        ("502", exc.ServerError),
        ("504", exc.ServerError),
        ("429", exc.RateLimitError),
        ("envelope200", exc.ServiceUnavailableError),
        ("drop", exc.LinkAIConnectionError),
        ("nonjson:502", exc.ServerError),
    ],
)
def test_transient_errors_are_retried_then_raised(conn_env, fault_server, fault, cls):
    hook = make_hook(conn_env, fault_server, fault=fault)
    fault_server.reset_stats()
    with pytest.raises(cls) as info:
        hook.transcribe(b"RIFF....WAVEfmt ", filename="a.wav")
    assert info.value.attempts == FAST.max_retries + 1
    assert fault_server.stats()["requests_total"] == FAST.max_retries + 1
    if fault == "drop":
        assert info.value.content_sha256 is None  # no answer: nobody confirmed what arrived


def test_rate_limit_honours_retry_after(conn_env, fault_server, capfd):
    hook = make_hook(conn_env, fault_server, fault="429", policy=RetryPolicy(max_retries=1, initial_backoff=0.01))
    hook.client.headers["X-LinkAI-Fault-Retry-After"] = "1"
    with pytest.raises(exc.RateLimitError) as info:
        hook.transcribe(b"RIFF....WAVEfmt ", filename="a.wav")
    assert info.value.retry_after == 1.0
    out, err = capfd.readouterr()
    assert "retrying in 1.0s" in out + err  # the server's wait, not the 0.01 s backoff


def test_random_faults_are_retried_to_success(conn_env, linkai_server_factory, speech):
    server = linkai_server_factory(fail_503_rate=0.3, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0, seed=7)
    hook = make_hook(conn_env, server, policy=RetryPolicy(max_retries=12, initial_backoff=0.01, max_backoff=0.02))
    attempts = []
    for path in sorted(speech.dir.iterdir()):
        result = hook.transcribe(path)
        assert result.text == digest_text(path.read_bytes())
        attempts.append(result.attempts)
    stats = server.stats()
    assert sum(attempts) == stats["requests_total"] and max(attempts) > 1
    assert stats["duplicate_sha256"] == 0 and stats["transcriptions_ok"] == len(attempts)


def test_timeout_is_transient(conn_env, fault_server):
    hook = make_hook(conn_env, fault_server, policy=RetryPolicy(max_retries=1, initial_backoff=0.01), timeout=0.3)
    hook.client.headers["X-LinkAI-Fault"] = "none"
    hook.client.headers["X-LinkAI-Fault-Delay-Ms"] = "3000"
    with pytest.raises(exc.LinkAITimeoutError) as info:
        hook.transcribe(b"RIFF....WAVEfmt ", filename="a.wav")
    assert info.value.attempts == 2 and info.value.status_code is None


def test_unreachable_host_is_a_connection_error(conn_env):
    from tests.conftest import free_port

    conn_env(linkai_default={"conn_type": "linkai", "host": f"127.0.0.1:{free_port()}", "password": "sk-x"})
    with pytest.raises(exc.LinkAIConnectionError, match="connection failed"):
        LinkAIHook(retry_policy=FAST).transcribe(b"x", filename="a.wav")


def test_upload_is_streamed_not_read_whole(tmp_path, conn_env, linkai_server_factory):
    server = linkai_server_factory(process=True, max_upload_bytes=1 << 30)  # own process: measure only the client
    big = tmp_path / "big.wav"
    with open(big, "wb") as fh:
        fh.write(b"RIFF\x00\x00\x00\x00WAVEfmt ")
        fh.truncate(256 * 1024 * 1024)
    hook = make_hook(conn_env, server)
    tracemalloc.start()
    try:
        result = hook.transcribe(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size_bytes == os.path.getsize(big)
    assert result.text.endswith(f"bytes:{256 * 1024 * 1024}")
    assert peak < 16 * 1024 * 1024, f"client held {peak / 2**20:.0f} MiB for a 256 MiB upload"


def test_test_connection_tells_cases_apart_without_spending_credits(conn_env, linkai_server):
    linkai_server.reset_stats()
    conn = json.loads(linkai_server.airflow_conn_json)
    conn_env(linkai_default=conn)
    ok, message = LinkAIHook().test_connection()
    assert ok and "accepted the API key" in message

    conn_env(linkai_default={**conn, "password": "sk-wrong"})
    ok, message = LinkAIHook().test_connection()
    assert not ok and "refused the API key" in message and "sk-wrong" not in message

    conn_env(linkai_default={**conn, "host": conn["host"] + "/not-linkai"})
    ok, message = LinkAIHook().test_connection()
    assert not ok and "not a LinkAI transcription endpoint" in message

    from tests.conftest import free_port

    conn_env(linkai_default={**conn, "host": f"http://127.0.0.1:{free_port()}"})
    ok, message = LinkAIHook().test_connection()
    assert not ok and message.startswith("Cannot reach")
    assert linkai_server.stats()["transcriptions_ok"] == 0  # the probe is never recognised


def test_missing_key_names_the_connection(conn_env):
    conn_env(linkai_nokey={"conn_type": "linkai", "host": "http://127.0.0.1:1"})
    with pytest.raises(exc.LinkAIConfigurationError, match="connection 'linkai_nokey' has no API key"):
        LinkAIHook("linkai_nokey").transcribe(b"x", filename="a.wav")
    ok, message = LinkAIHook("linkai_nokey").test_connection()
    assert not ok and "no API key" in message


@pytest.mark.parametrize("timeout", [0, "0", -5])
def test_timeout_zero_or_negative_is_a_configuration_error(conn_env, timeout):
    """0 must not silently become the 300 s default: it is refused with the connection's name."""
    key = "sk-never-shown-0"
    conn_env(
        linkai_t0={"conn_type": "linkai", "host": "http://127.0.0.1:1", "password": key, "extra": {"timeout": timeout}}
    )
    with pytest.raises(exc.LinkAIConfigurationError, match="connection 'linkai_t0': timeout must be > 0") as info:
        LinkAIHook("linkai_t0").config  # noqa: B018 - the property raises
    assert key not in str(info.value)
    ok, message = LinkAIHook("linkai_t0").test_connection()
    assert not ok and "timeout must be > 0" in message and key not in message


def test_timeout_override_zero_is_refused_and_empty_extra_means_default(conn_env):
    conn = {"conn_type": "linkai", "host": "http://127.0.0.1:1", "password": "sk-x"}
    conn_env(linkai_t={**conn, "extra": {"timeout": ""}}, linkai_t7={**conn, "extra": {"timeout": 7}})
    assert LinkAIHook("linkai_t").config.timeout == 300.0
    assert LinkAIHook("linkai_t7").config.timeout == 7.0
    assert LinkAIHook("linkai_t7", timeout=2).config.timeout == 2.0
    with pytest.raises(exc.LinkAIConfigurationError, match="timeout must be > 0"):
        LinkAIHook("linkai_t7", timeout=0).config  # noqa: B018


def test_uri_form_connection_and_masking(monkeypatch, linkai_server, speech):
    from airflow.sdk.log import _secrets_masker  # the masker Airflow applies to task logs

    port = linkai_server.url.rsplit(":", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_LINKAI_URI", f"linkai://:{linkai_server.api_key}@127.0.0.1:{port}")
    hook = LinkAIHook("linkai_uri")
    assert hook.config.base_url == linkai_server.url
    assert linkai_server.api_key not in repr(hook.config)
    assert hook.transcribe(speech.dir / "clip_06.wav").attempts == 1
    assert linkai_server.api_key not in _secrets_masker().redact(f"key={linkai_server.api_key}")


def test_base_url_normalisation():
    assert normalize_base_url(None) == "https://api.linkai.cloud"
    assert normalize_base_url("api.linkai.cloud") == "https://api.linkai.cloud"
    assert normalize_base_url("localhost:8765") == "http://localhost:8765"
    assert normalize_base_url("127.0.0.1", 8765) == "http://127.0.0.1:8765"
    assert normalize_base_url("https://gw.example.com/v1/") == "https://gw.example.com/v1"
    with pytest.raises(exc.LinkAIConfigurationError):
        normalize_base_url("ftp://example.com")


def test_multipart_carries_filename_content_type_and_extra_fields(conn_env):
    """Narrow unit case: what goes on the wire (MockTransport)."""
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers["authorization"]
        seen["body"] = request.read()
        return httpx.Response(200, json={"text": "ok"})

    conn_env(
        linkai_default={
            "conn_type": "linkai",
            "host": "https://gw.example.com/v1",
            "password": "sk-wire",
            "extra": {"extra_fields": {"model": "whisper-1"}},
        }
    )
    hook = LinkAIHook(extra_fields={"language": "de"})
    hook.__dict__["client"] = httpx.Client(transport=httpx.MockTransport(handler), headers=hook.client.headers)
    assert hook.transcribe(b"fLaC-bytes", filename="Grüße #1.FLAC").text == "ok"
    body = seen["body"]
    assert seen["auth"] == "Bearer sk-wire"
    assert 'name="file"; filename="Grüße #1.FLAC"'.encode() in body
    assert b"Content-Type: audio/flac" in body and b"fLaC-bytes" in body
    assert b'name="model"\r\n\r\nwhisper-1' in body and b'name="language"\r\n\r\nde' in body
    assert hook.config.endpoint == "https://gw.example.com/v1/audio/transcriptions"


def test_tls_verification_on_by_default_and_only_the_connection_changes_it(conn_env):
    conn_env(linkai_default={"conn_type": "linkai", "host": "api.linkai.cloud", "password": "sk-x"})
    assert LinkAIHook().config.verify is True and LinkAIHook().config.proxy is None
    conn_env(
        linkai_default={
            "conn_type": "linkai",
            "host": "https://gw.internal",
            "password": "sk-x",
            "extra": {"verify": "false", "proxy": "http://127.0.0.1:3128"},
        }
    )
    config = LinkAIHook().config
    assert (config.verify, config.proxy) == (False, "http://127.0.0.1:3128")
    from inspect import signature

    from linkai_provider.operators.transcribe import TranscribeAudioOperator

    assert not {"verify", "proxy"} & set(signature(TranscribeAudioOperator.__init__).parameters)
