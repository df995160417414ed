"""The daily transcript summary, recomputed only for the days a run changed (issue 16 item 3).

The summary counts each file once, on the day (``dt`` partition) of its *current* row (its latest by
``transcribed_at``, then part path). So a run that wrote partition ``P`` changes the summary of ``P``
and of every day holding an earlier row of a file the run wrote: a file that failed on day D and was
``ok`` in D+1 leaves D's summary. Which days, exactly:

1. ``P``: the partitions in the Asset events' ``extra["partitions"]`` (every event queued for this
   analytics run; :mod:`linkai_provider.lineage` adds them).
2. ``U``: every file with a row in ``P`` (from the key index, :mod:`linkai_provider.keyindex`).
3. The days to recompute, ``A``: ``P`` and every day holding a row of a file of ``U``. A file's
   current row can only have moved between days that hold its rows, and ``P`` is where rows were
   added, so the summary of every other day is what it was.
4. The rows read: every row of the days ``A`` (only the columns the summary uses), and, for the files
   of ``A``, the ``source_uri``/``transcribed_at`` of their rows on other days, so "current" is decided
   over each file's whole history. The summary SQL then runs over exactly those rows and keeps the
   days ``A``; the files that count for a day of ``A`` are the same as in a full recompute, and so is
   every figure (sums are exact: durations are summed in integer microseconds, in any order).

Without partitions (a manual run, or an event from a producer that does not name them) the whole
dataset is recomputed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from fsspec import AbstractFileSystem

from linkai_provider import dataset
from linkai_provider.io.storage import is_local
from linkai_provider.planning import KeyIndex
from linkai_provider.staging import scan

NO_DAY = "none"  # the ``dt`` of rows in parts outside any dt= folder
COLUMNS = ("source_uri", "status", "text", "error_type", "audio_duration_s", "source_size_bytes", "transcribed_at")
_DT = re.compile(r"/dt=([^/]+)/")

# One row per file: its latest attempt wins ("current transcript per file"); the file counts for the
# day (dt partition) of that row. Days whose files all moved on still get a row, with zeros. Seconds are
# summed exactly (integer microseconds: the same rows give the same figures in any order), shown in ms.
SUMMARY_SQL = """
WITH rows AS (
    SELECT *, coalesce(nullif(regexp_extract(filename, '/dt=([^/]+)/', 1), ''), 'none') AS dt
    FROM transcript_rows
),
current AS (
    SELECT * FROM rows
    QUALIFY row_number() OVER (PARTITION BY source_uri ORDER BY transcribed_at DESC, filename DESC) = 1
),
per_day AS (
    SELECT
        dt,
        count(*) AS files,
        count(*) FILTER (WHERE status = 'ok') AS ok,
        count(*) FILTER (WHERE status <> 'ok') AS failed,
        sum(CASE WHEN status = 'ok' AND trim(coalesce(text, '')) <> ''
                 THEN len(regexp_split_to_array(trim(text), '\\s+')) ELSE 0 END) AS words,
        sum(round(audio_duration_s * 1e6)::HUGEINT) AS audio_us,
        count(audio_duration_s) AS files_with_duration,
        sum(source_size_bytes) AS bytes
    FROM current GROUP BY dt
),
reasons AS (
    SELECT dt, list({'error_type': error_type, 'files': n} ORDER BY n DESC, error_type) AS failure_reasons
    FROM (
        SELECT dt, coalesce(error_type, 'unknown') AS error_type, count(*) AS n
        FROM current WHERE status <> 'ok' GROUP BY ALL
    ) GROUP BY dt
),
attempts AS (
    SELECT dt, count(*) AS attempt_rows, min(transcribed_at) AS first_transcribed_at,
           max(transcribed_at) AS last_transcribed_at,
           -- what the API billed: every ok row's audio, re-transcriptions included
           sum(round(audio_duration_s * 1e6)::HUGEINT) FILTER (WHERE status = 'ok') AS billed_us
    FROM rows WHERE status IS NOT NULL GROUP BY dt
)
SELECT
    a.dt,
    coalesce(d.files, 0)::BIGINT AS files,
    coalesce(d.ok, 0)::BIGINT AS ok,
    coalesce(d.failed, 0)::BIGINT AS failed,
    coalesce(r.failure_reasons, []) AS failure_reasons,
    coalesce(d.words, 0)::BIGINT AS words,
    -- milliseconds (a float sum printed as 5806.494124999999), from an exact sum of microseconds
    round(d.audio_us / 1e6, 3)::DOUBLE AS audio_seconds,
    coalesce(d.files_with_duration, 0)::BIGINT AS files_with_duration,
    coalesce(d.bytes, 0)::BIGINT AS bytes,
    round(coalesce(a.billed_us, 0) / 1e6, 3)::DOUBLE AS audio_seconds_billed,
    a.attempt_rows::BIGINT AS attempt_rows,
    a.first_transcribed_at,
    a.last_transcribed_at,
    now() AS generated_at
FROM attempts a
LEFT JOIN per_day d USING (dt)
LEFT JOIN reasons r USING (dt)
ORDER BY a.dt
"""


def day_of(path: str) -> str:
    """The ``dt`` the summary files a part's rows under (as :data:`SUMMARY_SQL` reads it from the path)."""
    m = _DT.search(path)
    return m.group(1) if m else NO_DAY


def partitions_of_events(events: Iterable[Any]) -> list[str] | None:
    """The partitions named by Asset events (their ``extra["partitions"]``), or None when any event
    does not name them (then only a full recompute is right)."""
    found: set[str] = set()
    seen = False
    for event in events:
        seen = True
        extra = getattr(event, "extra", None)
        if extra is None and isinstance(event, Mapping):
            extra = event.get("extra")
        partitions = (extra or {}).get("partitions")
        if not isinstance(partitions, list) or not all(isinstance(p, str) for p in partitions):
            return None
        found.update(partitions)
    return sorted(found) if seen else None


@dataclass
class Recompute:
    """What one summary run reads: parts whose every needed column is read, and other parts whose
    keys only are read for the files ``uris`` (deciding which row is current)."""

    full: bool
    days: list[str] = field(default_factory=list)  # empty when full
    parts: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)  # files of ``days`` with rows in ``others``
    partitions: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # part -> size, as listed


def plan_recompute(fs: AbstractFileSystem, root: str, partitions: Collection[str] | None) -> Recompute:
    """The days to recompute for ``partitions`` written (None: everything) and the parts to read."""
    root = root.rstrip("/")
    listing = scan(fs, root)
    if partitions is None:
        return Recompute(full=True, parts=sorted(listing.parts), sizes=dict(listing.parts))
    index = KeyIndex(fs, listing)
    by_day: dict[str, list[str]] = {}
    for part in listing.parts:
        by_day.setdefault(day_of(part), []).append(part)
    written = {day_of(f"/{p.strip('/')}/") for p in partitions}
    written_parts = [p for d in written for p in by_day.get(d, [])]
    holding = index.parts_holding(index.uris_in(written_parts))
    days = written | {day_of(p) for p in holding}
    parts = sorted(p for d in days for p in by_day.get(d, []))
    others = index.parts_holding(index.uris_in(parts))
    other_parts = {p: uris for p, uris in others.items() if day_of(p) not in days}
    return Recompute(
        full=False,
        days=sorted(days),
        parts=parts,
        others=sorted(other_parts),
        uris=sorted(set().union(*other_parts.values())) if other_parts else [],
        partitions=sorted(partitions),
        sizes=dict(listing.parts),
    )


def summarize(fs: AbstractFileSystem, plan: Recompute, con: Any = None) -> pa.Table | None:
    """Run :data:`SUMMARY_SQL` with DuckDB over what ``plan`` says to read: one row per day (every day
    when ``plan.full``, else ``plan.days``); None when there is no part to read.

    The parts are read with pyarrow through ``fs`` (object stores: each part's footer, then only the
    columns the summary uses, :func:`linkai_provider.dataset.read_columns`), streamed into a DuckDB
    table (which spills to disk beyond its memory limit), then summarised. DuckDB does not read
    through fsspec itself: its threads share a Python file object's seek and read."""
    import duckdb

    if not plan.parts:
        return None
    con = con or duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false")
    schema = pa.schema([*(dataset.SCHEMA.field(c) for c in COLUMNS), pa.field("filename", pa.string())])
    local = is_local(fs)

    def name(path: str) -> str:
        return path if local else fs.unstrip_protocol(path)

    def batches() -> Iterator[pa.RecordBatch]:
        chosen = {p: plan.sizes[p] for p in plan.parts}
        for path, table in dataset.read_columns(fs, chosen, list(COLUMNS)):
            table = table.select(list(COLUMNS)).append_column("filename", pa.array([name(path)] * table.num_rows))
            yield from table.cast(schema).to_batches()
        if plan.others and plan.uris:
            wanted = pa.array(plan.uris, pa.string())
            others = {p: plan.sizes[p] for p in plan.others}
            for path, table in dataset.read_columns(fs, others, ["source_uri", "transcribed_at"]):
                table = table.filter(pc.is_in(table["source_uri"], value_set=wanted))
                columns = {c: table[c] if c in table.column_names else pa.nulls(table.num_rows, schema.field(c).type)
                           for c in COLUMNS}  # fmt: skip
                columns["filename"] = pa.array([name(path)] * table.num_rows, pa.string())
                yield from pa.table(columns, schema=schema).to_batches()

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    con.register("transcript_stream", reader)
    con.execute("CREATE OR REPLACE TEMP TABLE transcript_rows AS SELECT * FROM transcript_stream")
    con.unregister("transcript_stream")
    result = con.sql(SUMMARY_SQL).arrow()  # a Table before DuckDB 1.4, a RecordBatchReader since
    table = result.read_all() if hasattr(result, "read_all") else result
    if plan.full:
        return table
    # Days other than plan.days appear only through the keys read from other parts: partial, dropped.
    return table.filter(pc.is_in(table["dt"], value_set=pa.array(plan.days, pa.string())))


__all__ = [
    "COLUMNS",
    "NO_DAY",
    "SUMMARY_SQL",
    "Recompute",
    "day_of",
    "partitions_of_events",
    "plan_recompute",
    "summarize",
]
