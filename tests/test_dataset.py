"""The transcript dataset writer and reader on real filesystems (local disk, memory, S3 via moto)."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone

import duckdb
import fsspec
import pyarrow.parquet as pq
import pytest

from linkai_provider.dataset import SCHEMA, TranscriptWriter, completed_keys, part_files, read_rows


def row(uri: str, status: str = "ok", fingerprint: str = "size:1;mtime:1", **kw) -> dict:
    base = {name: None for name in SCHEMA.names}
    base.update(
        source_uri=uri,
        source_fingerprint=fingerprint,
        status=status,
        text="hello" if status == "ok" else None,
        error_type=None if status == "ok" else "InvalidRequestError",
        transcribed_at=datetime.now(timezone.utc),
        attempts=1,
    )
    base.update(kw)
    return base


def test_checkpoints_by_row_count_and_names_never_collide(tmp_path):
    fs = fsspec.filesystem("file")
    a = TranscriptWriter(fs, str(tmp_path), part_prefix="part-run1", checkpoint_rows=3)
    b = TranscriptWriter(fs, str(tmp_path), part_prefix="part-run1", checkpoint_rows=3)  # same run, other shard
    for i in range(7):
        a.add(row(f"file:///a/{i}.wav"))
        b.add(row(f"file:///b/{i}.wav"))
    assert len(a.parts) == 2 and len(b.parts) == 2  # 3 + 3 flushed, 1 buffered each
    a.close()
    b.close()
    files = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert len(files) == 6 and len(set(files)) == 6
    assert len(list((tmp_path / "_linkai" / "keys").iterdir())) == 6  # each part's key index (one group)
    assert not [f for f in files if f.startswith(".")]  # no temporary file left behind
    assert read_rows(fs, str(tmp_path)).num_rows == 14


def test_checkpoint_by_time(tmp_path, monkeypatch):
    import linkai_provider.dataset as dataset

    clock = [1000.0]
    monkeypatch.setattr(dataset.time, "monotonic", lambda: clock[0])
    writer = TranscriptWriter(fsspec.filesystem("file"), str(tmp_path), checkpoint_rows=1000, checkpoint_seconds=30)
    writer.add(row("file:///x/1.wav"))
    assert writer.parts == []
    clock[0] += 31
    writer.add(row("file:///x/2.wav"))
    assert len(writer.parts) == 1 and writer.rows_written == 2


def test_parts_are_readable_by_duckdb_with_exact_schema(tmp_path):
    writer = TranscriptWriter(fsspec.filesystem("file"), str(tmp_path / "dt=2026-11-20"))
    writer.add(row("file:///x/1.wav", error_code=None, map_index=-1, try_number=1))
    writer.add(row("file:///x/2.wav", status="failed", error_code=400, error_message="bad audio"))
    writer.close()
    table = pq.read_table(writer.parts[0])
    assert table.schema.remove_metadata().equals(SCHEMA.remove_metadata())
    assert pq.read_metadata(writer.parts[0]).metadata[b"linkai.schema_version"] == b"3"
    con = duckdb.connect()
    got = con.sql(
        f"SELECT dt, status, error_code, typeof(transcribed_at) FROM read_parquet('{tmp_path}/*/*.parquet', "
        "hive_partitioning = true) ORDER BY status DESC"
    ).fetchall()
    assert [(str(g[0]), *g[1:]) for g in got] == [
        ("2026-11-20", "ok", None, "TIMESTAMP WITH TIME ZONE"),
        ("2026-11-20", "failed", 400, "TIMESTAMP WITH TIME ZONE"),
    ]


def test_completed_keys_only_ok_rows_and_ignores_hidden_files(tmp_path):
    fs = fsspec.filesystem("file")
    writer = TranscriptWriter(fs, str(tmp_path / "dt=2026-11-19"))
    writer.add(row("file:///a.wav"))
    writer.add(row("file:///b.wav", status="failed"))
    writer.add(row("file:///c.wav", fingerprint="size:2;mtime:2"))
    writer.close()
    (tmp_path / ".part-half-written.parquet.tmp").write_bytes(b"PAR1 garbage")
    (tmp_path / "_SUCCESS").write_bytes(b"")
    assert completed_keys(fs, str(tmp_path)) == {
        ("file:///a.wav", "size:1;mtime:1"),
        ("file:///c.wav", "size:2;mtime:2"),
    }
    assert completed_keys(fs, str(tmp_path / "missing")) == set()
    assert len(part_files(fs, str(tmp_path))) == 1


def test_check_writable_fails_on_readonly_destination(tmp_path):
    if os.geteuid() == 0:
        # root ignores permission bits: use a path under a regular file instead
        blocker = tmp_path / "file"
        blocker.write_text("x")
        target = str(blocker / "out")
    else:
        tmp_path.chmod(stat.S_IRUSR | stat.S_IXUSR)
        target = str(tmp_path / "out")
    writer = TranscriptWriter(fsspec.filesystem("file"), target)
    with pytest.raises(PermissionError, match="not writable"):
        writer.check_writable()


def test_object_store_parts_are_single_puts(s3fs_factory):
    fs = s3fs_factory()
    fs.mkdir("dataset-bucket")
    writer = TranscriptWriter(fs, "dataset-bucket/transcripts/dt=2026-11-20", checkpoint_rows=2)
    writer.check_writable()
    for i in range(5):
        writer.add(row(f"s3://in/{i}.wav"))
    writer.close()
    objects = fs.find("dataset-bucket")
    parts = [o for o in objects if o.endswith(".parquet")]
    keys = [o for o in objects if "/_linkai/keys/" in o and o.endswith(".keys")]  # each part's key index
    assert len(parts) == 3 and len(keys) == 3 and len(objects) == 6  # no probe or temp left
    assert len(completed_keys(fs, "dataset-bucket/transcripts")) == 5


def test_planning_on_s3_exits_cleanly_in_fresh_processes(s3fs_factory, moto_endpoint):
    """Reading the dataset through pyarrow's s3fs wrapper used to abort some processes at exit
    ("terminate called without an active exception") after the work was done: a task that had
    finished would die. Planning must leave a process that exits with 0, every time."""
    import subprocess
    import sys

    fs = s3fs_factory()
    fs.mkdir("exit-bucket")
    writer = TranscriptWriter(fs, "exit-bucket/t/dt=2026-11-20", checkpoint_rows=3)
    for i in range(30):
        writer.add(row(f"s3://in/{i}.wav"))
    writer.close()
    fs.rm([o for o in fs.find("exit-bucket") if "/_linkai/keys/" in o])  # parts as an older version left them
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": moto_endpoint}}
    script = (
        "import s3fs; from linkai_provider.dataset import completed_keys; "
        "from linkai_provider.planning import done_keys; "
        f"fs = s3fs.S3FileSystem(**{options!r}); "
        "assert len(completed_keys(fs, 'exit-bucket/t')) == 30; "
        "assert len(done_keys(fs, 'exit-bucket/t', [(f's3://in/{i}.wav', 'size:1;mtime:1') for i in range(40)])) == 30"
    )
    for _ in range(12):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
