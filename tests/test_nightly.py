"""Which day a nightly run covers (``linkai_provider.nightly``), for every kind of run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import pytest

from linkai_provider.nightly import lookback, run_day


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@dataclass
class Run:
    run_type: str
    run_after: datetime
    logical_date: datetime | None = None
    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        # scheduled by nightly_timetable: the interval that ended
        (Run("scheduled", utc(2026, 11, 29), utc(2026, 11, 28), utc(2026, 11, 28), utc(2026, 11, 29)), "2026-11-28"),
        # a backfill of the 3rd
        (Run("backfill", utc(2026, 11, 4), utc(2026, 11, 3), utc(2026, 11, 3), utc(2026, 11, 4)), "2026-11-03"),
        # a trigger timetable (Airflow 3's @daily): logical date = the day starting, empty interval
        (Run("scheduled", utc(2026, 11, 29), utc(2026, 11, 29), utc(2026, 11, 29), utc(2026, 11, 29)), "2026-11-28"),
        # manual with a logical date: that day, whatever interval Airflow inferred
        (Run("manual", utc(2026, 11, 29, 9), utc(2026, 11, 20), utc(2026, 11, 19), utc(2026, 11, 20)), "2026-11-20"),
        # manual without one (the UI's Trigger): the day that ended before it
        (Run("manual", utc(2026, 11, 29, 0, 5)), "2026-11-28"),
        (Run("manual", utc(2026, 11, 29, 23, 59)), "2026-11-28"),
    ],
)
def test_run_day(run, expected):
    assert str(run_day(run)) == expected


def test_the_day_param_wins_and_is_checked():
    run = Run("manual", utc(2026, 11, 29, 9))
    assert run_day(run, "2026-02-03") == date(2026, 2, 3)
    with pytest.raises(ValueError, match="day must be a date like 2026-11-28, got '03/02/2026'"):
        run_day(run, "03/02/2026")


def test_lookback():
    assert [str(d) for d in lookback(date(2026, 3, 1), 3)] == ["2026-03-01", "2026-02-28", "2026-02-27"]
    with pytest.raises(ValueError, match="lookback_days must be >= 1"):
        lookback(date(2026, 3, 1), 0)
