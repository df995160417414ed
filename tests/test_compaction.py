"""One part file per task try: compaction of own and adopted journals, SIGKILLed writers, a kill
during compaction, and readers running meanwhile (local disk and S3 on moto)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import fsspec
import pyarrow.parquet as pq
import pytest

from linkai_provider import journal as journal_module
from linkai_provider.dataset import SCHEMA, completed_keys, part_files, read_rows
from linkai_provider.staging import JOURNALS_KEY
from tests.test_journal import ident, journal, journal_ids, row, uris

REPO = Path(__file__).resolve().parent.parent

# A writer that appends one row at a time, forever, until it is SIGKILLed. It prints "ready" once
# some rows are durable, so the kill lands mid-stream with segments on the store.
CHILD = r"""
import json, sys, time
from datetime import datetime, timezone
import fsspec
from linkai_provider.dataset import SCHEMA
from linkai_provider.journal import Journal, WriterIdentity
cfg = json.loads(sys.argv[1])
if cfg["endpoint"]:
    import s3fs
    fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": cfg["endpoint"]})
else:
    fs = fsspec.filesystem("file")
j = Journal(fs, cfg["root"], WriterIdentity.new(**cfg["identity"]))
j.open()
i = 0
while True:
    row = dict.fromkeys(SCHEMA.names)
    row.update(source_uri=f"file:///killed/{i}.wav", source_fingerprint="fp1", status="ok",
               transcribed_at=datetime.now(timezone.utc))
    j.append([row])
    i += 1
    if i == 30:
        j.flush()
        print("ready", flush=True)
    time.sleep(0.002)
"""


def run_and_kill(root: str, identity: dict, endpoint: str | None = None) -> None:
    cfg = json.dumps({"root": root, "identity": identity, "endpoint": endpoint})
    child = subprocess.Popen([sys.executable, "-c", CHILD, cfg], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        threading.Event().wait(0.2)  # let it write a few more segments
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(60)


def assert_each_once(table, expected: list[str]) -> None:
    got = uris(table)
    assert len(got) == len(set(got)), "a row appears twice"
    assert got == sorted(expected)


@pytest.mark.parametrize("batch", [1, 7])
def test_many_small_batches_become_one_part(tmp_path, batch):
    fs, root = fsspec.filesystem("file"), str(tmp_path / "dt=2026-11-24")
    j = journal(fs, root)
    appended = []
    for i in range(0, 140, batch):
        rows = [row(f"file:///in/{k}.wav") for k in range(i, min(i + batch, 140))]
        j.append(rows)
        appended += [r["source_uri"] for r in rows]
        if (i // batch) % 3 == 0:
            j.flush()  # force many segments
    result = j.close()
    parts = part_files(fs, root)
    assert parts == [f"{root}/part-{j.identity.writer_id}.parquet"] and result.rows == 140
    assert j.stats.writes > 5  # it really was many segments
    table = pq.read_table(parts[0])
    assert table.schema.remove_metadata().equals(SCHEMA.remove_metadata())
    meta = pq.read_metadata(parts[0]).metadata
    assert meta[b"linkai.schema_version"] == b"3" and json.loads(meta[JOURNALS_KEY]) == [j.identity.writer_id]
    assert_each_once(table, appended)
    assert journal_ids(fs, root) == [] and not [n for n in os.listdir(root) if n.startswith(".")]


def test_no_rows_no_part(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    result = journal(fs, root).close()
    assert result.part_url is None and result.rows == 0
    assert part_files(fs, root) == [] and journal_ids(fs, root) == []


TI = {"dag_id": "d", "task_id": "t", "run_id": "scheduled__2026-11-24", "map_index": 2}


@pytest.mark.parametrize(
    "next_writer",
    [
        {**TI, "try_number": 2},  # Airflow's retry of the same task instance
        {**TI, "run_id": "manual__2026-11-25", "try_number": 1},  # a new run: the killed pid is gone
    ],
    ids=["next-try", "new-run"],
)
def test_a_sigkilled_writers_rows_are_counted_and_compacted_once(tmp_path, next_writer):
    fs, root = fsspec.filesystem("file"), str(tmp_path / "dt=2026-11-24")
    run_and_kill(root, {**TI, "try_number": 1})
    killed = uris(read_rows(fs, root, journals=True))
    assert len(killed) >= 30 and read_rows(fs, root).num_rows == 0
    assert {u for u, _ in completed_keys(fs, root)} == set(killed)  # never sent again
    j = journal(fs, root, ident(**{k: v for k, v in next_writer.items() if k != "dag_id" and k != "task_id"}))
    assert len(j.adopted) == 1
    j.append([row("file:///next/0.wav")])
    result = j.close()
    assert result.rows == len(killed) + 1 and result.adopted == tuple(j.adopted)
    assert len(part_files(fs, root)) == 1
    assert_each_once(read_rows(fs, root), [*killed, "file:///next/0.wav"])
    assert journal_ids(fs, root) == []


def test_a_kill_between_part_and_journal_deletion_leaves_nothing_twice(tmp_path, monkeypatch):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    first = journal(fs, root, ident(run_id="first"))
    first.append([row(f"file:///a/{i}.wav") for i in range(5)])
    with monkeypatch.context() as patch:
        patch.setattr(journal_module, "remove_journal", lambda *a, **k: None)  # "killed" before deleting
        first.close()
    assert journal_ids(fs, root) == [first.identity.writer_id] and len(part_files(fs, root)) == 1
    second = journal(fs, root, ident(run_id="second"))
    assert second.adopted == [] and journal_ids(fs, root) == [second.identity.writer_id]  # garbage deleted
    second.append([row("file:///b/0.wav")])
    second.close()
    assert_each_once(read_rows(fs, root), [*(f"file:///a/{i}.wav" for i in range(5)), "file:///b/0.wav"])
    assert journal_ids(fs, root) == []


def test_a_reader_never_sees_a_row_twice_or_lose_one(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path / "dt=2026-11-24")
    earlier = journal(fs, root, ident(run_id="earlier"))
    earlier.append([row(f"file:///old/{i}.wav") for i in range(10)])
    earlier.close()
    stop, seen, errors = threading.Event(), [], []

    def reader() -> None:
        con = duckdb.connect()
        while not stop.is_set():
            try:
                seen.append(
                    con.execute(
                        f"SELECT count(*), count(DISTINCT source_uri) FROM read_parquet('{root}/*.parquet')"
                    ).fetchone()
                )
            except Exception as exc:  # any failure to read the partition is a finding
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        j = journal(fs, root, ident(run_id="now"))
        for i in range(300):
            j.append([row(f"file:///new/{i}.wav")])
        j.close()
        for _ in range(6000):  # until the reader has observed the end state too
            if len(seen) >= 3 and seen[-1][0] == 310:
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join(60)
    assert not errors
    assert all(total == distinct for total, distinct in seen)
    counts = [total for total, _ in seen]
    assert counts == sorted(counts) and set(counts) <= {10, 310} and counts[-1] == 310


# -- S3 (moto in server mode) -------------------------------------------------------------------------------
def test_s3_many_batches_one_part_and_killed_writer_adopted(s3fs_factory, moto_endpoint):
    fs = s3fs_factory()
    fs.mkdir("compaction-bucket")
    root = "compaction-bucket/transcripts/dt=2026-11-24"
    run_and_kill(root, {**TI, "try_number": 1}, endpoint=moto_endpoint)
    killed = uris(read_rows(fs, root, journals=True))
    assert len(killed) >= 30 and {u for u, _ in completed_keys(fs, "compaction-bucket/transcripts")} == set(killed)
    j = journal(fs, root, ident(run_id=TI["run_id"], map_index=2, try_number=2))
    assert len(j.adopted) == 1
    for i in range(60):
        j.append([row(f"s3://in/{i}.wav")])
        if i % 10 == 0:
            j.flush()
    result = j.close()
    assert result.part_url == f"s3://{root}/part-{j.identity.writer_id}.parquet"
    assert part_files(fs, root) == [f"{root}/part-{j.identity.writer_id}.parquet"]
    assert_each_once(read_rows(fs, root), [*killed, *(f"s3://in/{i}.wav" for i in range(60))])
    left = [p for p in fs.find("compaction-bucket") if not p.endswith(".parquet")]
    assert left and all("/_linkai/keys/" in p for p in left)  # staging area empty but for the part's key index
