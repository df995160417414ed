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
* **Below one: pacing.** At a level of one, a 429 means other tasks (e.g. shards) hold the rest of
  the plan's limit: the next request waits for the ``Retry-After``, and a second 429 in a row halves
  the level, down to 1/8. Below one a single request is in flight and the next one starts
  ``round trip / level`` after the previous one started (0.25: one request a quarter of the time),
  and never before the last ``Retry-After`` has passed, doubled for every 429 in a row (up to 16x).
  A clean answer brings a level below one back to one (a slot came free, e.g. another shard
  finished). Past one again goes by probes that start 32x rarer and back off up to 64x while they
  meet 429s, since the limit is shared. So N tasks fit a limit below N: those that hold a slot keep it, the others wait
  with growing pauses instead of being answered 429 at every attempt.

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
MIN_LEVEL = 1 / 8  # paced: one request in flight an eighth of the time
DECREASE_PACED = 0.5  # a second 429 in a row at a level of one or below
MAX_PROBE_BACKOFF_SHARED = 64  # probes past one after 429s at one: the limit is shared with others
DEFAULT_ROUND_TRIP_S = 1.0  # until a clean answer has been timed
MAX_RETRY_AFTER_BACKOFF = 16  # a task shut out of a shared limit waits at most 16x the Retry-After

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
    level_min: float = 0
    level_max: float = 0


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
        self.stats = SchedulerStats(level_min=self.current, level_max=self.current)
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
        self._logged_level = self.current
        self._round_trip: float | None = None  # seconds, smoothed over clean answers
        self._next_at = 0.0  # at a level of one or below: no request starts before this (time.monotonic())
        self._rejected_in_row = 0  # 429s at a level of one or below since the last clean answer

    # -- the two calls every request makes --------------------------------------------------------
    def acquire(self, priority: int = PRIORITY_FILE) -> Ticket:
        """Wait for a slot. Raises :class:`SchedulerCancelled` if the batch is cancelled first."""
        waiter = _Waiter(priority, next(self._seq))
        with self._lock:
            heapq.heappush(self._waiters, waiter)
            self._dispatch()
        # Each waiter sleeps on its own event and is handed its slot directly: a release wakes one
        # thread, not all of them. The timeout only re-checks cancel/hold set from other threads.
        while not waiter.granted.wait(self._poll_interval()):
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
            if error is None:
                took = time.monotonic() - ticket.sent_at
                rtt = self._round_trip
                self._round_trip = took if rtt is None else 0.8 * rtt + 0.2 * took
            if isinstance(error, LinkAIFatalError):
                self.cancel.set()  # before the slot is handed on: no waiting request may be sent
            if error is _NOT_SENT:
                self.stats.requests -= 1
            elif isinstance(error, RateLimitError):
                self.stats.rate_limited += 1
                if self.adaptive:
                    self._on_rate_limited(ticket, error.retry_after)
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

    def _poll_interval(self) -> float:
        """How long a waiter sleeps before re-checking: until the paced start, else a safety poll."""
        if self._held():
            return 0.1
        wait = self._next_at - time.monotonic()
        return min(0.5, max(0.005, wait)) if self.level < 2 and wait > 0 else 0.5

    def _dispatch(self) -> None:
        """Grant slots to the waiters at the head while the level allows (lock held)."""
        if self.cancel.is_set() or self._held():
            return
        while self._waiters and self._in_flight < max(1, int(self.level)):
            now = time.monotonic()
            if self.level < 2:
                if now < self._next_at:
                    return  # paced, or waiting out a 429: the waiters' poll interval ends at _next_at
                if self.level < 1:
                    self._next_at = now + self._rtt() / self.level
            waiter = heapq.heappop(self._waiters)
            self._in_flight += 1
            self.stats.requests += 1
            waiter.ticket = Ticket(self._epoch, now)
            waiter.granted.set()

    def _rtt(self) -> float:
        return self._round_trip if self._round_trip is not None else DEFAULT_ROUND_TRIP_S

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def current(self) -> float:
        """The level in force: requests in flight allowed, or below one the share of time one is."""
        return int(self.level) if self.level >= 1 else round(self.level, 3)

    # -- the level ------------------------------------------------------------------------------
    def _on_clean(self) -> None:
        if self._slow_start:
            self._set(self.level + 1, "clean answers (slow start)")
            return
        self._rejected_in_row = 0
        if self.level < 1:  # a request got through: a slot came free, most likely another task finished
            self._set(1.0, "a clean answer (paced)")
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

    def _on_rate_limited(self, ticket: Ticket, retry_after: float | None) -> None:
        accepted = max(1, self._in_flight)  # those still in flight were let in by the API
        if ticket.epoch != self._epoch:  # sent before the last change: only trim to what is in flight
            if accepted < self.level:
                self._set(accepted, "429 Too Many Requests", new_epoch=False)
            return
        if self.level <= 1:  # others hold the rest of the limit: wait as the API asked, then pace
            self._slow_start = False
            self._step = 1
            self._failed_level = 2  # past one again only by probes that back off further: the limit is shared
            self._probe_backoff = max(self._probe_backoff, 4 * MAX_PROBE_BACKOFF)
            self._rejected_in_row += 1
            if self._rejected_in_row > 1:
                self._set(self.level * DECREASE_PACED, "429 Too Many Requests (pacing)")
            self._pause(retry_after)
            return
        failed = int(self.level)
        if self._failed_level is not None and failed >= self._failed_level:
            cap = MAX_PROBE_BACKOFF_SHARED if self._failed_level <= 2 else MAX_PROBE_BACKOFF
            self._probe_backoff = min(self._probe_backoff * 2, cap)
        self._failed_level = failed if self._failed_level is None else min(self._failed_level, failed)
        self._slow_start = False
        self._step = 1
        self._set(min(accepted, max(1, failed - 1)), "429 Too Many Requests")
        if self._in_flight == 0 and self.level <= 1:  # none of ours got in: others hold the whole limit
            self._rejected_in_row = 1
            self._pause(retry_after)

    def _pause(self, retry_after: float | None) -> None:
        """No new request before the ``Retry-After``, doubled for every 429 in a row (up to 16x), nor
        before the paced interval of a level below one."""
        backoff = (retry_after or 0.0) * min(2 ** (self._rejected_in_row - 1), MAX_RETRY_AFTER_BACKOFF)
        pause = max(self._rtt() / self.level if self.level < 1 else 0.0, backoff)
        self._next_at = max(self._next_at, time.monotonic() + pause)

    def _on_overloaded(self, ticket: Ticket) -> None:
        self._slow_start = False
        self._step = 1
        if ticket.epoch == self._epoch:
            self._set(max(1, math.floor(self.level * DECREASE_503)), "503 Service Unavailable")

    def _set(self, level: float, reason: str, *, new_epoch: bool = True) -> None:
        level = float(max(MIN_LEVEL, min(self.ceiling, level)))
        old, before = self.current, self.level
        self.level = level
        self._clean = 0
        if level < 1 and level < before and new_epoch:
            self._epoch += 1  # paced: a decrease makes the 429s of requests sent before it stale
        if self.current == old:
            return
        if new_epoch and level >= 1:
            self._epoch += 1
        if self._slow_start and int(level) >= self.ceiling:
            self._slow_start = False
        self.stats.level_changes += 1
        self.stats.level_min = min(self.stats.level_min, self.current)
        self.stats.level_max = max(self.stats.level_max, self.current)
        now = time.monotonic()
        shown = self.current
        if now - self._logged_at >= self._log_interval and shown != self._logged_level:
            self.log.info(
                "Concurrency: %s (was %s, ceiling %d): %s",
                _describe(shown),
                _describe(self._logged_level),
                self.ceiling,
                reason,
            )
            self._logged_at, self._logged_level = now, shown

    def summary(self) -> dict[str, Any]:
        """The figures for the batch summary (a level below one is the share of time one request is in flight)."""
        return {
            "requests": self.stats.requests,
            "rate_limited": self.stats.rate_limited,
            "concurrency": self.current,
            "concurrency_min": self.stats.level_min,
        }


def _describe(level: float) -> str:
    if level >= 1:
        return f"{int(level)} request(s) in flight allowed"
    return f"paced, one request in flight {level:.0%} of the time"
