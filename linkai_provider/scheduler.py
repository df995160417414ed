"""The request scheduler: one adaptive limit on requests in flight, shared by every upload of a batch.

Every HTTP attempt (a whole file, a piece of a long recording, a retry) takes a slot with
:meth:`RequestScheduler.acquire` and gives it back with :meth:`RequestScheduler.release`, saying how
the attempt ended. ``max_concurrency`` is only the ceiling; the level in force adapts:

* **Slow start.** The batch starts at ``min(ceiling, 16)`` and climbs by one per clean answer
  (doubling every round trip) until the ceiling or the first sign of congestion.
* **429 (over the plan's concurrency).** The requests still in flight when a 429 comes back are
  the ones the API accepted, so the level drops to that count: one step, no halving, no storm.
  Stale 429s (sent before the last change) only pull the level down to what is in flight.
* **503 (overloaded).** Multiplicative decrease (× 0.7), at most once per round of requests.
* **Climbing back.** After a level's worth of clean answers the level rises by a step that doubles
  while every rise stays clean. A rise that meets a 429 backs off the next probe of that height
  (twice as many clean answers needed, up to 8×), so a fixed limit costs a few 429s per minute.

``Retry-After`` is honoured by the retry policy of the request that got it; that request holds no
slot while it waits. Slots are handed out in priority order (pieces of a recording already being
sent before new files) and first come, first served within a priority.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from linkai_provider.exceptions import LinkAIFatalError, RateLimitError, ServiceUnavailableError

log = logging.getLogger(__name__)

SLOW_START_LEVEL = 16
DECREASE_503 = 0.7
MAX_PROBE_BACKOFF = 8
LOG_INTERVAL_S = 5.0

PRIORITY_PIECE = 0  # a piece of a recording whose other pieces are in flight: finish what was started
PRIORITY_FILE = 1


class SchedulerCancelled(Exception):
    """The batch was cancelled while this request waited for a slot: it was never sent."""


@dataclass(frozen=True)
class Ticket:
    """A granted slot; ``epoch`` is the level's generation when the request was sent."""

    epoch: int
    sent_at: float


@dataclass(order=True)
class _Waiter:
    priority: int
    seq: int
    granted: threading.Event = field(default_factory=threading.Event, compare=False)
    ticket: Ticket | None = field(default=None, compare=False)


_NOT_SENT = SchedulerCancelled()  # release() marker: the slot was granted but nothing was sent


@dataclass
class SchedulerStats:
    requests: int = 0  # HTTP attempts made, retries included
    rate_limited: int = 0  # 429s seen
    overloaded: int = 0  # 503s seen
    level_changes: int = 0
    level_min: int = 0
    level_max: int = 0


class RequestScheduler:
    """Grants request slots under an adaptive limit (thread-safe).

    :param ceiling: ``max_concurrency``: the level never goes above it.
    :param adaptive: False keeps the level at ``ceiling`` whatever the answers (for comparisons).
    :param hold: while this event (or any of these events) is clear no new request is sent (e.g. the
        destination is failing, or too many answers wait to be stored).
    :param cancel: once set, waiters stop waiting and raise :class:`SchedulerCancelled`.
    """

    def __init__(
        self,
        ceiling: int,
        *,
        initial: int | None = None,
        adaptive: bool = True,
        hold: threading.Event | Sequence[threading.Event] | None = None,
        cancel: threading.Event | None = None,
        logger: Any = log,
        log_interval: float = LOG_INTERVAL_S,
    ) -> None:
        if ceiling < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {ceiling}")
        self.ceiling = ceiling
        self.adaptive = adaptive
        self.level = float(min(ceiling, initial or SLOW_START_LEVEL) if adaptive else ceiling)
        self.holds: tuple[threading.Event, ...] = (
            () if hold is None else (hold,) if isinstance(hold, threading.Event) else tuple(hold)
        )
        self.cancel = cancel or threading.Event()
        self.log = logger
        self.stats = SchedulerStats(level_min=int(self.level), level_max=int(self.level))
        self._lock = threading.Lock()
        self._in_flight = 0
        self._epoch = 0
        self._slow_start = True
        self._clean = 0  # clean answers since the level last changed
        self._step = 1
        self._probe_backoff = 1
        self._failed_level: int | None = None  # lowest level a probe met a 429 at, since the last clean rise
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._log_interval = log_interval
        self._logged_at = 0.0
        self._logged_level = int(self.level)

    # -- the two calls every request makes --------------------------------------------------------
    def acquire(self, priority: int = PRIORITY_FILE) -> Ticket:
        """Wait for a slot. Raises :class:`SchedulerCancelled` if the batch is cancelled first."""
        waiter = _Waiter(priority, next(self._seq))
        with self._lock:
            heapq.heappush(self._waiters, waiter)
            self._dispatch()
        # Each waiter sleeps on its own event and is handed its slot directly: a release wakes one
        # thread, not all of them. The timeout only re-checks cancel/hold set from other threads.
        while not waiter.granted.wait(0.1 if self._held() else 0.5):
            with self._lock:
                if waiter.ticket is not None:
                    break
                if self.cancel.is_set():
                    self._waiters.remove(waiter)
                    heapq.heapify(self._waiters)
                    raise SchedulerCancelled()
                self._dispatch()
        assert waiter.ticket is not None
        if self.cancel.is_set():
            self.release(waiter.ticket, _NOT_SENT)
            raise SchedulerCancelled()
        return waiter.ticket

    def release(self, ticket: Ticket, error: BaseException | None = None) -> None:
        """Give the slot back; ``error`` is how the attempt failed (None: an answer came back)."""
        with self._lock:
            self._in_flight -= 1
            if isinstance(error, LinkAIFatalError):
                self.cancel.set()  # before the slot is handed on: no waiting request may be sent
            if error is _NOT_SENT:
                self.stats.requests -= 1
            elif isinstance(error, RateLimitError):
                self.stats.rate_limited += 1
                if self.adaptive:
                    self._on_rate_limited(ticket)
            elif isinstance(error, ServiceUnavailableError):
                self.stats.overloaded += 1
                if self.adaptive:
                    self._on_overloaded(ticket)
            elif self.adaptive:
                self._on_clean()
            self._dispatch()

    def wake(self) -> None:
        """Hand out slots now (after ``hold`` was set again)."""
        with self._lock:
            self._dispatch()

    def _held(self) -> bool:
        return any(not event.is_set() for event in self.holds)

    def _dispatch(self) -> None:
        """Grant slots to the waiters at the head while the level allows (lock held)."""
        if self.cancel.is_set() or self._held():
            return
        while self._waiters and self._in_flight < int(self.level):
            waiter = heapq.heappop(self._waiters)
            self._in_flight += 1
            self.stats.requests += 1
            waiter.ticket = Ticket(self._epoch, time.monotonic())
            waiter.granted.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def current(self) -> int:
        return int(self.level)

    # -- the level ------------------------------------------------------------------------------
    def _on_clean(self) -> None:
        if self._slow_start:
            self._set(self.level + 1, "clean answers (slow start)")
            return
        self._clean += 1
        if self._clean < int(self.level) * self._probe_backoff:
            return
        target = min(self.ceiling, int(self.level) + self._step)
        if self._failed_level is not None and int(self.level) >= self._failed_level:
            self._failed_level = None  # a level that once met a 429 has now held a full round: it is fine
            self._probe_backoff = 1
        self._set(target, "clean answers")
        self._step = min(self._step * 2, max(1, self.ceiling))

    def _on_rate_limited(self, ticket: Ticket) -> None:
        accepted = max(1, self._in_flight)  # those still in flight were let in by the API
        if ticket.epoch != self._epoch:  # sent before the last change: only trim to what is in flight
            if accepted < self.level:
                self._set(accepted, "429 Too Many Requests", new_epoch=False)
            return
        failed = int(self.level)
        if self._failed_level is not None and failed >= self._failed_level:
            self._probe_backoff = min(self._probe_backoff * 2, MAX_PROBE_BACKOFF)
        self._failed_level = failed if self._failed_level is None else min(self._failed_level, failed)
        self._slow_start = False
        self._step = 1
        self._set(min(accepted, max(1, failed - 1)), "429 Too Many Requests")

    def _on_overloaded(self, ticket: Ticket) -> None:
        self._slow_start = False
        self._step = 1
        if ticket.epoch == self._epoch:
            self._set(max(1, math.floor(self.level * DECREASE_503)), "503 Service Unavailable")

    def _set(self, level: float, reason: str, *, new_epoch: bool = True) -> None:
        level = float(max(1, min(self.ceiling, level)))
        old = int(self.level)
        self.level = level
        self._clean = 0
        if int(level) == old:
            return
        if new_epoch:
            self._epoch += 1
        if self._slow_start and int(level) >= self.ceiling:
            self._slow_start = False
        self.stats.level_changes += 1
        self.stats.level_min = min(self.stats.level_min, int(level))
        self.stats.level_max = max(self.stats.level_max, int(level))
        now = time.monotonic()
        if now - self._logged_at >= self._log_interval and int(level) != self._logged_level:
            self.log.info(
                "Concurrency: %d request(s) in flight allowed (was %d, ceiling %d): %s",
                int(level),
                self._logged_level,
                self.ceiling,
                reason,
            )
            self._logged_at, self._logged_level = now, int(level)

    def summary(self) -> dict[str, int]:
        """The figures for the batch summary."""
        return {
            "requests": self.stats.requests,
            "rate_limited": self.stats.rate_limited,
            "concurrency": int(self.level),
            "concurrency_min": self.stats.level_min,
        }
