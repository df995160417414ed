"""Every error path of the contract, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib

import httpx
import pytest

ENVELOPE_KEYS = {"success", "code", "message", "data"}


def assert_envelope(response: httpx.Response, status: int, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["success"] is False and body["code"] == status and body["data"] is None
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return body


def test_success_returns_text_only(fault_server, auth, clip) -> None:
    path = clip("hello there", "mp3")
    response = httpx.post(fault_server.transcriptions_url, headers=auth, files={"file": path.open("rb")})
    assert response.status_code == 200
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert response.json() == {"text": f"sha256:{digest} bytes:{path.stat().st_size}"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "basic", "empty"],
)
def test_401(fault_server, clip, headers) -> None:
    response = httpx.post(fault_server.transcriptions_url, headers=headers,
                          files={"file": clip("hello there", "wav").open("rb")})
    assert_envelope(response, 401, "Authentication failed")


def test_401_comes_before_reading_the_body_and_before_faults(fault_server, clip) -> None:
    fault_server.reset_stats()
    response = httpx.post(fault_server.transcriptions_url,
                          headers={"Authorization": "Bearer nope", "X-LinkAI-Fault": "503"},
                          files={"file": ("junk.mp3", b"not audio")})
    assert_envelope(response, 401)
    stats = fault_server.stats()
    assert stats["by_status"] == {"401": 1} and stats["bytes_received"] == 0


def test_right_key_and_empty_file_is_400_without_recognition(fault_server, auth) -> None:
    """What the hook's test_connection relies on."""
    fault_server.reset_stats()
    response = httpx.post(fault_server.transcriptions_url, headers=auth, files={"file": ("empty.mp3", b"")})
    assert_envelope(response, 400, "empty")
    assert fault_server.stats()["transcriptions_ok"] == 0


def test_missing_file_field(fault_server, auth, clip) -> None:
    response = httpx.post(fault_server.transcriptions_url, headers=auth,
                          files={"audio": clip("hello there", "wav").open("rb")}, data={"language": "en"})
    assert_envelope(response, 400, "missing multipart field 'file'")


def test_not_multipart(fault_server, auth) -> None:
    response = httpx.post(fault_server.transcriptions_url, headers=auth, json={"file": "x"})
    assert_envelope(response, 400, "multipart/form-data")


def test_truncated_multipart_body(fault_server, auth) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF....'
    response = httpx.post(fault_server.transcriptions_url, content=body,
                          headers={**auth, "Content-Type": "multipart/form-data; boundary=b"})
    assert_envelope(response, 400, "closing boundary")


def test_two_file_parts(fault_server, auth, clip) -> None:
    path = clip("hello there", "wav")
    response = httpx.post(fault_server.transcriptions_url, headers=auth,
                          files=[("file", path.open("rb")), ("file", path.open("rb"))])
    assert_envelope(response, 400, "more than one")


def test_text_renamed_mp3_is_a_clear_400(fault_server, auth) -> None:
    response = httpx.post(fault_server.transcriptions_url, headers=auth,
                          files={"file": ("speech.mp3", b"Dear diary, today I pretended to be an MP3.\n" * 20)})
    assert_envelope(response, 400, "'speech.mp3' is not a supported audio file", "content is text",
                    "mp3, mp4, mpeg, mpga, m4a, ogg, wav, webm, flac, amr")


@pytest.mark.parametrize(
    ("name", "payload", "described"),
    [
        ("notes.txt", b"just some notes", "text"),
        ("picture.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "a PNG image"),
        ("sound.aiff", b"FORM\x00\x00\x10\x00AIFFCOMM" + bytes(range(256)) * 4, "an IFF/AIFF file"),
    ],
)
def test_unsupported_extension_and_content(fault_server, auth, name, payload, described) -> None:
    response = httpx.post(fault_server.transcriptions_url, headers=auth, files={"file": (name, payload)})
    assert_envelope(response, 400, "not a supported audio file", described)


def test_audio_with_an_unsupported_extension_is_accepted_by_content(fault_server, auth, clip) -> None:
    response = httpx.post(fault_server.transcriptions_url, headers=auth,
                          files={"file": ("recording.bin", clip("hello there", "flac").read_bytes())})
    assert response.status_code == 200 and response.json()["text"].startswith("sha256:")


def test_unknown_paths_and_methods_use_the_envelope(fault_server, auth) -> None:
    assert_envelope(httpx.get(fault_server.url + "/v1/nope", headers=auth), 404)
    assert_envelope(httpx.get(fault_server.transcriptions_url, headers=auth), 405)


@pytest.mark.whisper
class TestUndecodableAudioWithWhisper:
    """The digest engine only sniffs; the real recognizer must also decode, or answer 400."""

    def test_truncated_mp4(self, whisper_server, clip) -> None:
        data = clip("hello there general kenobi", "mp4").read_bytes()
        response = httpx.post(whisper_server.transcriptions_url, timeout=60,
                              headers={"Authorization": f"Bearer {whisper_server.api_key}"},
                              files={"file": ("cut.mp4", data[: len(data) // 2])})
        assert_envelope(response, 400, "cannot be decoded")

    def test_header_then_garbage(self, whisper_server) -> None:
        garbage = bytes((i * 7919) % 251 for i in range(20000))
        for name, payload in (("bad.ogg", b"OggS\x00\x02" + garbage), ("bad.flac", b"fLaC" + garbage),
                              ("bad.wav", b"RIFF\x24\x00\x00\x00WAVE" + garbage)):
            response = httpx.post(whisper_server.transcriptions_url, timeout=60,
                                  headers={"Authorization": f"Bearer {whisper_server.api_key}"},
                                  files={"file": (name, payload)})
            assert_envelope(response, 400, "Invalid request format")

    def test_unsupported_language(self, whisper_server, clip) -> None:
        response = httpx.post(whisper_server.transcriptions_url, timeout=60,
                              headers={"Authorization": f"Bearer {whisper_server.api_key}"},
                              files={"file": clip("hello there", "wav").open("rb")}, data={"language": "klingon"})
        assert_envelope(response, 400, "unsupported language 'klingon'")
