"""Analytics that recompute only what changed: the days a run's partitions touch, recomputed from the
rows that decide them, give exactly what a full recompute gives (a moved file, a failed file that later
succeeded, several events at once, a manual run; parts of schema v2 and v3; local disk and S3)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkai_provider import analytics, dataset
from linkai_provider.analytics import partitions_of_events, plan_recompute, summarize
from linkai_provider.dataset import SCHEMA, TranscriptWriter
from tests.test_dataset import row
from tests.test_journal import ident, journal

T0 = datetime(2026, 10, 1, 1, tzinfo=timezone.utc)
V2 = pa.schema([f for f in SCHEMA if f.name != "warnings"]).set(
    SCHEMA.get_field_index("segments"),
    pa.field("segments", pa.list_(pa.struct([f for f in dataset.SEGMENT if f.name != "channel"]))),
)


def summary(fs, root: str, partitions=None) -> dict[str, dict]:
    """The summary rows by day (without ``generated_at``, which differs by construction)."""
    table = summarize(fs, plan_recompute(fs, root, partitions))
    if table is None:
        return {}
    return {r.pop("dt"): r for r in table.drop_columns(["generated_at"]).to_pylist()}


def write(fs, root: str, dt: str, rows: list[dict], how: str = "bulk") -> str:
    """Rows into ``dt=<dt>`` as one part: a bulk load (indexed), a task's journal (compacted and
    indexed), or a schema v2 part without an index (an older version's)."""
    folder = f"{root}/dt={dt}"
    if how == "journal":
        j = journal(fs, folder, ident(run_id=f"r-{random.random()}"))
        j.append(rows)
        j.close()
    elif how == "v2":
        for r in rows:
            r.pop("warnings", None)
            r["segments"] = [{"start_s": 0.0, "end_s": 1.0, "text": r["text"]}] if r["status"] == "ok" else None
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows, schema=V2), sink)
        dataset._atomic_write(fs, f"{folder}/part-v2-{random.getrandbits(40):x}.parquet", sink.getvalue().to_pybytes())
    else:
        writer = TranscriptWriter(fs, folder, checkpoint_rows=10**6)
        for r in rows:
            writer.add(r)
        writer.close()
    return f"dt={dt}"


def attempt(uri: str, ok: bool, when: datetime, words: int = 3, duration: float | None = 1.25, error="ServerError"):
    return row(
        uri, status="ok" if ok else "failed", text=" ".join(["word"] * words) if ok else None,
        error_type=None if ok else error, transcribed_at=when, audio_duration_s=duration, source_size_bytes=100,
    )  # fmt: skip


def test_a_failed_file_done_later_a_moved_file_several_events_and_a_manual_run(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path / "transcripts")
    write(fs, root, "2026-10-01", [attempt("s3://calls/a.wav", False, T0), attempt("s3://calls/b.wav", True, T0),
                                   attempt("s3://calls/c.wav", True, T0)])  # fmt: skip
    write(fs, root, "2026-10-02", [attempt("s3://calls/d.wav", True, T0 + timedelta(days=1))])
    state = summary(fs, root)  # the first analytics run: full
    assert set(state) == {"2026-10-01", "2026-10-02"}

    # One run: a.wav (failed on the 1st) ok on the 3rd; b.wav re-transcribed (moved) into the 3rd.
    t = T0 + timedelta(days=2)
    p = write(fs, root, "2026-10-03", [attempt("s3://calls/a.wav", True, t, 5), attempt("s3://calls/b.wav", True, t)])
    plan = plan_recompute(fs, root, [p])
    assert plan.days == ["2026-10-01", "2026-10-03"]  # the 2nd is untouched: not read
    assert all("dt=2026-10-02" not in part for part in plan.parts + plan.others)
    state.update(summary(fs, root, [p]))
    assert state == summary(fs, root)
    assert (state["2026-10-01"]["files"], state["2026-10-01"]["failed"], state["2026-10-01"]["attempt_rows"]) == (
        1,
        0,
        3,
    )

    # Two runs, their events queued into one analytics run: the union of their partitions.
    t += timedelta(days=1)
    p1 = write(fs, root, "2026-10-04", [attempt("s3://calls/c.wav", False, t, error="PayloadTooLargeError")])
    p2 = write(fs, root, "2026-10-02", [attempt("s3://calls/e.wav", True, t, duration=None)], how="journal")
    events = [{"extra": {"rows_written": 1, "partitions": [p1]}}, {"extra": {"rows_written": 1, "partitions": [p2]}}]
    written = partitions_of_events(events)
    assert written == ["dt=2026-10-02", "dt=2026-10-04"]
    assert plan_recompute(fs, root, written).days == ["2026-10-01", "2026-10-02", "2026-10-04"]
    state.update(summary(fs, root, written))
    assert state == summary(fs, root)
    assert state["2026-10-04"]["failure_reasons"] == [{"error_type": "PayloadTooLargeError", "files": 1}]

    # A manual run has no event: everything is recomputed. So does an event without partitions.
    assert partitions_of_events([]) is None
    assert partitions_of_events([*events, {"extra": {"rows_written": 2}}]) is None
    full = plan_recompute(fs, root, None)
    assert full.full and len(full.parts) == 5


def _random_rows(rng: random.Random, uris: list[str], when: datetime) -> list[dict]:
    return [
        attempt(rng.choice(uris), rng.random() < 0.7, when + timedelta(seconds=rng.choice([0, 0, 1, 2])),
                words=rng.randint(0, 6), duration=rng.choice([None, 0.1, 1.3, 2.7, 1e-7]),
                error=rng.choice(["ServerError", "RateLimitError", None]))
        for _ in range(rng.randint(1, 5))
    ]  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_incremental_recomputes_equal_full_ones_over_random_histories(tmp_path, seed):
    """Random runs (files in any day, ties in ``transcribed_at``, bulk loads, compacted journals, schema
    v2 parts without an index); after each analytics run, the summary kept by incremental recomputes is
    the full recompute, row for row."""
    rng = random.Random(seed)
    fs, root = fsspec.filesystem("file"), str(tmp_path / "transcripts")
    uris = [f"s3://calls/{rng.choice(['x', 'y'])}/f{i}.wav" for i in range(30)]
    days = [f"2026-10-{d:02d}" for d in range(1, 11)]
    when = T0
    for d in days[:6]:
        write(fs, root, d, _random_rows(rng, uris, when), how=rng.choice(["bulk", "v2"]))
    state = summary(fs, root)
    for _ in range(8):
        written = []
        for _ in range(rng.randint(1, 3)):  # runs whose events queue into one analytics run
            when += timedelta(hours=rng.choice([0, 5, 30]))
            written.append(write(fs, root, rng.choice(days), _random_rows(rng, uris, when),
                                 how=rng.choice(["bulk", "bulk", "journal", "v2"])))  # fmt: skip
        state.update(summary(fs, root, written))
        assert state == summary(fs, root)


def test_incremental_equals_full_on_s3(s3fs_factory):
    fs = s3fs_factory()
    fs.mkdir("analytics-bucket")
    root = "analytics-bucket/transcripts"
    write(fs, root, "2026-10-01", [attempt("s3://calls/a.wav", False, T0), attempt("s3://calls/b.wav", True, T0)])
    write(fs, root, "2026-10-02", [attempt("s3://calls/c.wav", True, T0)], how="v2")
    state = summary(fs, root)
    p = write(fs, root, "2026-10-03", [attempt("s3://calls/a.wav", True, T0 + timedelta(days=2))], how="journal")
    plan = plan_recompute(fs, root, [p])
    assert plan.days == ["2026-10-01", "2026-10-03"]
    state.update(summary(fs, root, [p]))
    assert state == summary(fs, root)


def test_days_outside_dt_folders_and_the_root_partition(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    writer = TranscriptWriter(fs, root)
    writer.add(attempt("s3://calls/a.wav", True, T0))
    writer.close()
    assert analytics.day_of(writer.parts[0]) == analytics.NO_DAY
    assert summary(fs, root, [""]).keys() == {"none"} and summary(fs, root) == summary(fs, root, [""])
    assert summary(fs, root, ["dt=2026-01-01"]) == {}  # a partition with no part: nothing to write


def test_partitions_come_from_real_airflow_event_objects():
    from airflow.sdk import Asset
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    asset = Asset("s3://lake/transcripts")

    def event(extra: dict) -> AssetEventDagRunReferenceResult:
        return AssetEventDagRunReferenceResult(
            asset={"name": asset.name, "uri": asset.uri, "extra": {}}, extra=extra, source_task_id="report",
            source_dag_id="nightly", source_run_id="r", source_map_index=-1,
            source_aliases=[{"name": "linkai-transcripts:s3://lake/transcripts"}], timestamp=T0,
        )  # fmt: skip

    accessor = TriggeringAssetEventsAccessor.build(
        [event({"rows_written": 3, "partitions": ["dt=2026-11-28"]}), event({"partitions": ["dt=2026-11-27"]})]
    )
    assert partitions_of_events(accessor.get(asset, [])) == ["dt=2026-11-27", "dt=2026-11-28"]
    assert accessor.get(Asset("s3://other"), []) == []
