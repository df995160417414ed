"""TranscribeAudioOperator end to end: real Airflow (``dag.test()`` on SQLite), real HTTP to
linkai-server on loopback, local disk, S3 (moto server) and GCS (gcp-storage-emulator); the output
read back with DuckDB and pyarrow and every row checked against its input file."""

from __future__ import annotations

import shutil

import duckdb
import pyarrow.parquet as pq
import pytest

from linkai_provider.dataset import SCHEMA
from tests.conftest import FORMATS
from tests.helpers import check_ok_rows, get_dag, task_states, xcom_return

pytestmark = pytest.mark.usefixtures("airflow_home")
DS = "2026-11-20"


def run_transcribe(**conf):
    dag = get_dag("linkai_test_transcribe")
    run = dag.test(run_conf=conf)
    return run, task_states(run)["transcribe"], xcom_return(run, "transcribe")


def check_rows(rows: list[dict], inputs: dict[str, bytes]) -> None:
    check_ok_rows(rows, inputs, "linkai_test_transcribe")
    for row in rows:
        assert (row["attempts"], row["map_index"]) == (1, -1) and row["try_number"] >= 1


def test_local_folder_all_formats(tmp_path, speech, linkai_conn):
    audio = tmp_path / "in"
    shutil.copytree(speech.dir, audio)
    (audio / "notes.txt").write_text("not audio")
    (audio / "LOUD.WAV").write_bytes((speech.dir / "clip_06.wav").read_bytes())  # case-insensitive
    out = tmp_path / "transcripts"

    run, state, summary = run_transcribe(source=str(audio), destination=f"{out}/dt={DS}")

    assert state == "success", run
    inputs = {f"file://{p}": p.read_bytes() for p in audio.iterdir() if p.suffix != ".txt"}
    assert summary == {
        "destination": f"file://{out}/dt={DS}",
        "files_found": 12,
        "transcribed": 11,
        "skipped": 1,
        "skipped_existing": 0,
        "skipped_unsupported": 1,
        "failed": 0,
        "not_sent": 0,
        "audio_seconds": summary["audio_seconds"],
        "held_back": 0,
        "split": 0,
        "pieces_reused": 0,
        "requests": 11,
        "rate_limited": 0,
        "concurrency": summary["concurrency"],
        "concurrency_min": summary["concurrency_min"],
        "parts_written": 1,
        "rows_written": 11,
        "journals_adopted": 0,
    }
    assert 1 <= summary["concurrency_min"] <= summary["concurrency"] <= 8
    # DuckDB reads the dataset as is, Hive partition included
    con = duckdb.connect()
    rel = con.sql(f"SELECT * FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true)")
    rows = [dict(zip(rel.columns, values, strict=True)) for values in rel.fetchall()]
    assert {str(r["dt"]) for r in rows} == {DS}
    check_rows(rows, inputs)
    # pyarrow sees the fixed schema, types and all
    table = pq.read_table(next(out.rglob("*.parquet")))
    assert table.schema.remove_metadata().equals(SCHEMA.remove_metadata())
    durations = {r["audio_format"]: r["audio_duration_s"] for r in rows}
    for fmt in FORMATS:
        assert 1.0 < durations[fmt] < 10.0, (fmt, durations[fmt])
    # An MPEG program stream has no duration in its header: PyAV's demuxer measures it, as decoding would
    import av

    mpeg = next(p for p in audio.iterdir() if p.suffix == ".mpeg")
    with av.open(str(mpeg)) as container:
        decoded = sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0))
    assert abs(durations["mpeg"] - decoded) < 0.05
    assert summary["audio_seconds"] > 10
    assert linkai_conn.stats()["by_status"] == {"200": 11}


def test_rerun_is_incremental_and_changed_file_is_sent_again(tmp_path, speech, linkai_conn):
    audio = tmp_path / "in"
    shutil.copytree(speech.dir, audio)
    dest = f"{tmp_path}/out/dt={DS}"
    assert run_transcribe(source=str(audio), destination=dest)[1] == "success"
    linkai_conn.reset_stats()

    run, state, summary = run_transcribe(source=str(audio), destination=dest)
    assert state == "success"
    assert (summary["transcribed"], summary["skipped_existing"]) == (0, len(FORMATS))
    assert linkai_conn.stats()["requests_total"] == 0  # nothing paid twice

    changed = audio / "clip_00.mp3"
    changed.write_bytes(changed.read_bytes() + b"\0" * 10)  # a new version: new size and mtime
    run, state, summary = run_transcribe(source=str(audio), destination=dest)
    assert (summary["transcribed"], summary["skipped_existing"]) == (1, len(FORMATS) - 1)
    assert linkai_conn.stats()["requests_total"] == 1


def test_s3_source_and_destination_through_moto(tmp_path, speech, linkai_conn, conn_env, moto_endpoint, s3fs_factory):
    s3 = s3fs_factory()
    s3.mkdir("audio-in")
    s3.mkdir("lake")
    inputs = {}
    for path in sorted(speech.dir.iterdir()):
        key = f"audio-in/calls/{DS}/{path.name}"
        s3.pipe_file(key, path.read_bytes())
        inputs[f"s3://{key}"] = path.read_bytes()
    s3.pipe_file(f"audio-in/calls/{DS}/readme.md", b"# not audio")
    conn_env(
        minio_s3={
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
        }
    )

    run, state, summary = run_transcribe(
        source=f"s3://audio-in/calls/{DS}/",
        destination=f"s3://lake/transcripts/dt={DS}",
        source_conn_id="minio_s3",
        destination_conn_id="minio_s3",
    )

    assert state == "success", run
    assert (summary["transcribed"], summary["skipped_unsupported"]) == (len(FORMATS), 1)
    assert summary["destination"] == f"s3://lake/transcripts/dt={DS}"
    fs = s3fs_factory()
    parts = fs.glob("lake/transcripts/**/*.parquet")
    assert len(parts) == 1 and not fs.glob("lake/transcripts/**/.*")
    con = duckdb.connect()
    con.register_filesystem(fs)
    rel = con.sql("SELECT * FROM read_parquet('s3://lake/transcripts/*/*.parquet', hive_partitioning = true)")
    rows = [dict(zip(rel.columns, values, strict=True)) for values in rel.fetchall()]
    check_rows(rows, inputs)
    assert all(r["source_fingerprint"].startswith("etag:") for r in rows)


def test_gcs_source_and_destination_through_emulator(
    tmp_path, speech, linkai_conn, conn_env, gcs_endpoint, gcsfs_factory
):
    gcs = gcsfs_factory()
    gcs.mkdir("gcs-audio")
    inputs = {}
    for path in sorted(speech.dir.iterdir()):
        key = f"gcs-audio/in/{path.name}"
        gcs.pipe_file(key, path.read_bytes())
        inputs[f"gs://{key}"] = path.read_bytes()
    conn_env(
        gcs_emulator={
            "conn_type": "generic",
            "extra": {"endpoint_url": gcs_endpoint, "token": "anon", "project": "test"},
        }
    )

    run, state, summary = run_transcribe(
        source="gs://gcs-audio/in",
        destination=f"gs://gcs-audio/transcripts/dt={DS}",
        source_conn_id="gcs_emulator",
        destination_conn_id="gcs_emulator",
    )

    assert state == "success", run
    assert summary["transcribed"] == len(FORMATS)
    fs = gcsfs_factory()
    tables = [pq.read_table(fs.open(p, "rb")) for p in fs.glob("gcs-audio/transcripts/**/*.parquet")]
    rows = [row for t in tables for row in t.to_pylist()]
    check_rows(rows, inputs)


def test_glob_and_list_sources(tmp_path, speech, linkai_conn):
    audio = tmp_path / "in"
    shutil.copytree(speech.dir, audio)
    run, state, summary = run_transcribe(
        source=[str(audio / "*.wav"), str(audio / "clip_00.mp3"), str(audio / "clip_0*.mp3")],
        destination=str(tmp_path / "out"),
    )
    assert state == "success"
    assert (summary["files_found"], summary["transcribed"]) == (2, 2)  # duplicates across sources collapse


def test_incremental_scope_covers_every_partition(tmp_path, speech, linkai_conn):
    """Default scope is this run's partition; pointing it at the dataset root skips files done on
    any earlier day (a late re-delivery of yesterday's files costs nothing)."""
    audio = tmp_path / "in"
    shutil.copytree(speech.dir, audio)
    root = tmp_path / "lake"
    assert run_transcribe(source=str(audio), destination=f"{root}/dt=2026-11-19")[1] == "success"

    linkai_conn.reset_stats()
    _, state, summary = run_transcribe(
        source=str(audio), destination=f"{root}/dt=2026-11-20", incremental_scope=str(root)
    )
    assert (state, summary["skipped_existing"], summary["transcribed"]) == ("success", len(FORMATS), 0)
    assert linkai_conn.stats()["requests_total"] == 0

    _, state, summary = run_transcribe(source=str(audio), destination=f"{root}/dt=2026-11-21")
    assert summary["transcribed"] == len(FORMATS)  # default scope: only dt=2026-11-21 is checked
