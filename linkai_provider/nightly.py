"""Which day a nightly run transcribes, and the earlier days it looks back over.

Airflow 3's ``@daily`` is a *trigger* timetable: the run due at 00:00 UTC on the 29th has the 29th,
the day just starting, as its logical date, and an empty data interval. A DAG that reads
``<audio>/{{ ds }}/`` then lists a folder that is empty at midnight, and the day that ended is never
read. :func:`nightly_timetable` gives each run the day that ended as its data interval instead (its
logical date is that interval's start), and :func:`run_day` says which day any run covers:

======================================  =================================================
run                                     day it reads and files under (UTC)
======================================  =================================================
scheduled, or a backfill                the interval that ended: the 28th for the run due
                                        at 00:00 on the 29th
manual, with a ``day`` param            that day
manual, with a logical date             the logical date's day
manual, without a logical date          the day that ended before it was triggered
======================================  =================================================

:func:`lookback` adds the days before it, so a file that lands in a day's folder after that night's
run is still sent by the next run (the incremental check skips what is already done, whatever day it
was done on).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

DEFAULT_CRON = "0 0 * * *"
INTERVAL_RUN_TYPES = frozenset({"scheduled", "backfill"})


def nightly_timetable(cron: str = DEFAULT_CRON) -> Any:
    """A cron timetable whose runs carry the period that ended as their data interval (UTC)."""
    from airflow.sdk import CronDataIntervalTimetable

    return CronDataIntervalTimetable(cron, timezone="UTC")


def _utc_day(moment: datetime) -> date:
    return moment.astimezone(timezone.utc).date()


def _run_type(dag_run: Any) -> str:
    value = getattr(dag_run, "run_type", "")
    return str(getattr(value, "value", value))


def run_day(dag_run: Any, day: str | None = None) -> date:
    """The day ``dag_run`` covers (see the table above); ``day`` (``YYYY-MM-DD``) overrides it."""
    if day:
        try:
            return date.fromisoformat(str(day).strip())
        except ValueError:
            raise ValueError(f"day must be a date like 2026-11-28, got {day!r}") from None
    start, end = getattr(dag_run, "data_interval_start", None), getattr(dag_run, "data_interval_end", None)
    logical = getattr(dag_run, "logical_date", None)
    if _run_type(dag_run) in INTERVAL_RUN_TYPES:
        if start is not None and end is not None and start < end:
            return _utc_day(start)  # the period that ended; with nightly_timetable, also the logical date
        return _utc_day((logical or dag_run.run_after) - timedelta(days=1))  # a trigger timetable: due at day's end
    if logical is not None:
        return _utc_day(logical)
    return _utc_day(dag_run.run_after - timedelta(days=1))


# ``DAG(..., user_defined_macros=MACROS)``: templates can then say ``{{ run_day(dag_run) }}`` (a date,
# rendered as YYYY-MM-DD) where ``{{ ds }}`` would read the day starting, or nothing at all.
MACROS = {"run_day": run_day}


def lookback(day: date, days: int) -> list[date]:
    """``day`` and the ``days - 1`` days before it, newest first."""
    if days < 1:
        raise ValueError(f"lookback_days must be >= 1, got {days}")
    return [day - timedelta(days=n) for n in range(days)]


__all__ = ["DEFAULT_CRON", "MACROS", "lookback", "nightly_timetable", "run_day"]
