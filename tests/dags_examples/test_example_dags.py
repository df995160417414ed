"""The example DAGs of ``dags/``, run as they are through real Airflow (``dag.test()`` on SQLite)
against linkai-server on loopback, on local disk and on S3 (moto server); every output row is
checked against its input file and the analytics summary against the transcript dataset."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import duckdb
import pendulum
import pyarrow.parquet as pq
import pytest

from linkai_provider.dataset import TranscriptWriter, read_rows
from linkai_provider.lineage import transcript_alias
from linkai_provider.operators.transcribe import TranscribeAudioOperator
from tests.helpers import check_ok_rows, xcom_return, xcom_value

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAG_IDS = ("linkai_nightly_transcription", "linkai_sharded_transcription", "linkai_transcript_analytics")

pytestmark = pytest.mark.usefixtures("airflow_home")


def ti_states(dag_run) -> dict[tuple[str, int], str]:
    """``(task_id, map_index) -> state`` of every task instance of a ``dag.test()`` run."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return {(ti.task_id, ti.map_index): str(ti.state) for ti in dag_run.get_task_instances(session=session)}


def day(ds: str) -> pendulum.DateTime:
    return pendulum.parse(ds).in_timezone("UTC")


def nightly_ok(days: int = 1, state: str = "success") -> dict[tuple[str, int], str]:
    """The task instances of a nightly run that read ``days`` day folders."""
    tis = {("plan_days", -1): "success", ("report", -1): "success", ("all_days_succeeded", -1): state}
    return {**tis, **{("transcribe", i): "success" for i in range(days)}}


def aws_conn(moto_endpoint: str) -> dict:
    """An Airflow ``aws`` connection to the moto server (Airflow's own s3 filesystem is used)."""
    return {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
    }


def fsspec_conn(moto_endpoint: str) -> dict:
    """A ``generic`` connection whose extra is s3fs storage options."""
    return {
        "conn_type": "generic",
        "extra": {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": moto_endpoint}},
    }


def upload(fs, speech, names: list[str], prefix: str) -> dict[str, bytes]:
    written = {}
    for name in names:
        data = (speech.dir / name).read_bytes()
        fs.pipe_file(f"{prefix}/{name}", data)
        written[f"s3://{prefix}/{name}"] = data
    return written


def local_rows(folder: Path) -> list[dict]:
    return duckdb.sql(f"SELECT * FROM read_parquet('{folder}/*.parquet')").arrow().read_all().to_pylist()


def check_summary(summary: dict[str, dict], transcripts: list[dict]) -> None:
    """The analytics rows agree with the current transcript per file, day by day."""
    current: dict[str, dict] = {}
    for row in sorted(transcripts, key=lambda r: r["transcribed_at"]):
        current[row["source_uri"]] = row
    by_day: dict[str, list[dict]] = {}
    for row in current.values():
        by_day.setdefault(row["dt"], []).append(row)
    assert set(summary) == {r["dt"] for r in transcripts}
    for dt, got in summary.items():
        rows = by_day.get(dt, [])
        ok = [r for r in rows if r["status"] == "ok"]
        assert got["files"] == len(rows), dt
        assert got["ok"] == len(ok)
        assert got["failed"] == len(rows) - len(ok)
        assert got["words"] == sum(len(r["text"].split()) for r in ok)
        assert got["attempt_rows"] == sum(1 for r in transcripts if r["dt"] == dt)
        durations = [r["audio_duration_s"] for r in rows if r["audio_duration_s"] is not None]
        assert got["files_with_duration"] == len(durations)
        if durations:
            assert got["audio_seconds"] == round(sum(durations), 3)  # milliseconds, no float noise
        billed = [r["audio_duration_s"] or 0.0 for r in transcripts if r["dt"] == dt and r["status"] == "ok"]
        assert got["audio_seconds_billed"] == round(sum(billed), 3)


def read_summary_local(folder: Path) -> dict[str, dict]:
    out = {}
    for path in folder.glob("dt=*/summary.parquet"):
        (row,) = pq.read_table(path).to_pylist()
        out[path.parent.name[3:]] = row
    return out


# -- parsing ------------------------------------------------------------------------------------------


def test_dagbag_imports_without_errors_or_deprecations(tmp_path):
    """Parsed in a fresh interpreter, the way the DAG processor does it: no errors, no warnings."""
    script = f"""
import json, time, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from airflow.dag_processing.dagbag import DagBag
    started = time.monotonic()
    bag = DagBag(dag_folder={str(REPO / "dags")!r}, known_pools={{"default_pool"}})
    took = time.monotonic() - started
deprecations = [f"{{w.category.__name__}}: {{w.message}} ({{w.filename}})" for w in caught
                if issubclass(w.category, DeprecationWarning) and "airflow" in w.filename + str(w.message)]
print(json.dumps({{"errors": bag.import_errors, "dags": sorted(bag.dags), "took": took,
                  "captured": {{k: list(v) for k, v in bag.captured_warnings.items()}},
                  "deprecations": deprecations}}))
"""
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert result["dags"] == sorted(EXAMPLE_DAG_IDS)
    assert result["captured"] == {}
    assert result["deprecations"] == []
    assert result["took"] < 10, "DAG files must stay fast to parse"


def test_dag_shapes(example_dag, lake_env, tmp_path):
    lake = lake_env(f"file://{tmp_path}/audio", f"file://{tmp_path}/lake/transcripts")
    nightly = example_dag("linkai_nightly_transcription")
    sharded = example_dag("linkai_sharded_transcription")
    analytics = example_dag("linkai_transcript_analytics")

    asset_uri = lake.transcripts
    assert nightly.catchup is False and nightly.doc_md and "real bucket" in nightly.doc_md
    transcribe = nightly.get_task("transcribe")
    assert transcribe.retries == 0  # LINKAI_TASK_RETRIES from the environment
    assert transcribe.retry_exponential_backoff
    # one instance per day read; every one skips what the whole dataset already holds
    assert transcribe.partial_kwargs["incremental_scope"] == asset_uri
    # an alias: the Asset gets one event per run that wrote rows, from report (none per day)
    alias = transcript_alias(asset_uri)
    assert transcribe.partial_kwargs["outlets"] == []
    assert nightly.get_task("report").outlets == [alias]
    assert [t.task_id for t in nightly.leaves] == ["all_days_succeeded"]
    assert TranscribeAudioOperator(task_id="x", source="/a", destination=f"{asset_uri}/dt=x/").outlets == [alias]
    assert "dag-processor and every worker" in nightly.doc_md and "scheduler and workers" not in nightly.doc_md

    assert "Celery" in sharded.doc_md and "pool" in sharded.doc_md
    assert sharded.get_task("transcribe").partial_kwargs["outlets"] == []  # no event per shard ...
    assert sharded.get_task("report").outlets == [alias]  # ... one per run, from the step after them
    assert [t.task_id for t in sharded.leaves] == ["all_shards_succeeded"]

    assert [a.uri for a in analytics.timetable.asset_condition.objects] == [asset_uri]
    assert [a.uri for a in analytics.get_task("summarize").outlets] == [lake.summary]
    assert not lake.summary.startswith(asset_uri + "/"), "the summary must live beside the dataset"


def test_nightly_schedule_from_env(example_dag, lake_env, monkeypatch, tmp_path):
    lake_env(f"file://{tmp_path}/audio", f"file://{tmp_path}/transcripts")
    monkeypatch.setenv("LINKAI_NIGHTLY_SCHEDULE", "30 2 * * *")
    timetable = example_dag("linkai_nightly_transcription").timetable
    assert type(timetable).__name__ == "CronDataIntervalTimetable" and timetable.expression == "30 2 * * *"


# -- local disk ---------------------------------------------------------------------------------------


def test_nightly_then_analytics_local(example_dag, lake_env, linkai_conn, local_audio, tmp_path, speech):
    ds, other = "2026-11-10", "2026-11-11"
    lake = lake_env(f"file://{local_audio.root}", f"file://{tmp_path}/lake/transcripts")
    inputs = local_audio(ds)
    local_audio(other)  # another day's drop: not this run's business
    (local_audio.root / ds / "readme.txt").write_text("not audio")

    dag = example_dag("linkai_nightly_transcription")
    run = dag.test(logical_date=day(ds))
    assert run.state == "success"
    assert ti_states(run) == nightly_ok()
    summary = xcom_return(run, "transcribe", 0)
    assert (summary["files_found"], summary["transcribed"], summary["skipped_unsupported"]) == (11, 10, 1)
    partition = tmp_path / "lake" / "transcripts" / f"dt={ds}"
    check_ok_rows(local_rows(partition), inputs, "linkai_nightly_transcription")

    # the same night again: everything is skipped, nothing is sent, no row is added
    again = dag.test(logical_date=day(ds))
    assert again.state == "success"
    assert xcom_return(again, "transcribe", 0)["skipped_existing"] == 10
    assert len(local_rows(partition)) == 10

    analytics = example_dag("linkai_transcript_analytics")
    arun = analytics.test(logical_date=day(ds))
    assert arun.state == "success"
    assert ti_states(arun) == {("summarize", -1): "success"}
    totals = xcom_return(arun, "summarize")
    assert (totals["days"], totals["files"], totals["ok"], totals["failed"]) == (1, 10, 10, 0)
    assert totals["words"] == 20  # "sha256:<hex> bytes:<n>" is two words
    summary_dir = Path(lake.summary.removeprefix("file://"))
    assert summary_dir == tmp_path / "lake" / "transcript_summary"
    rows = duckdb.sql(
        "SELECT *, regexp_extract(filename, 'dt=([^/]+)/', 1) AS dt"
        f" FROM read_parquet('{partition.parent}/*/*.parquet', filename = true, hive_partitioning = false)"
    )
    check_summary(read_summary_local(summary_dir), rows.arrow().read_all().to_pylist())
    # the cost figures are the server's own: audio billed (summary and analytics) = audio it transcribed
    billed = linkai_conn.stats()["audio_seconds_ok"]
    assert summary["audio_seconds"] == pytest.approx(billed, abs=0.01)
    assert read_summary_local(summary_dir)[ds]["audio_seconds_billed"] == pytest.approx(billed, abs=0.01)


def test_bad_file_fails_the_night_after_writing_rows_and_analytics_reports_why(
    example_dag, lake_env, linkai_conn, local_audio, tmp_path, speech
):
    ds = "2026-11-15"
    lake = lake_env(f"file://{local_audio.root}", f"file://{tmp_path}/lake/transcripts")
    inputs = local_audio(ds, sorted(speech.truth)[:3])
    (local_audio.root / ds / "broken.wav").write_text("this is not audio " * 20)

    run = example_dag("linkai_nightly_transcription").test(logical_date=day(ds))
    assert run.state == "failed"
    # PartialBatchError, after every row was written; report still adds up and announces the rows
    assert ti_states(run) == {**nightly_ok(state="failed"), ("transcribe", 0): "failed"}
    rows = local_rows(tmp_path / "lake" / "transcripts" / f"dt={ds}")
    (bad,) = [r for r in rows if r["source_uri"].endswith("broken.wav")]
    # nothing in it decodes as audio: refused before any request (issue 17), a failed row all the same
    assert (bad["status"], bad["error_type"], bad["error_code"], bad["attempts"]) == ("failed", "UnreadableFileError",
                                                                                      None, 0)  # fmt: skip
    check_ok_rows([r for r in rows if r is not bad], inputs, "linkai_nightly_transcription")

    arun = example_dag("linkai_transcript_analytics").test(logical_date=day(ds))
    assert arun.state == "success"
    got = read_summary_local(Path(lake.summary.removeprefix("file://")))[ds]
    assert (got["files"], got["ok"], got["failed"]) == (4, 3, 1)
    assert got["failure_reasons"] == [{"error_type": "UnreadableFileError", "files": 1}]
    check_summary({ds: got}, [{**r, "dt": ds} for r in rows])


def test_sharded_spreads_over_mapped_instances_and_skips_earlier_work(
    example_dag, lake_env, linkai_conn, local_audio, tmp_path, speech
):
    names = sorted(speech.truth)
    first = local_audio("2026-11-01", names[:4])
    later = local_audio("2026-11-02", names[4:], subdir="nested")
    lake_env(f"file://{local_audio.root}", f"file://{tmp_path}/lake/transcripts")

    # the nightly DAG did 2026-11-01 already; the backfill must not send those files again
    nightly = example_dag("linkai_nightly_transcription").test(logical_date=day("2026-11-01"))
    assert nightly.state == "success"

    ds = "2026-11-03"
    dag = example_dag("linkai_sharded_transcription")
    run = dag.test(logical_date=day(ds), run_conf={"shards": 3})
    assert run.state == "success"
    states = ti_states(run)
    assert states == {
        ("list_shards", -1): "success",
        ("transcribe", 0): "success",
        ("transcribe", 1): "success",
        ("transcribe", 2): "success",
        ("report", -1): "success",
        ("all_shards_succeeded", -1): "success",
    }
    assert xcom_return(run, "list_shards") == [0, 1, 2]  # shard numbers only: no file list in XCom
    listing = xcom_value(run, "list_shards", "listing")
    assert (listing["files_found"], listing["audio_files"], listing["shards"]) == (len({**first, **later}), 10, 3)
    assert (listing["smallest_shard"], listing["largest_shard"]) == (3, 4)
    assert "/_linkai/manifests/" in listing["manifest"]
    assert sorted(xcom_return(run, "transcribe", i)["files_found"] for i in range(3)) == [3, 3, 4]
    assert sorted(xcom_return(run, "transcribe", i)["shard"] for i in range(3)) == ["0/3", "1/3", "2/3"]
    assert not Path(listing["manifest"].removeprefix("file://")).exists(), "removed once every shard succeeded"
    report = xcom_return(run, "report")
    assert (report["transcribed"], report["skipped"], report["failed"]) == (6, 4, 0)
    assert report["shards_reporting"] == 3
    assert states[("all_shards_succeeded", -1)] == "success"

    partition = tmp_path / "lake" / "transcripts" / f"dt={ds}"
    rows = local_rows(partition)
    check_ok_rows(rows, later, "linkai_sharded_transcription")
    assert {r["map_index"] for r in rows} == {0, 1, 2}  # every shard wrote its own rows into the partition


def xcom_bytes(dag_run) -> tuple[int, str]:
    """Bytes of every XCom a ``dag.test()`` run left in the metadata DB (as stored: JSON), and their text."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        values = session.scalars(
            select(XComModel.value).where(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id)
        ).all()
    text = "\n".join(json.dumps(v) for v in values)
    return len(text.encode()), text


def test_sharded_xcom_holds_counts_not_file_lists(example_dag, lake_env, linkai_conn, tmp_path):
    """XCom stays the same size whatever the number of files: 30 then 300 files, 4 shards each."""
    from bench.inputs import make_files

    lake_env(f"file://{tmp_path}/audio", f"file://{tmp_path}/lake/transcripts")
    dag = example_dag("linkai_sharded_transcription")
    sizes = {}
    for ds, n in (("2026-11-05", 30), ("2026-11-06", 300)):
        make_files(tmp_path / "audio" / ds, n, 2_000, seed=n, prefix=f"f{n}")
        run = dag.test(logical_date=day(ds), run_conf={"shards": 4, "source": f"file://{tmp_path}/audio/{ds}"})
        assert run.state == "success", ti_states(run)
        assert xcom_return(run, "report")["transcribed"] == n
        sizes[n], text = xcom_bytes(run)
        assert ".wav" not in text  # no file name travels through XCom
    assert linkai_conn.stats()["transcriptions_ok"] == 330  # one request per file
    assert sizes[300] <= 16 * 1024
    assert abs(sizes[300] - sizes[30]) <= 64, sizes  # a few more digits in the counts, nothing per file


def test_analytics_keeps_the_current_transcript_per_file(example_dag, lake_env, tmp_path):
    """A file that failed and then succeeded counts once, as ok; failures are grouped by reason."""
    lake = lake_env(f"file://{tmp_path}/audio", f"file://{tmp_path}/lake/transcripts")
    root = tmp_path / "lake" / "transcripts"
    t0 = pendulum.datetime(2026, 10, 1, 1, tz="UTC")

    def row(uri, status, when, text=None, error=None, duration=None):
        return {
            "source_uri": uri,
            "status": status,
            "transcribed_at": when,
            "text": text,
            "error_type": error,
            "error_message": error and "boom",
            "audio_duration_s": duration,
            "source_size_bytes": 10,
        }

    writes = {
        "2026-10-01": [
            row("file:///a.wav", "failed", t0, error="ServerError"),
            row("file:///b.wav", "failed", t0, error="PayloadTooLargeError"),
            row("file:///c.wav", "ok", t0, text="hello there world", duration=1.5),
            row("file:///d.wav", "failed", t0, error="ServerError"),
        ],
        "2026-10-02": [
            row("file:///a.wav", "ok", t0.add(days=1), text="second try worked", duration=2.0),
            row("file:///e.mp3", "ok", t0.add(days=1), text="one", duration=None),
        ],
    }
    for dt, rows in writes.items():
        writer = TranscriptWriter(_local_fs(), f"{root}/dt={dt}")
        for r in rows:
            writer.add(r)
        writer.flush()

    run = example_dag("linkai_transcript_analytics").test(logical_date=day("2026-10-02"))
    assert run.state == "success"
    summary = read_summary_local(Path(lake.summary.removeprefix("file://")))
    day1, day2 = summary["2026-10-01"], summary["2026-10-02"]
    # a.wav moved on to 2026-10-02 as ok; b and d stay failed on 2026-10-01
    assert (day1["files"], day1["ok"], day1["failed"], day1["words"]) == (3, 1, 2, 3)
    assert day1["failure_reasons"] == [
        {"error_type": "PayloadTooLargeError", "files": 1},
        {"error_type": "ServerError", "files": 1},
    ]
    assert day1["attempt_rows"] == 4 and day1["audio_seconds"] == pytest.approx(1.5)
    assert day1["audio_seconds_billed"] == pytest.approx(1.5)  # failed attempts are not billed
    assert (day2["files"], day2["ok"], day2["failed"], day2["words"]) == (2, 2, 0, 4)
    assert day2["failure_reasons"] == [] and day2["files_with_duration"] == 1
    assert day2["audio_seconds"] == pytest.approx(2.0)
    assert day2["audio_seconds_billed"] == pytest.approx(2.0)
    # nothing was written inside the transcript dataset
    assert sorted(p.parent.name for p in root.glob("*/*.parquet")) == ["dt=2026-10-01", "dt=2026-10-02"]
    assert len(read_rows(_local_fs(), str(root))) == 6
    assert xcom_return(run, "summarize")["mode"] == "full"  # no triggering event: every day

    # A later run re-transcribes b.wav (failed on the 1st) into the 3rd: an incremental recompute for
    # that partition rewrites the 1st and the 3rd, not the 2nd, and gives what a full one gives.
    writer = TranscriptWriter(_local_fs(), f"{root}/dt=2026-10-03")
    writer.add(row("file:///b.wav", "ok", t0.add(days=2), text="split this time", duration=30.0))
    writer.flush()
    summary_dir = Path(lake.summary.removeprefix("file://"))
    untouched = (summary_dir / "dt=2026-10-02" / "summary.parquet").stat().st_mtime_ns
    conf = {"partitions": ["dt=2026-10-03"]}
    incremental = example_dag("linkai_transcript_analytics").test(logical_date=day("2026-10-03"), run_conf=conf)
    assert incremental.state == "success"
    result = xcom_return(incremental, "summarize")
    assert (result["mode"], result["days_written"]) == ("incremental", ["2026-10-01", "2026-10-03"])
    assert (summary_dir / "dt=2026-10-02" / "summary.parquet").stat().st_mtime_ns == untouched
    kept = read_summary_local(summary_dir)
    assert kept["2026-10-01"]["files"] == 2 and kept["2026-10-03"]["ok"] == 1
    full = example_dag("linkai_transcript_analytics").test(logical_date=day("2026-10-04"))
    assert xcom_return(full, "summarize")["mode"] == "full"
    drop = ("generated_at",)
    assert {d: {k: v for k, v in r.items() if k not in drop} for d, r in read_summary_local(summary_dir).items()} == {
        d: {k: v for k, v in r.items() if k not in drop} for d, r in kept.items()
    }


def _local_fs():
    from fsspec.implementations.local import LocalFileSystem

    return LocalFileSystem()


# -- runs without a logical date, failed shards, Asset events (issue 11) --------------------------------


def asset_events(uri: str) -> list[dict]:
    """Every AssetEvent recorded for the Asset ``uri``: the source run and the extra."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.uri == uri)
        return [
            {"run_id": e.source_run_id, "dag_id": e.source_dag_id, "extra": e.extra} for e in session.scalars(query)
        ]


def test_manual_runs_without_logical_date_read_the_day_that_ended(
    example_dag, lake_env, linkai_conn, local_audio, tmp_path
):
    """Airflow 3's manual trigger has no logical date, so no `ds`: the nightly DAG reads the day that
    ended before it was triggered (UTC), like the scheduled run of that night; the sharded DAG files
    under the day it was triggered."""
    triggered = pendulum.datetime(2026, 11, 22, 9, 30, tz="UTC")
    lake_env(f"file://{local_audio.root}", f"file://{tmp_path}/lake/transcripts")
    inputs = local_audio("2026-11-21")
    local_audio("2026-11-22")  # the day still running is not this run's business

    run = example_dag("linkai_nightly_transcription").test(logical_date=None, run_after=triggered)
    assert run.logical_date is None
    assert run.state == "success", ti_states(run)
    check_ok_rows(
        local_rows(tmp_path / "lake" / "transcripts" / "dt=2026-11-21"), inputs, "linkai_nightly_transcription"
    )
    assert sorted(p.name for p in (tmp_path / "lake" / "transcripts").iterdir()) == ["dt=2026-11-21"]

    sharded = example_dag("linkai_sharded_transcription").test(
        logical_date=None, run_after=triggered, run_conf={"shards": 2}
    )
    assert sharded.state == "success", ti_states(sharded)
    assert xcom_return(sharded, "report")["transcribed"] == 10  # the 2026-11-22 files; 11-21 done already
    assert len(local_rows(tmp_path / "lake" / "transcripts" / "dt=2026-11-22")) == 10


def test_sharded_run_with_a_failed_shard_fails_and_still_reports(
    example_dag, lake_env, linkai_conn, local_audio, tmp_path, speech
):
    ds = "2026-11-17"
    lake = lake_env(f"file://{local_audio.root}", f"file://{tmp_path}/lake/transcripts")
    local_audio(ds, sorted(speech.truth)[:3])
    (local_audio.root / ds / "zz_broken.wav").write_text("this is not audio " * 20)

    run = example_dag("linkai_sharded_transcription").test(logical_date=day(ds), run_conf={"shards": 2})
    states = ti_states(run)
    assert sorted(s for k, s in states.items() if k[0] == "transcribe") == ["failed", "success"]
    assert states[("report", -1)] == "success"
    assert states[("all_shards_succeeded", -1)] == "failed"
    assert run.state == "failed"
    report = xcom_return(run, "report")
    assert (report["shards"], report["shards_reporting"]) == (2, 1)
    # the good shard's rows are in the dataset and announced once; the failed shard's rows are written too
    rows = local_rows(tmp_path / "lake" / "transcripts" / f"dt={ds}")
    assert sorted(r["status"] for r in rows) == ["failed", "ok", "ok", "ok"]
    (event,) = asset_events(lake.transcripts)
    assert event["run_id"] == run.run_id and event["extra"]["rows_written"] == report["rows_written"] > 0


def test_one_asset_event_per_run_that_wrote_rows(example_dag, lake_env, linkai_conn, local_audio, tmp_path):
    lake = lake_env(f"file://{local_audio.root}", f"file://{tmp_path}/lake/transcripts")
    local_audio("2026-11-18")
    local_audio("2026-11-19")
    nightly = example_dag("linkai_nightly_transcription")
    sharded = example_dag("linkai_sharded_transcription")

    first = nightly.test(logical_date=day("2026-11-18"))
    assert first.state == "success"
    rerun = nightly.test(logical_date=day("2026-11-18"))  # sends nothing, writes nothing
    assert rerun.state == "success" and xcom_return(rerun, "report")["rows_written"] == 0
    shards = sharded.test(logical_date=day("2026-11-19"), run_conf={"shards": 3})  # the other day's 10 files
    assert shards.state == "success"
    assert sorted(k[1] for k in ti_states(shards) if k[0] == "transcribe") == [0, 1, 2]
    shards_again = sharded.test(logical_date=day("2026-11-20"), run_conf={"shards": 3})  # all done already
    assert shards_again.state == "success" and xcom_return(shards_again, "report")["rows_written"] == 0

    events = asset_events(lake.transcripts)
    assert [(e["dag_id"], e["run_id"]) for e in events] == [
        ("linkai_nightly_transcription", first.run_id),
        ("linkai_sharded_transcription", shards.run_id),
    ]
    assert [e["extra"]["rows_written"] for e in events] == [10, 10]


def test_report_adds_audio_seconds_without_float_noise(tmp_path):
    module = runpy.run_path(str(REPO / "dags" / "linkai_sharded_transcription.py"))
    shards = [{"audio_seconds": 27.509, "transcribed": 1}, None, {"audio_seconds": 36.689}, {"audio_seconds": 1.802}]
    assert sum(s["audio_seconds"] for s in shards if s) == 66.00000000000001  # what the report used to print
    total = module["add_up"](shards, 4)
    assert repr(total["audio_seconds"]) == "66.0"
    assert (total["transcribed"], total["shards"], total["shards_reporting"]) == (1, 4, 3)


# -- S3 (moto server) -----------------------------------------------------------------------------------


def test_nightly_and_analytics_on_s3_with_aws_connection(
    example_dag, lake_env, linkai_conn, conn_env, moto_endpoint, s3_bucket, speech
):
    fs, bucket = s3_bucket
    ds = "2026-11-12"
    conn_env(aws_moto=aws_conn(moto_endpoint))
    lake = lake_env(f"s3://{bucket}/calls", f"s3://{bucket}/lake/transcripts", conn_id="aws_moto")
    inputs = upload(fs, speech, sorted(speech.truth), f"{bucket}/calls/{ds}")

    run = example_dag("linkai_nightly_transcription").test(logical_date=day(ds))
    assert run.state == "success"
    assert ti_states(run) == nightly_ok()
    fs.invalidate_cache()
    rows = read_rows(fs, f"{bucket}/lake/transcripts/dt={ds}").to_pylist()
    check_ok_rows(rows, inputs, "linkai_nightly_transcription")

    arun = example_dag("linkai_transcript_analytics").test(logical_date=day(ds))
    assert arun.state == "success"
    assert ti_states(arun) == {("summarize", -1): "success"}
    fs.invalidate_cache()
    assert lake.summary == f"s3://{bucket}/lake/transcript_summary"
    (got,) = pq.read_table(f"{bucket}/lake/transcript_summary/dt={ds}/summary.parquet", filesystem=fs).to_pylist()
    check_summary({ds: got}, [{**r, "dt": ds} for r in rows])
    inside = [p for p in fs.find(f"{bucket}/lake/transcripts") if "/_linkai/" not in p]  # staging: key index
    assert all(f"/dt={ds}/part-" in p for p in inside), "summary is beside, not inside"


def test_sharded_on_s3_with_fsspec_connection(
    example_dag, lake_env, linkai_conn, conn_env, moto_endpoint, s3_bucket, speech
):
    fs, bucket = s3_bucket
    ds = "2026-11-13"
    conn_env(s3_opts=fsspec_conn(moto_endpoint))
    lake_env(f"s3://{bucket}/nowhere", f"s3://{bucket}/transcripts")  # params below override the Variable
    names = sorted(speech.truth)
    inputs = {
        **upload(fs, speech, names[:5], f"{bucket}/bulk/a"),
        **upload(fs, speech, names[5:], f"{bucket}/bulk/b/c"),
    }

    run = example_dag("linkai_sharded_transcription").test(
        logical_date=day(ds),
        run_conf={
            "source": f"s3://{bucket}/bulk/",
            "source_conn_id": "s3_opts",
            "destination_conn_id": "s3_opts",
            "shards": 2,
        },
    )
    assert run.state == "success"
    assert ti_states(run) == {
        ("list_shards", -1): "success",
        ("transcribe", 0): "success",
        ("transcribe", 1): "success",
        ("report", -1): "success",
        ("all_shards_succeeded", -1): "success",
    }
    fs.invalidate_cache()
    rows = read_rows(fs, f"{bucket}/transcripts").to_pylist()
    check_ok_rows(rows, inputs, "linkai_sharded_transcription")
    assert {r["map_index"] for r in rows} == {0, 1}
    assert all(f"/dt={ds}/" in p for p in fs.find(f"{bucket}/transcripts"))
    assert xcom_return(run, "report")["transcribed"] == 10


# -- the real recognizer -------------------------------------------------------------------------------


@pytest.mark.whisper
def test_nightly_with_whisper_engine_recognises_words(
    example_dag, lake_env, conn_env, linkai_server_factory, local_audio, tmp_path, speech
):
    server = linkai_server_factory(engine="whisper")
    conn_env(linkai_default=json.loads(server.airflow_conn_json))
    clips = [name for name in sorted(speech.truth) if name.endswith((".wav", ".mp3"))]
    ds = "2026-11-14"
    inputs = local_audio(ds, clips)
    lake_env(f"file://{local_audio.root}", f"file://{tmp_path}/lake/transcripts")

    run = example_dag("linkai_nightly_transcription").test(logical_date=day(ds))
    assert run.state == "success"
    rows = local_rows(tmp_path / "lake" / "transcripts" / f"dt={ds}")
    assert sorted(r["source_uri"] for r in rows) == sorted(inputs)
    for row in rows:
        spoken = set(speech.truth[row["source_uri"].rsplit("/", 1)[1]].split())
        heard = set(row["text"].lower().replace(".", " ").replace(",", " ").split())
        assert row["status"] == "ok"
        assert len(spoken & heard) >= len(spoken) // 2, (row["text"], spoken)


# -- GCS (gcp-storage-emulator) -------------------------------------------------------------------------


def test_nightly_and_analytics_on_gcs_with_fsspec_connection(
    example_dag, lake_env, linkai_conn, conn_env, gcs_endpoint, gcsfs_factory, speech
):
    fs = gcsfs_factory()
    bucket = "lake-gcs-examples"
    fs.mkdir(bucket)
    ds = "2026-11-16"
    conn_env(gcs_emulator={"conn_type": "generic", "extra": {"endpoint_url": gcs_endpoint, "token": "anon"}})
    lake_env(f"gs://{bucket}/audio", f"gs://{bucket}/transcripts", conn_id="gcs_emulator")
    names = sorted(speech.truth)[:4]
    inputs = {}
    for name in names:
        data = (speech.dir / name).read_bytes()
        fs.pipe_file(f"{bucket}/audio/{ds}/{name}", data)
        inputs[f"gs://{bucket}/audio/{ds}/{name}"] = data

    run = example_dag("linkai_nightly_transcription").test(logical_date=day(ds))
    assert run.state == "success"
    fs.invalidate_cache()
    rows = read_rows(fs, f"{bucket}/transcripts/dt={ds}").to_pylist()
    check_ok_rows(rows, inputs, "linkai_nightly_transcription")

    arun = example_dag("linkai_transcript_analytics").test(logical_date=day(ds))
    assert arun.state == "success"
    fs.invalidate_cache()
    with fs.open(f"{bucket}/transcript_summary/dt={ds}/summary.parquet", "rb") as fh:
        (got,) = pq.read_table(fh).to_pylist()
    check_summary({ds: got}, [{**r, "dt": ds} for r in rows])


# -- the day a run reads (issue 19) ---------------------------------------------------------------------


def test_the_run_due_at_midnight_covers_the_day_that_ended(example_dag, lake_env, tmp_path):
    """What the scheduler computes for the DAG as parsed: Airflow's own core timetable, decoded from the
    serialized DAG, plans the run due at 00:00 on the 29th with the 28th as its data interval and
    logical date; run_day then reads and files under the 28th."""
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable
    from airflow.timetables.base import DataInterval, TimeRestriction

    from linkai_provider.nightly import run_day

    lake_env(f"file://{tmp_path}/audio", f"file://{tmp_path}/transcripts")
    timetable = decode_timetable(encode_timetable(example_dag("linkai_nightly_transcription").timetable))
    last = DataInterval(day("2026-11-27"), day("2026-11-28"))
    info = timetable.next_dagrun_info(
        last_automated_data_interval=last, restriction=TimeRestriction(day("2026-01-01"), None, catchup=False)
    )
    assert info.run_after == pendulum.datetime(2026, 11, 29, tz="UTC")  # due at midnight, as the day ends
    assert info.data_interval == DataInterval(day("2026-11-28"), day("2026-11-29"))
    assert info.logical_date == day("2026-11-28")

    class Run:  # the fields of the dag_run the task sees
        run_type, data_interval_start, data_interval_end = "scheduled", *info.data_interval
        logical_date, run_after = info.logical_date, info.run_after

    assert str(run_day(Run)) == "2026-11-28"


def test_a_file_that_lands_late_is_sent_by_the_next_run(
    example_dag, lake_env, linkai_conn, local_audio, tmp_path, speech
):
    """The run for the 10th reads the 10th; a file that lands in the 10th's folder afterwards is sent by
    the run for the 11th (which looks back over the 10th) and filed under the 10th; nothing else is sent
    twice (the server's counters)."""
    names = sorted(speech.truth)
    lake_env(f"file://{local_audio.root}", f"file://{tmp_path}/lake/transcripts")
    first_day = local_audio("2026-11-10", names[:3])
    nightly = example_dag("linkai_nightly_transcription")
    first = nightly.test(logical_date=day("2026-11-10"))
    assert first.state == "success" and ti_states(first) == nightly_ok(days=1)
    assert linkai_conn.stats()["requests_total"] == 3

    late = local_audio("2026-11-10", names[3:4])  # lands after that night's run
    second_day = local_audio("2026-11-11", names[4:6])
    second = nightly.test(logical_date=day("2026-11-11"))
    assert second.state == "success" and ti_states(second) == nightly_ok(days=2)  # the 11th, and the 10th again
    assert linkai_conn.stats()["requests_total"] == 3 + 1 + 2  # the late file and the new day, nothing else
    root = tmp_path / "lake" / "transcripts"
    check_ok_rows(local_rows(root / "dt=2026-11-10"), {**first_day, **late}, "linkai_nightly_transcription")
    check_ok_rows(local_rows(root / "dt=2026-11-11"), second_day, "linkai_nightly_transcription")
    report = xcom_return(second, "report")
    assert (report["transcribed"], report["skipped_existing"], report["days"]) == (3, 3, 2)


def test_lookback_reads_only_the_days_whose_folders_exist_and_a_missing_day_fails(
    example_dag, lake_env, linkai_conn, local_audio, tmp_path, speech
):
    names = sorted(speech.truth)
    lake_env(f"file://{local_audio.root}", f"file://{tmp_path}/lake/transcripts")
    local_audio("2026-11-07", names[:1])  # outside a 3-day lookback from the 10th
    local_audio("2026-11-08", names[1:2])
    nightly = example_dag("linkai_nightly_transcription")
    missing = nightly.test(logical_date=day("2026-11-10"))  # the 10th's folder does not exist
    assert missing.state == "failed" and ti_states(missing)[("plan_days", -1)] == "failed"
    assert linkai_conn.stats()["requests_total"] == 0

    local_audio("2026-11-10", names[2:3])
    run = nightly.test(logical_date=day("2026-11-10"))
    assert run.state == "success" and ti_states(run) == nightly_ok(days=2)  # the 10th and the 8th; no 9th
    assert xcom_return(run, "plan_days") == [
        {
            "source": f"file://{local_audio.root}/2026-11-10/",
            "destination": f"file://{tmp_path}/lake/transcripts/dt=2026-11-10/",
        },
        {
            "source": f"file://{local_audio.root}/2026-11-08/",
            "destination": f"file://{tmp_path}/lake/transcripts/dt=2026-11-08/",
        },
    ]
    assert linkai_conn.stats()["requests_total"] == 2
