"""What one server instance shares between requests: its config, engine, counters and live settings."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from linkai_provider import __version__
from linkai_provider.server.config import ServerConfig
from linkai_provider.server.engines import Engine
from linkai_provider.server.faults import FaultInjector
from linkai_provider.server.response_formats import RESPONSE_FORMATS
from linkai_provider.server.stats import Stats

__all__ = ["ServerState"]


@dataclass
class ServerState:
    """What one server instance shares between requests."""

    config: ServerConfig
    engine: Engine
    stats: Stats = field(default_factory=Stats)
    injector: FaultInjector | None = None
    executor: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        if self.injector is None:
            self.injector = FaultInjector(self.config.faults)
        self._credits_spent = 0
        self._credits_lock = threading.Lock()
        #: The live ``--max-in-flight`` (``POST /_linkai/config`` changes it).
        self.max_in_flight: int | None = self.config.max_in_flight

    def settings(self) -> dict[str, Any]:
        """The settings ``POST /_linkai/config`` can change, as they are now."""
        return {"max_in_flight": self.max_in_flight}

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: every setting that shapes answers (limits, faults, dialects), no key."""
        config, faults = self.config, self.config.faults
        with self._credits_lock:
            spent = self._credits_spent
        return {
            "status": "ok",
            "version": __version__,
            "auth": not config.no_auth,
            "max_upload_bytes": config.max_upload_bytes,
            "max_in_flight": self.max_in_flight,
            "max_audio_seconds": config.max_audio_seconds,
            "latency_ms": faults.latency_ms,
            "latency_jitter_ms": faults.latency_jitter_ms,
            "latency_ms_per_audio_second": config.latency_ms_per_audio_second,
            "fail_503_rate": faults.fail_503_rate,
            "rate_limit_rate": faults.rate_limit_rate,
            "retry_after": faults.retry_after,
            "drop_rate": faults.drop_rate,
            "envelope_200_rate": faults.envelope_200_rate,
            "seed": faults.seed,
            "allow_fault_header": faults.allow_fault_header,
            "credits": faults.credits,
            "credits_left": None if faults.credits is None else max(faults.credits - spent, 0),
            "too_large_style": config.too_large_style,
            "error_style": config.error_style,
            "models": list(config.models),
            "response_formats": list(RESPONSE_FORMATS),
            **self.engine.info(),
        }

    def spend_credit(self) -> bool:
        """Reserve one recognition against ``--credits``; False once the balance is spent."""
        limit = self.config.faults.credits
        if limit is None:
            return True
        with self._credits_lock:
            if self._credits_spent >= limit:
                return False
            self._credits_spent += 1
            return True

    def refund_credit(self) -> None:
        if self.config.faults.credits is not None:
            with self._credits_lock:
                self._credits_spent -= 1

    def reset_credits(self) -> None:
        with self._credits_lock:
            self._credits_spent = 0
