"""Request counters that tests read through ``GET /_linkai/stats``.

Only API requests (``/v1/...``) are counted; health and stats calls are not, so reading the
counters never changes them. The counters answer the questions client tests ask: did every
request arrive (``requests_total``), which statuses were answered (``by_status``), how many
connections were dropped on purpose (``dropped``), was any file transcribed twice
(``ok_by_sha256`` and ``duplicate_sha256``), and how many requests were in flight at once
(``max_in_flight``, to check a client's concurrency limit).
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
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._started = time.time()
            self._total = 0
            self._by_status: Counter[int] = Counter()
            self._dropped = 0
            self._client_gone = 0
            self._ok_by_sha: Counter[str] = Counter()
            self._bytes = 0
            self._in_flight = 0
            self._max_in_flight = 0
            self._recognition_s = 0.0

    def request_started(self) -> None:
        with self._lock:
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
            elif outcome == "dropped":
                self._dropped += 1
            else:
                self._client_gone += 1

    def transcribed(self, sha256: str, seconds: float) -> None:
        """Count a successful transcription (HTTP 200 with ``text``) of content ``sha256``.

        ``seconds`` is the engine's time, summed into ``recognition_seconds``.
        """
        with self._lock:
            self._ok_by_sha[sha256] += 1
            self._recognition_s += seconds

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
                "since": self._started,
            }
