"""The staging area: who is gone, claims between writers starting at once, adoption, garbage, and
what readers and planning see (local disk)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from linkai_provider import dataset
from linkai_provider.dataset import SCHEMA, completed_keys, read_rows
from linkai_provider.staging import gone_reason, journal_dir, pid_start, read_writer
from tests.test_journal import ident, journal, journal_ids, row, uris

NOW = time.time()


def fake_journal(fs, root: str, writer_id: str, rows: list[dict], *, age: float = 3600.0, **fields) -> None:
    """A journal as another writer left it: writer.json (another host, heartbeat ``age`` s old) and one segment."""
    doc = {"writer_id": writer_id, "dag_id": "d", "task_id": "t", "run_id": "other_run", "map_index": -1,
           "try_number": 1, "host": "another-host", "pid": 1, "pid_start": None, "pid_namespace": None,
           "started_at": "2026-11-24T00:00:00+00:00",
           "heartbeat_at": datetime.fromtimestamp(time.time() - age, timezone.utc).isoformat()}  # fmt: skip
    doc.update(fields)
    folder = journal_dir(root, writer_id)
    dataset._atomic_write(fs, f"{folder}/writer.json", json.dumps(doc).encode())
    if rows:
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), sink)
        dataset._atomic_write(fs, f"{folder}/seg-00000001.rows", sink.getvalue().to_pybytes())


def beat(age: float) -> str:
    return datetime.fromtimestamp(NOW - age, timezone.utc).isoformat()


# -- staleness ---------------------------------------------------------------------------------------------
def test_an_earlier_try_of_the_same_task_instance_is_gone_at_once():
    me = ident(run_id="r1", try_number=2, map_index=3)
    other = {"dag_id": "d", "task_id": "t", "run_id": "r1", "map_index": 3, "try_number": 1, "host": "elsewhere",
             "pid": 1, "heartbeat_at": beat(0)}  # fmt: skip
    assert "try 1" in gone_reason(me, other, NOW, 120)
    assert gone_reason(me, {**other, "try_number": 2}, NOW, 120) is None  # not earlier
    assert gone_reason(me, {**other, "map_index": 4}, NOW, 120) is None  # another shard
    assert gone_reason(ident(run_id="r2", try_number=2, map_index=3), other, NOW, 120) is None  # another run


def test_same_host_pid_ended_or_reused_is_gone_live_pid_is_not():
    me = ident()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: the pid no longer exists
    here = {"host": me.host, "pid_namespace": me.pid_namespace, "heartbeat_at": beat(0), "run_id": "x"}
    assert "has ended" in gone_reason(me, {**here, "pid": child.pid, "pid_start": 1}, NOW, 120)
    mine = os.getpid()
    assert gone_reason(me, {**here, "pid": mine, "pid_start": pid_start(mine)}, NOW, 120) is None
    assert "has ended" in gone_reason(me, {**here, "pid": mine, "pid_start": (pid_start(mine) or 0) + 1}, NOW, 120)
    # the same pid number in another pid namespace (a container) says nothing: the heartbeat decides
    elsewhere = {**here, "pid": child.pid, "pid_start": 1, "pid_namespace": "other-boot/pid:[1]"}
    assert gone_reason(me, elsewhere, NOW, 120) is None


def test_heartbeat_older_than_the_staleness_period_is_gone():
    me = ident()
    other = {"host": "elsewhere", "pid": 1, "run_id": "x"}
    assert gone_reason(me, {**other, "heartbeat_at": beat(119)}, NOW, 120) is None
    assert "121 s ago" in gone_reason(me, {**other, "heartbeat_at": beat(121)}, NOW, 120)
    assert gone_reason(me, None, NOW, 120) == "it has no writer.json"


# -- adoption, claims, garbage -----------------------------------------------------------------------------
def test_live_writers_are_never_adopted_but_their_rows_count_as_done(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path / "dt=2026-11-24")
    live = journal(fs, root, ident(run_id="shard_a"))
    live.append([row(f"file:///a/{i}.wav") for i in range(5)])
    live.flush()
    fake_journal(fs, root, "remote-writer", [row("file:///r/0.wav")], age=1.0)  # other host, fresh heartbeat
    other = journal(fs, root, ident(run_id="shard_b"))
    assert other.adopted == []
    other.append([row("file:///b/0.wav")])
    assert completed_keys(fs, root) >= {("file:///a/0.wav", "fp1"), ("file:///r/0.wav", "fp1")}
    result = other.close()
    assert result.rows == 1 and result.adopted == ()
    assert sorted(journal_ids(fs, root)) == sorted([live.identity.writer_id, "remote-writer"])
    live.close()
    assert uris(read_rows(fs, root)) == sorted([*(f"file:///a/{i}.wav" for i in range(5)), "file:///b/0.wav"])


def test_writers_starting_together_adopt_a_dead_journal_exactly_once(tmp_path):
    fs = fsspec.filesystem("file")
    for trial in range(3):
        root = str(tmp_path / f"trial{trial}")
        dead = [row(f"file:///dead/{i}.wav") for i in range(7)]
        fake_journal(fs, root, "dead-writer", dead)
        start = threading.Barrier(3)
        writers: list = [None] * 3

        def opener(k: int, root: str = root, start: threading.Barrier = start, writers: list = writers) -> None:
            start.wait()
            writers[k] = journal(fs, root, ident(run_id=f"shard_{k}"))

        threads = [threading.Thread(target=opener, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(len(w.adopted) for w in writers) == [0, 0, 1], trial
        for k, w in enumerate(writers):
            w.append([row(f"file:///live/{k}.wav")])
            w.close()
        got = uris(read_rows(fs, root))
        assert got == sorted([d["source_uri"] for d in dead] + [f"file:///live/{k}.wav" for k in range(3)])
        assert journal_ids(fs, root) == []


def test_a_dead_adopters_claims_are_void(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    fake_journal(fs, root, "dead-writer", [row("file:///dead/0.wav")])
    adopter = journal(fs, root, ident(run_id="first"))
    assert adopter.adopted == ["dead-writer"]
    adopter.append([row("file:///first/0.wav")])
    adopter.flush()
    adopter.abort()  # killed before compacting: simulate its heartbeat going stale
    doc = read_writer(fs, root, adopter.identity.writer_id)
    dataset._atomic_write(fs, f"{adopter.dir}/writer.json", json.dumps({**doc, "heartbeat_at": beat(3600)}).encode())
    later = journal(fs, root, ident(run_id="second"))
    assert sorted(later.adopted) == sorted(["dead-writer", adopter.identity.writer_id])
    result = later.close()
    assert result.rows == 2 and uris(read_rows(fs, root)) == ["file:///dead/0.wav", "file:///first/0.wav"]
    assert journal_ids(fs, root) == []


def test_a_claimed_writer_moves_to_a_new_journal_so_no_row_lands_twice(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    j = journal(fs, root, ident(run_id="slow"))
    j.append([row(f"file:///early/{i}.wav") for i in range(3)])
    j.flush()
    first = j.identity.writer_id
    # Another writer took this one for gone (it was frozen, say) and claimed its journal.
    dataset._atomic_write(fs, f"{j.dir}/claim-ghost.json", json.dumps({"claimant": "ghost", "at": 0}).encode())
    for _ in range(600):
        if j.forfeited:
            break
        time.sleep(0.05)
    assert j.forfeited == [first] and j.identity.writer_id != first
    j.append([row("file:///late/0.wav")])
    assert j.close().rows == 1  # the early rows are left to the claimant
    assert uris(read_rows(fs, root)) == ["file:///late/0.wav"]
    assert journal_ids(fs, root) == [first]
    # The claimant never came back (no writer.json: its claim is void); the journal goes stale.
    doc = read_writer(fs, root, first)
    dataset._atomic_write(fs, f"{journal_dir(root, first)}/writer.json",
                          json.dumps({**doc, "heartbeat_at": beat(3600)}).encode())  # fmt: skip
    later = journal(fs, root, ident(run_id="later"))
    assert later.adopted == [first]
    later.close()
    assert uris(read_rows(fs, root)) == sorted(["file:///late/0.wav", *(f"file:///early/{i}.wav" for i in range(3))])


def test_claim_only_folders_are_cleared_once_their_claims_are_void(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    folder = journal_dir(root, "compacted-long-ago")
    dataset._atomic_write(fs, f"{folder}/claim-gone.json", json.dumps({"claimant": "gone", "at": 0}).encode())
    journal(fs, root, ident(run_id="sweeper")).close()
    assert not os.path.exists(folder)


# -- what planning and readers see -------------------------------------------------------------------------
def test_completed_keys_span_partitions_parts_and_journals(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path / "transcripts")
    done = journal(fs, f"{root}/dt=2026-11-21", ident(run_id="r21"))
    done.append([row("file:///a.wav"), row("file:///failed.wav", status="failed")])
    done.close()
    live = journal(fs, f"{root}/dt=2026-11-22", ident(run_id="r22"))
    live.append([row("file:///b.wav"), row("file:///c.wav", fingerprint="fp2")])
    live.flush()
    fake_journal(fs, f"{root}/dt=2026-11-23", "killed", [row("file:///d.wav"), row("file:///e.wav", status="failed")])
    assert completed_keys(fs, root) == {
        ("file:///a.wav", "fp1"),
        ("file:///b.wav", "fp1"),
        ("file:///c.wav", "fp2"),
        ("file:///d.wav", "fp1"),
    }
    assert completed_keys(fs, f"{root}/dt=2026-11-23") == {("file:///d.wav", "fp1")}
    live.close()


def test_readers_see_only_parts_while_journals_exist(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path / "transcripts")
    done = journal(fs, f"{root}/dt=2026-11-21", ident(run_id="r21"))
    done.append([row("file:///visible.wav")])
    done.close()
    live = journal(fs, f"{root}/dt=2026-11-21", ident(run_id="again"))
    live.append([row("file:///hidden/1.wav")])
    live.flush()
    fake_journal(fs, f"{root}/dt=2026-11-22", "killed", [row("file:///hidden/2.wav")])
    con = duckdb.connect()
    for glob in ("*/*.parquet", "**/*.parquet"):
        got = con.sql(f"SELECT source_uri, dt FROM read_parquet('{root}/{glob}', hive_partitioning = true)").fetchall()
        assert [(u, str(d)) for u, d in got] == [("file:///visible.wav", "2026-11-21")], glob
    assert pq.read_table(root).column("source_uri").to_pylist() == ["file:///visible.wav"]  # pyarrow dataset
    assert read_rows(fs, root).num_rows == 1 and read_rows(fs, root, journals=True).num_rows == 3
    live.close()
