"""The fault decision logic itself (HTTP behaviour is in test_http_faults.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from linkai_provider.server.errors import ApiError
from linkai_provider.server.faults import Fault, FaultConfig, FaultInjector


def _kinds(injector: FaultInjector, n: int) -> list[str]:
    out = []
    for _ in range(n):
        fault = injector.decide({}).fault
        out.append("ok" if fault is None else f"{fault.kind}:{fault.status}")
    return out


def test_off_by_default() -> None:
    injector = FaultInjector(FaultConfig())
    assert not FaultConfig().active
    assert all(d == "ok" for d in _kinds(injector, 500))
    assert injector.decide({"x-linkai-fault": "503"}).fault is None, "headers ignored unless allowed"


def test_seeded_sequence_is_reproducible_and_rates_hold() -> None:
    config = FaultConfig(seed=42, drop_rate=0.1, fail_503_rate=0.2, rate_limit_rate=0.1, envelope_200_rate=0.1,
                         latency_ms=5, latency_jitter_ms=10)
    first = FaultInjector(config)
    sequence = _kinds(first, 2000)
    assert _kinds(FaultInjector(config), 2000) == sequence
    first.reset()
    assert _kinds(first, 2000) == sequence, "reset rewinds to the seed"
    assert _kinds(FaultInjector(FaultConfig(**{**config.__dict__, "seed": 43})), 2000) != sequence
    counts = Counter(sequence)
    for kind, rate in (("drop:200", 0.1), ("status:503", 0.2), ("status:429", 0.1), ("envelope200:200", 0.1),
                       ("ok", 0.5)):
        assert abs(counts[kind] / 2000 - rate) < 0.04, (kind, counts)


def test_latency_and_jitter_bounds() -> None:
    injector = FaultInjector(FaultConfig(seed=1, latency_ms=100, latency_jitter_ms=50))
    delays = [injector.decide({}).delay_s for _ in range(200)]
    assert all(0.1 <= d <= 0.15 for d in delays)
    assert max(delays) - min(delays) > 0.03, "jitter varies"


def test_429_carries_retry_after() -> None:
    fault = FaultInjector(FaultConfig(rate_limit_rate=1.0, retry_after=7)).decide({}).fault
    assert fault == Fault("status", 429, retry_after=7)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("402", Fault("status", 402, forced=True)),
        ("429", Fault("status", 429, retry_after=3, forced=True)),
        ("drop", Fault("drop", 200, forced=True)),
        ("envelope200", Fault("envelope200", 200, forced=True)),
        ("nonjson", Fault("nonjson", 200, forced=True)),
        ("nonjson:502", Fault("nonjson", 502, forced=True)),
        ("notext", Fault("notext", 200, forced=True)),
        ("none", None),
    ],
)
def test_fault_header_values(value: str, expected: Fault | None) -> None:
    injector = FaultInjector(FaultConfig(allow_fault_header=True, retry_after=3, fail_503_rate=1.0))
    assert injector.decide({"x-linkai-fault": value}).fault == expected


def test_fault_header_delay_and_retry_after() -> None:
    injector = FaultInjector(FaultConfig(allow_fault_header=True, latency_ms=10))
    decision = injector.decide({"x-linkai-fault": "429", "x-linkai-fault-delay-ms": "250",
                                "x-linkai-fault-retry-after": "9"})
    assert decision.delay_s == pytest.approx(0.26)
    assert decision.fault is not None and decision.fault.retry_after == 9


@pytest.mark.parametrize("value", ["teapot", "99", "700", "nonjson:abc"])
def test_bad_fault_header_is_a_400(value: str) -> None:
    with pytest.raises(ApiError) as info:
        FaultInjector(FaultConfig(allow_fault_header=True)).decide({"x-linkai-fault": value})
    assert info.value.status == 400


@pytest.mark.parametrize(
    "options",
    [{"drop_rate": 1.5}, {"fail_503_rate": -0.1}, {"fail_503_rate": 0.6, "rate_limit_rate": 0.6},
     {"latency_ms": -1}],
)
def test_invalid_config(options: dict) -> None:
    with pytest.raises(ValueError):
        FaultConfig(**options)
