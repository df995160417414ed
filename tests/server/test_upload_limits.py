"""The upload size limit: 413 early and late, and big uploads never held in memory."""

from __future__ import annotations

import hashlib
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from .test_http_errors import assert_envelope

MiB = 1024 * 1024
BOUNDARY = "linkai-test-boundary"
PART_HEAD = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
             "Content-Type: audio/wav\r\n\r\n").encode()
PART_TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()
# A WAV header makes the content sniff as audio; the digest engine does not decode it.
WAV_HEAD = b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00\x00}\x00\x00\x02\x00\x10\x00"


def block(i: int) -> bytes:
    """1 MiB of data that differs from block to block (so the hash sees every byte)."""
    return hashlib.sha256(str(i).encode()).digest() * (MiB // 32)


class RssSampler:
    """Peak resident memory of a process, sampled every 10 ms."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / MiB


@pytest.fixture(scope="module")
def small_limit_server() -> Iterator:
    from linkai_provider.server.testing import start_server

    with start_server(max_upload_bytes=MiB) as server:
        yield server


def _auth(server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"}


def test_over_the_limit_is_413_with_the_limit_in_the_message(small_limit_server) -> None:
    data = WAV_HEAD + b"\x00" * (2 * MiB)
    response = httpx.post(small_limit_server.transcriptions_url, headers=_auth(small_limit_server),
                          files={"file": ("big.wav", data)})
    assert_envelope(response, 413, "upload limit is 1048576 bytes (1 MiB)")


def test_exactly_at_the_limit_is_accepted(small_limit_server) -> None:
    data = WAV_HEAD + b"\x01" * (MiB - len(WAV_HEAD))
    response = httpx.post(small_limit_server.transcriptions_url, headers=_auth(small_limit_server),
                          files={"file": ("edge.wav", data)})
    assert response.status_code == 200
    assert response.json()["text"] == f"sha256:{hashlib.sha256(data).hexdigest()} bytes:{MiB}"
    over = data + b"\x01"
    response = httpx.post(small_limit_server.transcriptions_url, headers=_auth(small_limit_server),
                          files={"file": ("edge.wav", over)})
    assert response.status_code == 413


def test_content_length_over_the_limit_is_refused_before_any_body(small_limit_server) -> None:
    """The 413 arrives although not a single body byte was sent."""
    with socket.create_connection((small_limit_server.host, small_limit_server.port), timeout=5) as sock:
        sock.sendall(
            (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
             f"{small_limit_server.api_key}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
             f"Content-Length: {2 * 1024**3}\r\n\r\n").encode()
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"upload limit is 1048576 bytes" in answer


def test_curl_with_expect_100_continue_gets_413_without_uploading(small_limit_server, tmp_path) -> None:
    big = tmp_path / "big.wav"
    big.write_bytes(WAV_HEAD + b"\x00" * (20 * MiB))
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}", small_limit_server.transcriptions_url,
         "-H", f"Authorization: Bearer {small_limit_server.api_key}", "-F", f"file=@{big}"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    status, uploaded = result.stdout.split()
    assert status == "413"
    assert int(uploaded) < MiB, f"curl uploaded {uploaded} bytes before the 413"


def test_huge_streamed_upload_is_refused_early_without_memory_growth() -> None:
    """300 MB sent chunked to a server limited to 10 MB, in a separate process we can measure."""
    from linkai_provider.server.testing import start_server_process

    server = start_server_process(max_upload_bytes=10 * MiB)
    try:
        with RssSampler(server.pid) as rss, socket.create_connection((server.host, server.port), timeout=30) as sock:
            sock.sendall(
                (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.api_key}\r\n"
                 f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n"
                 ).encode()
            )
            sent, answer = 0, b""
            chunks = [PART_HEAD + WAV_HEAD] + [block(i) for i in range(300)]
            for chunk in chunks:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    answer = sock.recv(65536)
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            else:
                answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert sent < 100 * MiB, f"the client could send {sent / MiB:.0f} MiB before the 413"
        assert rss.growth_mib < 40, f"server memory grew by {rss.growth_mib:.0f} MiB"
        print(f"\n413 after {sent / MiB:.0f} MiB sent; server RSS growth {rss.growth_mib:.1f} MiB")
    finally:
        server.stop()


def test_big_accepted_upload_is_spooled_not_held_in_memory(tmp_path) -> None:
    """200 MiB under a 256 MiB limit: every byte arrives (digest), memory stays flat."""
    from linkai_provider.server.testing import start_server_process

    server = start_server_process(max_upload_bytes=256 * MiB, spool_dir=tmp_path)
    digest = hashlib.sha256(WAV_HEAD)
    total = len(WAV_HEAD)

    def body() -> Iterator[bytes]:
        nonlocal total
        yield PART_HEAD + WAV_HEAD
        for i in range(200):
            data = block(i)
            digest.update(data)
            total += len(data)
            yield data
        yield PART_TAIL

    try:
        with RssSampler(server.pid) as rss:
            headers = {**_auth(server), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
            response = httpx.post(server.transcriptions_url, content=body(), timeout=120, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["text"] == f"sha256:{digest.hexdigest()} bytes:{total}"
        assert rss.growth_mib < 40, f"server memory grew by {rss.growth_mib:.0f} MiB for a 200 MiB upload"
        assert list(tmp_path.iterdir()) == [], "the spooled upload is deleted after the answer"
        print(f"\n200 MiB accepted; server RSS growth {rss.growth_mib:.1f} MiB")
    finally:
        server.stop()
