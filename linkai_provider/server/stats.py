"""Request counters that tests read through ``GET /_linkai/stats``.

Only API requests (``/v1/...``) are counted; health and stats calls are not, so reading the
counters never changes them. The counters answer the questions client tests ask: did every
request arrive (``requests_total``), which statuses were answered (``by_status``), how many
connections were dropped on purpose (``dropped``), was any file transcribed twice
(``ok_by_sha256`` and ``duplicate_sha256``), and how many requests were in flight at once
(``max_in_flight``, to check a client's concurrency limit).

With ``--max-in-flight`` the server admits a limited number of requests; ``admitted`` and
``max_admitted`` count those (never above the limit), ``rejected_in_flight`` the 429s it
answered for lack of a slot (injected 429s are not counted there). Benchmarks and cost tests
read ``first_request_at``, ``last_answer_at``, ``busy_seconds`` and ``audio_seconds_ok``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

__all__ = ["Stats"]


class Stats:
    """Thread-safe counters; the app updates them, tests read :meth:`snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Gauges of what is happening now: a reset does not zero them (requests in progress
        # still finish, and the in-flight limit must keep counting them).
        self._in_flight = 0
        self._admitted = 0
        self.reset()

    def reset(self) -> None:
        """Zero the counters; the maxima restart from the requests in progress now."""
        with self._lock:
            self._started = time.time()
            self._total = 0
            self._by_status: Counter[int] = Counter()
            self._dropped = 0
            self._client_gone = 0
            self._ok_by_sha: Counter[str] = Counter()
            self._bytes = 0
            self._max_in_flight = self._in_flight
            self._recognition_s = 0.0
            self._max_admitted = self._admitted
            self._rejected_in_flight = 0
            self._first_request_at: float | None = None
            self._last_answer_at: float | None = None
            self._audio_s_ok = 0.0
            self._audio_unknown_ok = 0
            self._audio_latency_s = 0.0

    def request_started(self) -> None:
        with self._lock:
            if self._first_request_at is None:
                self._first_request_at = time.time()
            self._total += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def request_finished(self, status: int | None, body_bytes: int, outcome: str | None = None) -> None:
        """Record the answer: its ``status``, or the ``outcome`` when there was none.

        ``outcome`` is ``"dropped"`` (dropped on purpose) or ``"client-disconnected"``.
        """
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._bytes += body_bytes
            if status is not None:
                self._by_status[status] += 1
                self._last_answer_at = time.time()
            elif outcome == "dropped":
                self._dropped += 1
            else:
                self._client_gone += 1

    def try_admit(self, limit: int | None) -> bool:
        """Admit one request unless ``limit`` requests are admitted already (``None``: no limit).

        A refusal is counted in ``rejected_in_flight``; every admitted request must call
        :meth:`release` once answered.
        """
        with self._lock:
            if limit is not None and self._admitted >= limit:
                self._rejected_in_flight += 1
                return False
            self._admitted += 1
            self._max_admitted = max(self._max_admitted, self._admitted)
            return True

    def release(self) -> None:
        """An admitted request was answered (or ended without an answer)."""
        with self._lock:
            self._admitted -= 1

    def audio_latency(self, seconds: float) -> None:
        """``--latency-ms-per-audio-second`` made a request wait ``seconds``."""
        with self._lock:
            self._audio_latency_s += seconds

    def transcribed(self, sha256: str, seconds: float, audio_seconds: float | None = None) -> None:
        """Count a successful transcription (HTTP 200 with ``text``) of content ``sha256``.

        ``seconds`` is the engine's time, summed into ``recognition_seconds``; ``audio_seconds``
        the upload's audio duration, summed into ``audio_seconds_ok`` (``None``: unknown, counted
        in ``audio_unknown_ok``).
        """
        with self._lock:
            self._ok_by_sha[sha256] += 1
            self._recognition_s += seconds
            if audio_seconds is None:
                self._audio_unknown_ok += 1
            else:
                self._audio_s_ok += audio_seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests_total": self._total,
                "by_status": {str(code): n for code, n in sorted(self._by_status.items())},
                "dropped": self._dropped,
                "client_disconnected": self._client_gone,
                "transcriptions_ok": sum(self._ok_by_sha.values()),
                "ok_by_sha256": dict(self._ok_by_sha),
                "duplicate_sha256": sum(1 for n in self._ok_by_sha.values() if n > 1),
                "bytes_received": self._bytes,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "recognition_seconds": round(self._recognition_s, 6),
                "admitted": self._admitted,
                "max_admitted": self._max_admitted,
                "rejected_in_flight": self._rejected_in_flight,
                "first_request_at": self._first_request_at,
                "last_answer_at": self._last_answer_at,
                "busy_seconds": (
                    round(self._last_answer_at - self._first_request_at, 6)
                    if self._first_request_at is not None and self._last_answer_at is not None
                    else None
                ),
                "audio_seconds_ok": round(self._audio_s_ok, 6),
                "audio_unknown_ok": self._audio_unknown_ok,
                "audio_latency_seconds": round(self._audio_latency_s, 6),
                "since": self._started,
            }
