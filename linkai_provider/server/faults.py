"""Fault injection: latency, 503s, 429s, dropped connections and odd 200s, seeded.

All faults are off by default. Random faults are drawn from one ``random.Random(seed)``; every
request draws exactly two numbers (jitter, then the fault band) whatever is configured, so a
given seed yields the same sequence of decisions for the same sequence of requests.

The random faults share one draw ``u`` in ``[0, 1)``, cut into consecutive bands: drop, 503,
429, envelope-200, then no fault. Their rates therefore must not sum to more than 1.

With ``allow_fault_header`` a test can force one answer per request (these headers are ignored
otherwise, so a production-like server cannot be steered by clients):

``X-LinkAI-Fault``
    ``400``...``599``: that status with the error envelope (``429`` adds ``Retry-After``);
    ``drop``: connection closed without an answer; ``envelope200``: HTTP 200 carrying the 503
    envelope; ``nonjson``: HTTP 200 with an HTML body (``nonjson:502`` for another status);
    ``notext``: HTTP 200 JSON without ``text``; ``none``: no random fault for this request.
``X-LinkAI-Fault-Delay-Ms``
    extra latency for this request (client timeout tests).
``X-LinkAI-Fault-Retry-After``
    the ``Retry-After`` seconds of a forced 429 (default: ``retry_after``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from linkai_provider.server.errors import ApiError

__all__ = [
    "FAULT_DELAY_HEADER",
    "FAULT_HEADER",
    "FAULT_RETRY_AFTER_HEADER",
    "Decision",
    "Fault",
    "FaultConfig",
    "FaultInjector",
]

FAULT_HEADER = "X-LinkAI-Fault"
FAULT_DELAY_HEADER = "X-LinkAI-Fault-Delay-Ms"
FAULT_RETRY_AFTER_HEADER = "X-LinkAI-Fault-Retry-After"

_NAMED = ("drop", "envelope200", "nonjson", "notext", "none")


@dataclass(frozen=True)
class FaultConfig:
    """The fault options of the server (CLI flags of the same names)."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    fail_503_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    drop_rate: float = 0.0
    envelope_200_rate: float = 0.0
    seed: int | None = None
    allow_fault_header: bool = False
    credits: int | None = None  # successful transcriptions the account can pay for; then 406

    def __post_init__(self) -> None:
        rates = {
            "drop_rate": self.drop_rate,
            "fail_503_rate": self.fail_503_rate,
            "rate_limit_rate": self.rate_limit_rate,
            "envelope_200_rate": self.envelope_200_rate,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("drop, 503, rate-limit and envelope-200 rates must not sum to more than 1")
        if self.latency_ms < 0 or self.latency_jitter_ms < 0:
            raise ValueError("latency must not be negative")
        if self.credits is not None and self.credits < 0:
            raise ValueError("credits must not be negative")
        if self.retry_after < 0:
            raise ValueError("retry_after must not be negative")

    @property
    def active(self) -> bool:
        """Whether any random fault or latency is configured."""
        return bool(
            self.latency_ms
            or self.latency_jitter_ms
            or self.fail_503_rate
            or self.rate_limit_rate
            or self.drop_rate
            or self.envelope_200_rate
        )


@dataclass(frozen=True)
class Fault:
    """One injected answer.

    ``kind`` is ``status`` (envelope with ``status``), ``drop``, ``envelope200``, ``nonjson``
    (HTML body with ``status``) or ``notext``.
    """

    kind: str
    status: int = 200
    retry_after: int | None = None
    forced: bool = False


@dataclass(frozen=True)
class Decision:
    """What to do with one request: wait ``delay_s``, then answer ``fault`` (or normally)."""

    delay_s: float = 0.0
    fault: Fault | None = None


class FaultInjector:
    """Decides, per request, the latency and fault; thread-safe and reproducible by seed."""

    def __init__(self, config: FaultConfig):
        self.config = config
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Restart the random sequence from the seed (used by the stats reset endpoint)."""
        with self._lock:
            self._rng = random.Random(self.config.seed)

    def decide(self, headers: Mapping[str, str]) -> Decision:
        """Draw this request's decision; ``headers`` may force one (see module docs).

        :raises ApiError: 400 for a malformed forcing header.
        """
        cfg = self.config
        with self._lock:
            jitter_u, fault_u = self._rng.random(), self._rng.random()
        delay_ms = cfg.latency_ms + jitter_u * cfg.latency_jitter_ms
        fault = self._band(fault_u)
        if cfg.allow_fault_header:
            extra = headers.get(FAULT_DELAY_HEADER.lower())
            if extra is not None:
                try:
                    delay_ms += max(0.0, float(extra))
                except ValueError:
                    raise ApiError(400, f"Invalid request format: {FAULT_DELAY_HEADER} must be a number") from None
            value = (headers.get(FAULT_HEADER.lower()) or "").strip().lower()
            if value:
                fault = self._parse(value, headers)
        return Decision(delay_s=delay_ms / 1000.0, fault=fault)

    def _band(self, u: float) -> Fault | None:
        cfg = self.config
        edge = 0.0
        for rate, fault in (
            (cfg.drop_rate, Fault("drop")),
            (cfg.fail_503_rate, Fault("status", 503)),
            (cfg.rate_limit_rate, Fault("status", 429, retry_after=cfg.retry_after)),
            (cfg.envelope_200_rate, Fault("envelope200", 200)),
        ):
            edge += rate
            if u < edge:
                return fault
        return None

    def _parse(self, value: str, headers: Mapping[str, str]) -> Fault | None:
        if value == "none":
            return None
        if value in ("drop", "envelope200", "notext"):
            return Fault(value, 200, forced=True)
        if value == "nonjson" or value.startswith("nonjson:"):
            status = _status(value.partition(":")[2] or "200")
            return Fault("nonjson", status, forced=True)
        status = _status(value)
        if status < 400:
            raise ApiError(400, f"Invalid request format: {FAULT_HEADER} status must be 400-599 or one of {_NAMED}")
        retry_after = None
        if status == 429:
            raw = headers.get(FAULT_RETRY_AFTER_HEADER.lower())
            retry_after = int(raw) if raw and raw.isdigit() else self.config.retry_after
        return Fault("status", status, retry_after=retry_after, forced=True)


def _status(text: str) -> int:
    try:
        status = int(text)
    except ValueError:
        raise ApiError(400, f"Invalid request format: unknown {FAULT_HEADER} value {text!r}") from None
    if not 200 <= status <= 599:
        raise ApiError(400, f"Invalid request format: {FAULT_HEADER} status {status} is out of range")
    return status
