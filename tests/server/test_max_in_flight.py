"""--max-in-flight: at most N requests admitted, the rest 429 with Retry-After at once; changeable live.

Requests are held in the server deterministically, not by timing: each body is a generator
that sends the multipart head, then waits for a test-controlled event before sending the
file. The server admits a request when its headers arrive, so while the event is unset the
admitted requests stay admitted, and every other arrival must be answered 429.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from linkai_provider.server.testing import LinkAIServerHandle, start_server

from .test_http_errors import assert_envelope
from .test_upload_limits import BOUNDARY, PART_HEAD, PART_TAIL, WAV_HEAD

MiB = 1024 * 1024


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll the server's counters until ``condition`` holds (the timeout only guards a hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class HeldRequests:
    """Requests whose upload stalls after the multipart head until :meth:`release`."""

    def __init__(self, server: LinkAIServerHandle, pool: ThreadPoolExecutor):
        self.server = server
        self.pool = pool
        self.gate = threading.Event()
        self.futures: list[Future[httpx.Response]] = []

    def _body(self, n: int) -> Iterator[bytes]:
        yield PART_HEAD
        if not self.gate.wait(60):
            raise RuntimeError("the test never released the held uploads")
        yield WAV_HEAD + n.to_bytes(4, "big") * 256 + PART_TAIL

    def _post(self, n: int) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self.server.api_key}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        }
        return httpx.post(self.server.transcriptions_url, content=self._body(n), headers=headers, timeout=60)

    def send(self, count: int) -> None:
        start = len(self.futures)
        self.futures += [self.pool.submit(self._post, start + i) for i in range(count)]

    def release(self) -> list[httpx.Response]:
        self.gate.set()
        return [future.result(timeout=60) for future in self.futures]


@pytest.fixture
def hold() -> Iterator[Callable[[LinkAIServerHandle], HeldRequests]]:
    """``hold(server)`` -> a new :class:`HeldRequests`; all are released when the test ends,
    so a failing test does not leave uploads (and threads) waiting."""
    made: list[HeldRequests] = []
    with ThreadPoolExecutor(max_workers=24) as pool:

        def factory(server: LinkAIServerHandle) -> HeldRequests:
            made.append(HeldRequests(server, pool))
            return made[-1]

        try:
            yield factory
        finally:
            for held in made:
                held.gate.set()


def _auth(server: LinkAIServerHandle) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"}


def test_twenty_at_once_with_a_limit_of_four(hold) -> None:
    with start_server(max_in_flight=4, retry_after=7) as server:
        held = hold(server)
        held.send(20)
        wait_until(lambda: server.stats()["requests_total"] == 20, "20 arrivals")
        stats = server.stats()
        assert stats["admitted"] == 4 and stats["rejected_in_flight"] == 16
        # A wrong key is a 401 even when the server is full: admission comes after authentication.
        response = httpx.post(server.transcriptions_url, headers={"Authorization": "Bearer nope"},
                              files={"file": ("a.wav", WAV_HEAD)})
        assert_envelope(response, 401)

        responses = held.release()
        ok = [r for r in responses if r.status_code == 200]
        refused = [r for r in responses if r.status_code == 429]
        assert len(ok) == 4 and len(refused) == 16, [r.status_code for r in responses]
        assert all(r.json()["text"].startswith("sha256:") for r in ok)
        for response in refused:
            assert_envelope(response, 429, "Too many concurrent requests: the limit is 4 at once")
            assert response.headers["retry-after"] == "7"

        stats = server.stats()
        assert stats["max_admitted"] == 4
        assert stats["rejected_in_flight"] == 16
        assert stats["admitted"] == 0
        assert stats["transcriptions_ok"] == 4
        assert stats["by_status"] == {"200": 4, "401": 1, "429": 16}


def test_concurrent_batch_held_by_latency_never_exceeds_the_limit() -> None:
    """20 requests fired at once, each held 300 ms by the server: whatever the timing, the
    admitted ones succeed, the others are 429s counted as in-flight rejections."""
    with start_server(max_in_flight=4, latency_ms=300) as server:
        def post(i: int) -> httpx.Response:
            return httpx.post(server.transcriptions_url, headers=_auth(server),
                              files={"file": (f"{i}.wav", WAV_HEAD + bytes([i]) * 64)}, timeout=60)

        with ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(post, range(20)))
        statuses = [r.status_code for r in responses]
        stats = server.stats()
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(200) == stats["transcriptions_ok"] >= 4
        assert statuses.count(429) == stats["rejected_in_flight"]
        assert 1 <= stats["max_admitted"] <= 4
        assert all(r.headers["retry-after"] == "1" for r in responses if r.status_code == 429)


def test_limit_changed_while_running_tighter_then_looser(hold) -> None:
    with start_server(max_in_flight=4) as server:
        assert server.config() == {"max_in_flight": 4}
        held = hold(server)
        held.send(4)
        wait_until(lambda: server.stats()["admitted"] == 4, "4 admitted")

        # Tighter: the 4 admitted go on, a new one is refused (4 >= 2).
        assert server.configure(max_in_flight=2) == {"max_in_flight": 2}
        assert server.healthz()["max_in_flight"] == 2
        response = httpx.post(server.transcriptions_url, headers=_auth(server), files={"file": ("x.wav", WAV_HEAD)})
        assert_envelope(response, 429, "the limit is 2 at once")
        assert [r.status_code for r in held.release()] == [200] * 4

        # With 2 held, the third is refused; loosened to 3 mid-batch, the same request is admitted.
        server.reset_stats()
        held = hold(server)
        held.send(2)
        wait_until(lambda: server.stats()["admitted"] == 2, "2 admitted")
        held.send(1)
        wait_until(lambda: server.stats()["rejected_in_flight"] == 1, "the third refused")
        assert server.configure(max_in_flight=3) == {"max_in_flight": 3}
        held.send(1)
        wait_until(lambda: server.stats()["admitted"] == 3, "the third admitted")
        held.send(1)
        wait_until(lambda: server.stats()["rejected_in_flight"] == 2, "the fourth refused")
        assert [r.status_code for r in held.release()] == [200, 200, 429, 200, 429]
        assert server.stats()["max_admitted"] == 3

        # No limit at all.
        assert server.configure(max_in_flight=None) == {"max_in_flight": None}
        server.reset_stats()
        held = hold(server)
        held.send(8)
        wait_until(lambda: server.stats()["admitted"] == 8, "8 admitted")
        assert [r.status_code for r in held.release()] == [200] * 8
        stats = server.stats()
        assert stats["max_admitted"] == 8 and stats["rejected_in_flight"] == 0


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "the config body is empty"),
        (b"max_in_flight=3", "not valid JSON"),
        (b"[3]", "must be a JSON object"),
        (b'{"max_in_flight": 0}', "max_in_flight must be an integer >= 1 or null (no limit), got 0"),
        (b'{"max_in_flight": -2}', "got -2"),
        (b'{"max_in_flight": 2.5}', "got 2.5"),
        (b'{"max_in_flight": "3"}', "got '3'"),
        (b'{"max_in_flight": true}', "got True"),
        (b'{"max_in_flght": 3}', "unknown setting(s) 'max_in_flght'; settable: max_in_flight"),
    ],
)
def test_bad_config_is_a_400_naming_the_problem(body, fragment) -> None:
    with start_server(max_in_flight=5) as server:
        response = httpx.post(server.url + "/_linkai/config", content=body,
                              headers={"Content-Type": "application/json"})
        assert_envelope(response, 400, fragment)
        assert server.config() == {"max_in_flight": 5}, "a refused change changes nothing"
        with pytest.raises(ValueError, match="max_in_flight must be an integer"):
            server.configure(max_in_flight=0)


@pytest.mark.parametrize("size_mib", [3, 25])
def test_big_upload_refused_for_lack_of_a_slot_gets_a_clean_429(hold, size_mib) -> None:
    """httpx writes the whole body before reading: the server must drain it, not reset."""
    with start_server(max_in_flight=1) as server:
        held = hold(server)
        held.send(1)
        wait_until(lambda: server.stats()["admitted"] == 1, "the slot taken")
        big = WAV_HEAD + b"\x07" * (size_mib * MiB)
        with httpx.Client(headers=_auth(server), timeout=60) as client:
            response = client.post(server.transcriptions_url, files={"file": ("big.wav", big)})
            assert_envelope(response, 429, "the limit is 1 at once")
            assert response.headers["retry-after"] == "1"
            assert [r.status_code for r in held.release()] == [200]
            # The same client (and its kept-alive connection) goes on working.
            response = client.post(server.transcriptions_url, files={"file": ("big.wav", big)})
            assert response.status_code == 200, response.text
            assert response.json()["text"].endswith(f"bytes:{len(big)}")
        stats = server.stats()
        assert stats["rejected_in_flight"] == 1 and stats["by_status"] == {"200": 2, "429": 1}
