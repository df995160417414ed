"""The incremental check through the key index: what it reads follows the listed folders, a file done long
ago is still skipped, parts without an index (older versions) count and get one, journals count, and
concurrent writers never make a done file look undone (local disk and S3 on moto)."""

from __future__ import annotations

import os
import threading
from datetime import date, timedelta

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkai_provider import dataset, keyindex
from linkai_provider.dataset import SCHEMA, TranscriptWriter
from linkai_provider.planning import KeyIndex, check_done, done_keys
from linkai_provider.staging import scan
from tests.test_dataset import row
from tests.test_journal import ident, journal

FP = "size:1;mtime:1"
DAY0 = date(2025, 11, 28)


def day(n: int) -> str:
    return (DAY0 + timedelta(days=n)).isoformat()


def uri(n: int, i: int, base: str = "s3://calls") -> str:
    return f"{base}/{day(n)}/agent-{i % 3}/call-{i:05d}.wav"


def history(fs, root: str, days: int, per_day: int, **kw) -> None:
    """``days`` daily partitions of ``per_day`` ok rows (every 5th failed), as bulk loads write them."""
    for n in range(days):
        writer = TranscriptWriter(fs, f"{root}/dt={day(n)}", checkpoint_rows=10**6)
        for i in range(per_day):
            writer.add(row(uri(n, i), status="failed" if i % 5 == 4 else "ok", **kw))
        writer.close()


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return fsspec.filesystem("file"), str(tmp_path / "transcripts")
    fs = request.getfixturevalue("s3fs_factory")()
    bucket = f"keys-{abs(hash(request.node.name)) % 10**8}"
    fs.mkdir(bucket)
    return fs, f"{bucket}/transcripts"


def test_grouping_is_as_deep_as_8_groups_allow():
    nightly = [uri(0, i) for i in range(60)]
    assert set(keyindex.group_prefixes(nightly).values()) == {f"s3://calls/{day(0)}/agent-{a}/" for a in range(3)}
    many_agents = [f"s3://calls/{day(0)}/agent-{i}/x.wav" for i in range(500)]
    assert set(keyindex.group_prefixes(many_agents).values()) == {f"s3://calls/{day(0)}/"}
    month = [f"s3://calls/{day(n)}/a/{i}.wav" for n in range(40) for i in range(3)]
    assert set(keyindex.group_prefixes(month).values()) == {"s3://calls/"}  # 40 days > 8: one level up
    assert set(keyindex.group_prefixes(["s3://a/x.wav", "gs://b/y.wav"]).values()) == {"s3://a/", "gs://b/"}
    assert set(keyindex.group_prefixes(["file:///x.wav", "s3://b/y.wav"]).values()) == {"file:///", "s3://b/"}
    assert keyindex.group_prefixes([]) == {}


def test_a_check_reads_only_the_groups_of_the_listed_folders_and_finds_a_year_old_file(store):
    fs, root = store
    history(fs, root, days=30, per_day=20)
    tonight = [(uri(29, i), FP) for i in range(20)] + [(uri(30, i), FP) for i in range(20)]  # yesterday + new
    done, index = check_done(fs, root, tonight)
    assert done == {(uri(29, i), FP) for i in range(20) if i % 5 != 4}
    assert index.stats.parts == 30 and index.stats.parts_read == 0
    assert index.stats.index_files_read == 3  # day 29's three agent folders; none of the other 29 days
    old = [(uri(0, i), FP) for i in range(20)]  # a file done a year ago is still skipped
    assert done_keys(fs, root, old) == {(uri(0, i), FP) for i in range(20) if i % 5 != 4}
    assert done_keys(fs, root, [(uri(0, 0), "another-version")]) == set()  # a changed file goes again
    assert done_keys(fs, root, []) == set()


def test_parts_without_an_index_count_and_are_indexed_once(store):
    """Parts of schema v2 (no ``warnings``, no ``segments.channel``), written before the index existed."""
    fs, root = store
    v2 = pa.schema([f for f in SCHEMA if f.name != "warnings"]).set(
        SCHEMA.get_field_index("segments"),
        pa.field("segments", pa.list_(pa.struct([f for f in dataset.SEGMENT if f.name != "channel"]))),
    )
    for n in range(3):
        rows = [row(uri(n, i), status="failed" if i == 1 else "ok", segments=[{"start_s": 0.0, "end_s": 1.0,
                "text": "hello"}]) for i in range(4)]  # fmt: skip
        for r in rows:
            r.pop("warnings")
        sink = pa.BufferOutputStream()
        pq.write_table(pa.Table.from_pylist(rows, schema=v2), sink)
        dataset._atomic_write(fs, f"{root}/dt={day(n)}/part-v2-{n}.parquet", sink.getvalue().to_pybytes())
    keys = [(uri(n, i), FP) for n in range(3) for i in range(4)]
    expected = {k for k in keys if "call-00001" not in k[0]}

    done, index = check_done(fs, root, keys)  # a dry run: reads, writes nothing
    assert done == expected and index.stats.parts_read == 3 and index.stats.indexed == 0
    assert scan(fs, root).keys == {}
    done, index = check_done(fs, root, keys, build=True)
    assert done == expected and index.stats.parts_read == 3 and index.stats.indexed == 3
    done, index = check_done(fs, root, keys)
    assert done == expected and index.stats.parts_read == 0 and index.stats.index_files_read == 9  # 3 agents each


def test_an_index_counts_only_with_its_part_and_all_its_groups(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    history(fs, root, days=1, per_day=6)
    keys = [(uri(0, i), FP) for i in range(6)]
    expected = done_keys(fs, root, keys)
    assert len(expected) == 5
    listing = scan(fs, root)
    (part,) = listing.parts
    groups = sorted(listing.keys[f"{root}/dt={day(0)}"])
    assert len(groups) == 3 and all(".g3-" in g for g in groups)

    # One group missing (a writer killed while writing them): the part is read instead, and re-indexed.
    fs.rm_file(f"{root}/dt={day(0)}/_linkai/keys/{groups[0]}")
    done, index = check_done(fs, root, keys, build=True)
    assert done == expected and index.stats.parts_read == 1 and index.stats.indexed == 1
    assert sorted(scan(fs, root).keys[f"{root}/dt={day(0)}"]) == groups

    # A group left unreadable (a power cut: index files are not fsynced): the part is read, and re-indexed.
    broken = f"{root}/dt={day(0)}/_linkai/keys/{groups[1]}"
    fs.pipe_file(broken, b"")
    done, index = check_done(fs, root, keys, build=True)
    assert done == expected and index.stats.parts_read == 1 and index.stats.indexed == 1
    assert fs.cat_file(broken)[:4] == b"PAR1"

    # The part deleted (retention): its index alone does not make its files done.
    fs.rm_file(part)
    assert done_keys(fs, root, keys) == set()


def test_failed_rows_are_indexed_but_never_done(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    writer = TranscriptWriter(fs, root)
    writer.add(row("s3://calls/x.wav", status="failed"))
    writer.close()
    done, index = check_done(fs, root, [("s3://calls/x.wav", FP)])
    assert done == set() and index.stats.parts_read == 0 and index.stats.index_files_read == 1
    assert KeyIndex(fs, scan(fs, root)).parts_holding(["s3://calls/x.wav", "s3://calls/y.wav"]) == {
        writer.parts[0]: {"s3://calls/x.wav"}
    }
    assert keyindex.index_files(f"{root}/part-empty.parquet", []) == {f"{root}/_linkai/keys/part-empty.g0.keys": b""}


def test_journals_of_live_and_dead_writers_count_and_compaction_indexes_its_part(store):
    fs, root = store
    live = journal(fs, f"{root}/dt={day(1)}")
    live.append([row(uri(1, 0)), row(uri(1, 1), status="failed")])
    live.flush()
    keys = [(uri(1, i), FP) for i in range(2)]
    assert done_keys(fs, root, keys) == {(uri(1, 0), FP)}
    live.close()
    listing = scan(fs, root)
    assert len(listing.parts) == 1 and len(listing.keys[f"{root}/dt={day(1)}"]) == 2  # compaction indexed it
    done, index = check_done(fs, root, keys)
    assert done == {(uri(1, 0), FP)} and index.stats.parts_read == 0 and index.stats.index_files_read == 2


def test_concurrent_writers_never_make_a_done_file_look_undone(tmp_path):
    """Shards compacting while a planner checks: journal -> part -> index -> journal deleted, in any
    interleaving with the planner's listing, a key seen done stays done."""
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    shards, batches, per_batch = 4, 6, 5
    keys = [(uri(s, b * per_batch + i), FP) for s in range(shards) for b in range(batches) for i in range(per_batch)]
    stop, seen, errors = threading.Event(), [set()], []

    def writer(shard: int) -> None:
        try:
            for b in range(batches):  # each batch: one try of the shard, a journal then a part
                j = journal(fs, f"{root}/dt={day(shard)}", ident(run_id=f"r{b}", map_index=shard))
                for i in range(per_batch):
                    j.append([row(uri(shard, b * per_batch + i))])
                j.close()
        except BaseException as exc:  # pragma: no cover - reported below
            import traceback

            traceback.print_exc()
            errors.append(exc)

    def planner() -> None:
        try:
            while not stop.is_set():
                now = done_keys(fs, root, keys, build=True)
                missing = seen[0] - now
                assert not missing, f"{len(missing)} done key(s) looked undone, e.g. {sorted(missing)[:2]}"
                seen[0] = now
        except BaseException as exc:
            import traceback

            traceback.print_exc()
            errors.append(exc)

    checking = threading.Thread(target=planner)
    checking.start()
    writing = [threading.Thread(target=writer, args=(s,)) for s in range(shards)]
    for t in writing:
        t.start()
    for t in writing:
        t.join()
    stop.set()
    checking.join()
    assert not errors, errors
    assert done_keys(fs, root, keys) == set(keys)
    assert len(scan(fs, root).parts) == shards * batches


def test_where_a_files_rows_are_and_which_files_a_part_holds(store):
    fs, root = store
    history(fs, root, days=4, per_day=6)
    moved = uri(0, 4)  # failed on day 0 (every 5th row), then ok, filed under day 3
    writer = TranscriptWriter(fs, f"{root}/dt={day(3)}")
    writer.add(row(moved))
    writer.close()
    fs.pipe_file(f"{root}/dt={day(0)}/_linkai/keys/README", b"not an index")  # ignored
    index = KeyIndex(fs, scan(fs, root))
    holding = index.parts_holding([moved, uri(1, 0), "s3://elsewhere/x.wav"])
    assert {p.split("/dt=")[1][:10]: uris for p, uris in holding.items()} == {
        day(0): {moved},
        day(3): {moved},
        day(1): {uri(1, 0)},
    }
    assert index.stats.index_files_read == 3  # day 0's and day 3's agent-1 groups, day 1's agent-0 group
    (part,) = [p for p in index.listing.parts if f"dt={day(1)}" in p]
    assert index.uris_in([part]) == {uri(1, i) for i in range(6)}


def test_a_listing_never_misses_rows_moving_from_a_journal_to_a_part(tmp_path, monkeypatch):
    """Local disk is listed as object stores list keys: a folder's ``_linkai`` before its parts. A
    journal compacted (part written, journal deleted) right after its folder was listed is then seen as
    the part; listing the parts first would have seen neither."""
    from linkai_provider import staging

    fs, root = fsspec.filesystem("file"), str(tmp_path)
    folder = f"{root}/dt={day(0)}"
    j = journal(fs, folder)
    j.append([row(uri(0, i)) for i in range(3)])
    j.flush()
    real = staging.os.scandir
    compacted = []

    def scandir(path):
        listing = real(path)
        if path.endswith(j.identity.writer_id) and not compacted:
            entries = list(listing)  # the journal as it was listed; then the writer compacts and deletes it
            compacted.append(None)
            compacted[0] = j.close()

            class Listed:
                def __enter__(self):
                    return iter(entries)

                def __exit__(self, *exc):
                    return False

            return Listed()
        return listing

    monkeypatch.setattr(staging.os, "scandir", scandir)
    listing = scan(fs, root)
    assert compacted and compacted[0].rows == 3
    assert list(listing.parts) == [f"{folder}/part-{j.identity.writer_id}.parquet"]  # listed after it moved


def test_a_file_vanishing_while_its_folder_is_listed_leaves_the_rest_listed(tmp_path, monkeypatch):
    from linkai_provider import staging

    fs, root = fsspec.filesystem("file"), str(tmp_path)
    history(fs, root, days=1, per_day=2)
    (part,) = scan(fs, root).parts
    doomed = f"{root}/dt={day(0)}/.part-in-progress.parquet.tmp"
    fs.pipe_file(doomed, b"x")
    real = staging.os.scandir

    class Vanishing:
        def __init__(self, path):
            self.entries = list(real(path))

        def __enter__(self):
            if os.path.exists(doomed):
                os.unlink(doomed)  # renamed by its writer after the folder was read, before its stat
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(staging.os, "scandir", Vanishing)
    assert list(scan(fs, root).parts) == [part]
