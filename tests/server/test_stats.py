"""The counters tests read through GET /_linkai/stats."""

from __future__ import annotations

import hashlib

import httpx
import pytest


def test_counters(fault_server, clip) -> None:
    auth = {"Authorization": f"Bearer {fault_server.api_key}"}
    one, two = clip("stats one", "wav").read_bytes(), clip("stats two", "ogg").read_bytes()
    url = fault_server.transcriptions_url
    assert fault_server.reset_stats()["requests_total"] == 0
    for _ in range(3):
        assert httpx.post(url, headers=auth, files={"file": ("one.wav", one)}).status_code == 200
    assert httpx.post(url, headers=auth, files={"file": ("two.ogg", two)}).status_code == 200
    assert httpx.post(url, files={"file": ("one.wav", one)}).status_code == 401
    assert httpx.post(url, headers=auth, files={"file": ("x.mp3", b"text")}).status_code == 400
    assert httpx.post(url, headers={**auth, "X-LinkAI-Fault": "envelope200"},
                      files={"file": ("one.wav", one)}).status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.post(url, headers={**auth, "X-LinkAI-Fault": "drop"}, files={"file": ("one.wav", one)})
    httpx.get(fault_server.url + "/healthz")  # not counted

    stats = fault_server.stats()
    sha_one, sha_two = hashlib.sha256(one).hexdigest(), hashlib.sha256(two).hexdigest()
    assert stats["requests_total"] == 8
    assert stats["by_status"] == {"200": 5, "400": 1, "401": 1}
    assert stats["dropped"] == 1
    assert stats["transcriptions_ok"] == 4, "the envelope-200 is not a transcription"
    assert stats["ok_by_sha256"] == {sha_one: 3, sha_two: 1}
    assert stats["duplicate_sha256"] == 1
    assert stats["in_flight"] == 0 and stats["max_in_flight"] == 1
    assert stats["bytes_received"] > 5 * len(one)
    assert fault_server.stats() == stats, "reading the stats does not change them"

    reset = fault_server.reset_stats()
    assert reset["requests_total"] == 0 and reset["ok_by_sha256"] == {} and reset["by_status"] == {}


def test_healthz(linkai_server) -> None:
    health = httpx.get(linkai_server.url + "/healthz").json()
    assert health["status"] == "ok" and health["engine"] == "digest" and health["auth"] is True
    assert health["max_upload_bytes"] == 100 * 1024 * 1024
