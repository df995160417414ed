"""--too-large-style: the 413 of an upload over --max-upload-bytes, as the API's JSON error body (LinkAI's
envelope, or OpenAI's ``{"error": {...}}`` with --error-style openai) or as nginx's page.

Both refusal points are covered: the ``Content-Length`` precheck (before any body byte) and the
streaming limit (a chunked upload, whose size is unknown until it crosses the limit).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from linkai_provider.server.testing import LinkAIServerHandle, start_server

from .test_http_errors import assert_envelope
from .test_upload_limits import BOUNDARY, PART_HEAD, PART_TAIL, WAV_HEAD

MiB = 1024 * 1024
NGINX_PAGE = (
    "<html><head><title>413 Request Entity Too Large</title></head><body>"
    "<center><h1>413 Request Entity Too Large</h1></center><hr><center>nginx</center></body></html>"
)


@pytest.fixture(scope="module", params=["envelope", "nginx", "openai"])
def server(request) -> Iterator[LinkAIServerHandle]:
    style, errors = ("envelope", "openai") if request.param == "openai" else (request.param, "linkai")
    with start_server(max_upload_bytes=MiB, too_large_style=style, error_style=errors) as handle:
        yield handle


def style_of(server: LinkAIServerHandle) -> str:
    health = server.healthz()
    return "openai" if health["error_style"] == "openai" else health["too_large_style"]


def assert_too_large(response: httpx.Response, style: str) -> None:
    if style == "openai":
        assert response.status_code == 413, response.text
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error["message"].startswith("Maximum content size limit (1048576) exceeded (")
        assert error["message"].endswith(" bytes read)")
        assert (error["type"], error["param"], error["code"]) == ("server_error", None, None)
    elif style == "nginx":
        assert response.status_code == 413, response.text
        assert response.reason_phrase == "Request Entity Too Large"
        assert response.headers["content-type"] == "text/html"
        assert response.text.replace("\r\n", "") == NGINX_PAGE
    else:
        assert_envelope(response, 413, "File too large: the upload limit is 1048576 bytes (1 MiB)")


def test_style_is_reported(server) -> None:
    style = server.healthz()["too_large_style"]
    assert style in ("envelope", "nginx")
    assert server.state.config.too_large_style == style


def test_content_length_precheck(server) -> None:
    """A declared 2 GiB body: the 413 comes before a single body byte is sent."""
    style = style_of(server)
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(
            (
                f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.api_key}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {2 * 1024**3}\r\n\r\n"
            ).encode()
        )
        reader = sock.makefile("rb")
        status_line = reader.readline()
        headers: dict[bytes, bytes] = {}
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        body = reader.read(int(headers[b"content-length"]))
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large\r\n", status_line
    if style == "nginx":
        assert headers[b"content-type"] == b"text/html"
        assert body.decode().replace("\r\n", "") == NGINX_PAGE
    elif style == "openai":  # the declared Content-Length is what it states as read
        assert json.loads(body)["error"]["message"] == (
            f"Maximum content size limit (1048576) exceeded ({2 * 1024**3} bytes read)"
        )
    else:
        assert headers[b"content-type"] == b"application/json"
        assert b"upload limit is 1048576 bytes" in body


def test_httpx_upload_with_content_length(server) -> None:
    style = style_of(server)
    response = httpx.post(server.transcriptions_url, headers={"Authorization": f"Bearer {server.api_key}"},
                          files={"file": ("big.wav", WAV_HEAD + b"\x00" * (3 * MiB))}, timeout=60)
    assert_too_large(response, style)


def test_chunked_upload_hits_the_streaming_limit(server) -> None:
    """No Content-Length: the limit is found while streaming; httpx still gets the answer."""
    style = style_of(server)
    server.reset_stats()

    def body() -> Iterator[bytes]:
        yield PART_HEAD + WAV_HEAD
        for _ in range(48):
            yield b"\x01" * (64 * 1024)  # 3 MiB in all
        yield PART_TAIL

    headers = {"Authorization": f"Bearer {server.api_key}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    response = httpx.post(server.transcriptions_url, content=body(), headers=headers, timeout=60)
    assert "content-length" not in response.request.headers
    assert_too_large(response, style)
    assert server.stats()["by_status"] == {"413": 1}


def test_under_the_limit_is_unaffected(server) -> None:
    response = httpx.post(server.transcriptions_url, headers={"Authorization": f"Bearer {server.api_key}"},
                          files={"file": ("small.wav", WAV_HEAD + b"\x00" * 1024)})
    assert response.status_code == 200, response.text


def test_forced_413_fault_stays_in_the_envelope() -> None:
    """Only the upload limit speaks nginx; an injected 413 is the API's own envelope."""
    with start_server(too_large_style="nginx", allow_fault_header=True) as handle:
        response = httpx.post(handle.transcriptions_url,
                              headers={"Authorization": f"Bearer {handle.api_key}", "X-LinkAI-Fault": "413"},
                              files={"file": ("a.wav", WAV_HEAD)})
        assert_envelope(response, 413)
