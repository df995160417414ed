"""--error-style openai and --models: error bodies as OpenAI's API answers them, over real HTTP,
and read by OpenAI's own Python SDK as it reads OpenAI's (the LinkAI dialect is test_http_errors.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from linkai_provider.server.testing import LinkAIServerHandle, start_server

from .test_http_errors import assert_envelope
from .test_upload_limits import WAV_HEAD

WAV = WAV_HEAD + b"\x00" * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[LinkAIServerHandle]:
    with start_server(error_style="openai", models=("whisper-1",), allow_fault_header=True, retry_after=0) as handle:
        yield handle


def post(server: LinkAIServerHandle, *, key: str | None = "", fields: dict | None = None, **headers: str):
    if key is not None:
        headers["Authorization"] = f"Bearer {key or server.api_key}"
    return httpx.post(server.transcriptions_url, headers=headers, data=fields or {}, files={"file": ("a.wav", WAV)})


def assert_openai(response: httpx.Response, status: int, type_: str, code: str | None = None,
                  param: str | None = None) -> str:  # fmt: skip
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    error = body["error"]
    assert (error["type"], error["code"], error["param"]) == (type_, code, param)
    assert error["message"]
    return error["message"]


def test_401_missing_and_wrong_key(server) -> None:
    message = assert_openai(post(server, key=None), 401, "invalid_request_error")
    assert message.startswith("You didn't provide an API key.")
    message = assert_openai(post(server, key="sk-wrong"), 401, "invalid_request_error", "invalid_api_key")
    assert message == "Incorrect API key provided." and "sk-wrong" not in message


def test_model_not_found_and_served_models(server) -> None:
    message = assert_openai(post(server, fields={"model": "whisper-9"}), 404, "invalid_request_error",
                            "model_not_found", "model")  # fmt: skip
    assert message == "The model `whisper-9` does not exist or you do not have access to it."
    assert post(server, fields={"model": "whisper-1"}).json()["text"].startswith("sha256:")
    assert post(server).json()["text"].startswith("sha256:")  # no model field: LinkAI's contract


def test_400s_name_the_field(server) -> None:
    empty = httpx.post(server.transcriptions_url, headers={"Authorization": f"Bearer {server.api_key}"},
                       files={"file": ("a.wav", b"")})  # fmt: skip
    assert "empty" in assert_openai(empty, 400, "invalid_request_error", param="file")
    bad = post(server, fields={"response_format": "xml"})
    assert "response_format must be one of" in assert_openai(bad, 400, "invalid_request_error", param="response_format")


def test_unknown_path_and_method(server) -> None:
    response = httpx.post(server.url + "/v1/audio/transcription", headers={"Authorization": "Bearer x"})
    assert assert_openai(response, 404, "invalid_request_error") == "Invalid URL (POST /v1/audio/transcription)"
    response = httpx.get(server.transcriptions_url)
    assert assert_openai(response, 405, "invalid_request_error") == "Invalid URL (GET /v1/audio/transcriptions)"


@pytest.mark.parametrize(
    ("fault", "type_", "code"),
    [("429", "requests", "rate_limit_exceeded"), ("503", "server_error", None), ("403", "permission_error", None)],
)
def test_injected_faults_speak_the_dialect(server, fault, type_, code) -> None:
    response = post(server, **{"X-LinkAI-Fault": fault})
    assert_openai(response, int(fault), type_, code)
    assert ("retry-after" in response.headers) == (fault == "429")


def test_envelope_in_200_stays_linkais_quirk(server) -> None:
    response = post(server, **{"X-LinkAI-Fault": "envelope200"})
    assert response.status_code == 200
    assert response.json() == {"success": False, "code": 503, "message": response.json()["message"], "data": None}


def test_models_check_in_the_linkai_dialect() -> None:
    with start_server(models=("whisper-1",)) as handle:
        response = httpx.post(handle.transcriptions_url, headers={"Authorization": f"Bearer {handle.api_key}"},
                              data={"model": "gpt-9"}, files={"file": ("a.wav", WAV)})  # fmt: skip
        assert_envelope(response, 404, "The model `gpt-9` does not exist", "This server serves: whisper-1")
        assert handle.healthz()["models"] == ["whisper-1"]


def test_credits_are_openais_insufficient_quota() -> None:
    with start_server(error_style="openai", credits=0) as handle:
        response = post(handle)
        assert_openai(response, 429, "insufficient_quota", "insufficient_quota")


def test_openai_sdk_reads_the_errors(server) -> None:
    """OpenAI's own SDK raises its own classes with the code, type and param it finds in OpenAI's bodies."""
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=server.api_key, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.audio.transcriptions.create(model="whisper-9", file=("a.wav", WAV))
    assert (missing.value.code, missing.value.type, missing.value.param) == (
        "model_not_found", "invalid_request_error", "model"
    )  # fmt: skip
    assert missing.value.message.endswith("The model `whisper-9` does not exist or you do not have access to it.")
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as denied:
        wrong.audio.transcriptions.create(model="whisper-1", file=("a.wav", WAV))
    assert denied.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"not audio at all"))
    assert bad.value.param == "file" and "not a supported audio file" in bad.value.message
