"""The row journal: durability without blocking, heartbeats, and a destination that fails (local disk
and S3 on moto). Adoption and claims: test_staging.py; compaction and kills: test_compaction.py."""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import fsspec
import pytest

from linkai_provider import dataset
from linkai_provider.dataset import completed_keys, read_rows
from linkai_provider.journal import DestinationWriteError, Journal, WriterIdentity
from linkai_provider.staging import JOURNALS, list_journal, scan
from tests.test_dataset import row as dataset_row

FAST = {"heartbeat_seconds": 0.1, "stale_after_seconds": 30.0, "write_retry_seconds": 5.0, "claim_settle_seconds": 0.2}


def row(uri: str, status: str = "ok", fingerprint: str = "fp1") -> dict:
    return dataset_row(uri, status, fingerprint)


def ident(run_id: str | None = "manual__2026-11-24", try_number: int = 1, map_index: int = -1) -> WriterIdentity:
    return WriterIdentity.new(dag_id="d", task_id="t", run_id=run_id, map_index=map_index, try_number=try_number)


def journal(fs, root: str, identity: WriterIdentity | None = None, **kw) -> Journal:
    j = Journal(fs, root, identity or ident(), **{**FAST, **kw})
    j.check_writable()
    j.open()
    return j


def uris(table) -> list[str]:
    return sorted(table.column("source_uri").to_pylist())


def journal_ids(fs, root: str) -> list[str]:
    return sorted(wid for (_, wid) in scan(fs, root).journals)


def test_appended_rows_become_durable_segments(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path / "dt=2026-11-24")
    j = journal(fs, root)
    for i in range(50):
        j.append([row(f"file:///in/{i}.wav", status="failed" if i % 10 == 0 else "ok")])
    j.flush()
    assert j.stats.rows_durable == j.stats.rows_appended == 50
    listed = list_journal(fs, root, j.identity.writer_id)
    assert listed.has_writer and len(listed.segments) == j.stats.writes >= 1
    assert all(s.endswith(".rows") for s in listed.segments)  # never matched by *.parquet globs
    assert read_rows(fs, root).num_rows == 0  # readers see nothing yet
    assert read_rows(fs, root, journals=True).num_rows == 50
    assert len(completed_keys(fs, root)) == 45  # ok rows only
    j.close()


def test_append_never_waits_for_a_write_and_batches_what_waits(tmp_path, monkeypatch):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    gate, entered = threading.Event(), threading.Event()
    real = dataset._atomic_write

    def slow(fs_, path, data):
        if path.endswith(".rows"):
            entered.set()
            assert gate.wait(60)
        real(fs_, path, data)

    monkeypatch.setattr(dataset, "_atomic_write", slow)
    j = journal(fs, root)
    j.append([row("file:///in/0.wav")])
    assert entered.wait(60)  # the thread is now stuck in a write
    for i in range(1, 200):
        j.append([row(f"file:///in/{i}.wav")])  # returns although no write can finish
    assert j.stats.rows_appended == 200 and j.stats.rows_durable <= 1
    gate.set()
    j.flush()
    assert j.stats.rows_durable == 200
    assert j.stats.writes == 2 and j.stats.max_rows_per_write == 199  # the 199 waiting rows: one segment
    j.close()


def test_heartbeat_is_rewritten(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    j = journal(fs, root)
    path = Path(j.dir) / "writer.json"
    first = path.read_bytes()
    changed = threading.Event()

    def watch():
        while not changed.is_set() and path.read_bytes() == first:
            changed.wait(0.05)
        changed.set()

    t = threading.Thread(target=watch)
    t.start()
    t.join(30)
    assert changed.is_set()
    assert b'"heartbeat_at"' in path.read_bytes() and b'"pid_start"' in path.read_bytes()
    j.close()


def test_parameters_that_would_let_a_live_writer_look_gone_are_refused(tmp_path):
    with pytest.raises(ValueError, match="stale_after_seconds"):
        Journal(fsspec.filesystem("file"), str(tmp_path), ident(), heartbeat_seconds=10, write_retry_seconds=30,
                stale_after_seconds=60)  # fmt: skip


def test_writer_ids_are_safe_and_unique():
    a, b = ident(run_id="scheduled__2026-11-24T00:00:00+00:00"), ident(run_id="scheduled__2026-11-24T00:00:00+00:00")
    assert a.writer_id != b.writer_id
    assert a.writer_id.startswith("scheduled__2026-11-24T00_00_00_00_00-m-1-t1-")
    assert "/" not in ident(run_id="a/../b").writer_id
    assert WriterIdentity.new().writer_id.startswith("cli-")


def test_local_check_writable_names_the_destination(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    j = Journal(fsspec.filesystem("file"), str(blocker / "out"), ident(), **FAST)
    with pytest.raises(PermissionError, match=f"destination 'file://{blocker}/out' is not writable"):
        j.check_writable()


def test_error_message_and_pickling():
    err = DestinationWriteError(
        "s3://lake/t/dt=1", ConnectionError("refused"), what="journal segment", tries=6, seconds=30.2, rows_safe=412,
        rows_unstored=3,
    )  # fmt: skip
    text = str(err)
    assert text.startswith("cannot write to s3://lake/t/dt=1 (journal segment): ConnectionError: refused")
    assert "after 6 tries over 30 s" in text and "412 row(s) are safe" in text and "3 finished row(s)" in text
    assert isinstance(err, OSError)
    assert str(pickle.loads(pickle.dumps(err))) == text


# -- S3 (moto in server mode) -------------------------------------------------------------------------------
def test_s3_store_down_mid_batch_and_back_loses_nothing(own_moto):
    fs = own_moto.fs()
    fs.mkdir("outage-bucket")
    root = "outage-bucket/transcripts/dt=2026-11-24"
    j = journal(fs, root, write_retry_seconds=60.0, stale_after_seconds=150.0)
    paused = threading.Event()
    j.on_fatal = lambda exc: paused.set()
    for i in range(20):
        j.append([row(f"s3://in/{i}.wav")])
    j.flush()
    own_moto.stop()
    for i in range(20, 40):
        j.append([row(f"s3://in/{i}.wav")])
    for _ in range(600):  # the write fails: the pipeline is told to hold new requests
        if not j.healthy.wait(0) and j.stats.write_failures:
            break
        threading.Event().wait(0.05)
    assert not j.healthy.is_set()
    own_moto.start()
    j.flush()
    assert j.healthy.is_set() and j.error is None and not paused.is_set()
    result = j.close()
    assert result.rows == 40 and result.part_url.startswith("s3://outage-bucket/transcripts/dt=2026-11-24/part-")
    assert uris(read_rows(fs, root)) == sorted(f"s3://in/{i}.wav" for i in range(40))
    assert fs.find(f"{root}/{JOURNALS}") == []


def test_s3_store_that_stays_down_fails_naming_the_destination(own_moto):
    fs = own_moto.fs()
    fs.mkdir("broken-bucket")
    root = "broken-bucket/transcripts/dt=2026-11-24"
    j = journal(fs, root, write_retry_seconds=1.0)
    fatal: list[DestinationWriteError] = []
    j.on_fatal = fatal.append
    j.append([row("s3://in/0.wav")])
    j.flush()
    own_moto.stop()
    j.append([row("s3://in/1.wav"), row("s3://in/2.wav")])
    with pytest.raises(DestinationWriteError) as info:
        j.flush(timeout=120)
    message = str(info.value)
    assert message.startswith("cannot write to s3://broken-bucket/transcripts/dt=2026-11-24 (")
    assert "EndpointConnectionError" in message or "ConnectionError" in message
    assert "1 row(s) are safe in the journal" in message and "2 finished row(s) could not be stored" in message
    assert fatal == [info.value] and j.error is info.value and not j.healthy.is_set()
    with pytest.raises(DestinationWriteError):
        j.close()  # the journal stays for the next run
    own_moto.start()
    assert len(completed_keys(fs, root)) == 1


def test_s3_check_writable_on_a_missing_bucket(s3fs_factory):
    j = Journal(s3fs_factory(), "no-such-bucket-here/transcripts/dt=2026-11-24", ident(), **FAST)
    with pytest.raises(PermissionError, match="s3://no-such-bucket-here/transcripts/dt=2026-11-24.*not writable"):
        j.check_writable()
    assert "no-such-bucket-here" not in s3fs_factory().ls("")  # probing never creates the bucket
