"""Fault injection over real HTTP: forced statuses, drops, odd 200s, seeded rates, latency."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import requests

from .test_http_errors import assert_envelope

TABLE = (400, 401, 402, 403, 406, 408, 409, 413, 429, 500, 502, 503, 504)


@pytest.fixture(scope="module")
def payload(clip) -> bytes:
    return clip("fault injection", "wav").read_bytes()


def post(server, payload: bytes, fault: str | None = None, **headers: str) -> httpx.Response:
    if fault is not None:
        headers["X-LinkAI-Fault"] = fault
    headers["Authorization"] = f"Bearer {server.api_key}"
    return httpx.post(server.transcriptions_url, headers=headers, files={"file": ("a.wav", payload)}, timeout=30)


@pytest.mark.parametrize("status", TABLE)
def test_every_status_of_the_table_can_be_forced(fault_server, payload, status) -> None:
    body = assert_envelope(post(fault_server, payload, str(status)), status)
    assert body["message"]


def test_table_messages_match_the_api_documentation(fault_server, payload) -> None:
    assert post(fault_server, payload, "402").json()["message"].startswith("Agent does not exist")
    assert post(fault_server, payload, "406").json()["message"] == "Insufficient account credits"
    assert post(fault_server, payload, "408").json()["message"].startswith("No API access permission")
    assert post(fault_server, payload, "503").json()["message"].startswith("API call exception")


def test_429_has_retry_after(fault_server, payload) -> None:
    response = post(fault_server, payload, "429")
    assert_envelope(response, 429)
    assert response.headers["Retry-After"] == "1"
    response = post(fault_server, payload, "429", **{"X-LinkAI-Fault-Retry-After": "12"})
    assert response.headers["Retry-After"] == "12"


def test_drop_is_a_transport_error_not_a_status(fault_server, payload) -> None:
    fault_server.reset_stats()
    with pytest.raises(httpx.TransportError) as info:
        post(fault_server, payload, "drop")
    assert not isinstance(info.value, httpx.TimeoutException)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(fault_server.transcriptions_url, files={"file": ("a.wav", payload)},
                      headers={"Authorization": f"Bearer {fault_server.api_key}", "X-LinkAI-Fault": "drop"})
    stats = fault_server.stats()
    assert stats["dropped"] == 2 and stats["by_status"] == {} and stats["requests_total"] == 2
    assert post(fault_server, payload).status_code == 200, "the server keeps serving"


def test_envelope_in_a_200(fault_server, payload) -> None:
    response = post(fault_server, payload, "envelope200")
    assert response.status_code == 200
    assert response.json() == {"success": False, "code": 503,
                               "message": "API call exception, please contact customer service", "data": None}


def test_non_json_bodies(fault_server, payload) -> None:
    response = post(fault_server, payload, "nonjson")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()
    response = post(fault_server, payload, "nonjson:502")
    assert response.status_code == 502 and response.text.startswith("<html>")


def test_json_without_text(fault_server, payload) -> None:
    response = post(fault_server, payload, "notext")
    assert response.status_code == 200 and "text" not in response.json()


def test_fault_header_is_ignored_unless_allowed(linkai_server, payload) -> None:
    response = post(linkai_server, payload, "503")
    assert response.status_code == 200 and response.json()["text"].startswith("sha256:")


def _outcomes(server, payload: bytes, n: int) -> list[str]:
    outcomes = []
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            try:
                response = client.post(server.transcriptions_url, files={"file": ("a.wav", payload)},
                                       headers={"Authorization": f"Bearer {server.api_key}"})
            except httpx.TransportError:
                outcomes.append("drop")
                continue
            body = response.json()
            outcomes.append(f"{response.status_code}:{body.get('code', 'text')}")
    return outcomes


def test_seeded_fault_rates_are_reproducible(linkai_server_factory, payload) -> None:
    options = dict(seed=1234, fail_503_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, envelope_200_rate=0.1)
    server = linkai_server_factory(**options)
    first = _outcomes(server, payload, 60)
    server.reset_stats()  # rewinds the fault sequence too
    assert _outcomes(server, payload, 60) == first
    other = linkai_server_factory(**options)
    assert _outcomes(other, payload, 60) == first, "same seed, same sequence, on another server"
    kinds = set(first)
    assert {"drop", "503:503", "429:429", "200:503", "200:text"} <= kinds, kinds
    stats = server.stats()
    assert stats["requests_total"] == 60
    assert stats["dropped"] == first.count("drop")
    assert stats["by_status"].get("503", 0) == first.count("503:503")
    assert stats["by_status"].get("429", 0) == first.count("429:429")
    assert stats["transcriptions_ok"] == first.count("200:text")


def test_rate_limit_answers_carry_the_configured_retry_after(linkai_server_factory, payload) -> None:
    server = linkai_server_factory(rate_limit_rate=1.0, retry_after=4)
    response = post(server, payload)
    assert_envelope(response, 429)
    assert response.headers["Retry-After"] == "4"


def test_latency_does_not_block_other_requests(linkai_server_factory, payload) -> None:
    server = linkai_server_factory(latency_ms=600)
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: post(server, payload).status_code, range(8)))
        health_started = time.perf_counter()
        httpx.get(server.url + "/healthz")
        health_s = time.perf_counter() - health_started
    elapsed = time.perf_counter() - started
    assert statuses == [200] * 8
    assert 0.6 <= elapsed < 2.0, f"8 requests with 600 ms latency took {elapsed:.2f}s: latency is blocking"
    assert health_s < 0.3
    assert server.stats()["max_in_flight"] >= 4


def test_latency_jitter_and_delay_header(linkai_server_factory, payload) -> None:
    server = linkai_server_factory(latency_ms=100, latency_jitter_ms=200, seed=5, allow_fault_header=True)
    durations = []
    for _ in range(6):
        started = time.perf_counter()
        assert post(server, payload).status_code == 200
        durations.append(time.perf_counter() - started)
    assert all(0.1 <= d < 1.0 for d in durations), durations
    started = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.transcriptions_url, files={"file": ("a.wav", payload)}, timeout=0.5,
                   headers={"Authorization": f"Bearer {server.api_key}", "X-LinkAI-Fault-Delay-Ms": "2000"})
    assert time.perf_counter() - started < 1.5


def test_credits_run_out_with_406_refusals_cost_nothing_reset_tops_up(linkai_server_factory, payload) -> None:
    server = linkai_server_factory(credits=2)
    assert post(server, payload).status_code == 200
    assert post(server, b"this is text, not audio").status_code == 400  # refused: no credit spent
    assert post(server, payload + b"\0").status_code == 200
    body = assert_envelope(post(server, payload + b"\0\0"), 406)
    assert body["message"] == "Insufficient account credits"
    assert server.stats()["transcriptions_ok"] == 2
    server.reset_stats()
    assert post(server, payload).status_code == 200


def test_credits_flag_is_documented() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "linkai_provider.server", "--help"], capture_output=True, text=True)
    assert "--credits N" in out.stdout and "406" in out.stdout
