"""The durable-piece store: answered pieces of long recordings journaled like rows, found again under a
scope, kept by compaction and adoption for files without an ``ok`` row, dropped for the others, never
seen by readers (local disk and S3 on moto), and handed by ``Batch`` to the pipeline."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import fsspec
import pyarrow.dataset as pads
import pytest

from linkai_provider import piece_store
from linkai_provider.dataset import part_files, read_rows
from linkai_provider.journal import Journal, PieceRecord, answered_pieces
from linkai_provider.staging import scan
from tests.test_journal import ident, journal, journal_ids, row

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc)


def piece(uri: str, start: float, fp: str = "fp1", plan: str = "v1;mix", channel: int | None = None) -> PieceRecord:
    return PieceRecord(
        source_uri=uri, source_fingerprint=fp, plan=plan, channel=channel, start_s=start, end_s=start + 600.0,
        text=f"text of {uri} at {start:.0f}", attempts=1, latency_ms=900, bytes_sent=19_200_000,
        audio_seconds=600.0, answered_at=T0 + timedelta(seconds=start),
    )  # fmt: skip


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """(fs, root) of an empty dataset folder on local disk or on moto."""
    if request.param == "local":
        return fsspec.filesystem("file"), str(tmp_path / "transcripts")
    fs = request.getfixturevalue("s3fs_factory")()
    bucket = f"pieces-{abs(hash(request.node.name)) % 10**8}"
    fs.mkdir(bucket)
    return fs, f"{bucket}/transcripts"


def test_appended_pieces_are_durable_found_and_invisible_to_readers(store):
    fs, root = store
    folder = f"{root}/dt=2026-11-24"
    j = journal(fs, folder)
    long_a, long_b = "file:///in/a.wav", "file:///in/b.wav"
    j.append_pieces([piece(long_a, 0.0), piece(long_a, 600.0)])
    j.append_pieces([piece(long_b, 0.0, channel=1, plan="v1;ch1")])
    j.append([row("file:///in/short.wav")])
    j.flush()
    assert j.stats.pieces_durable == j.stats.pieces_appended == 3

    found = answered_pieces(fs, root, [(long_a, "fp1"), (long_b, "fp1"), (long_a, "other-version")])
    assert [p.start_s for p in found[(long_a, "fp1")]] == [0.0, 600.0]
    assert found[(long_b, "fp1")] == [piece(long_b, 0.0, channel=1, plan="v1;ch1")]  # every field round-trips
    assert (long_a, "other-version") not in found  # another version of the file is another recording
    assert answered_pieces(fs, root, []) == {}
    assert answered_pieces(fs, f"{root}/dt=2026-11-25", [(long_a, "fp1")]) == {}  # outside the scope

    # Readers see rows only: pieces are under _linkai and their files are not *.parquet.
    assert read_rows(fs, root, journals=True).column("source_uri").to_pylist() == ["file:///in/short.wav"]
    j.close()
    assert not any(p.endswith(".parquet") and "_linkai" in p for p in fs.find(root))
    if fs.protocol == "file" or "file" in fs.protocol:
        glob = duckdb.sql(f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet')").fetchall()
        assert glob == [(1,)]
        assert pads.dataset(root, format="parquet", partitioning="hive").count_rows() == 1


def test_compaction_keeps_pieces_of_files_without_an_ok_row_and_drops_the_others(store):
    fs, root = store
    done, failed, unfinished = "file:///in/done.wav", "file:///in/failed.wav", "file:///in/unfinished.wav"
    j = journal(fs, root)
    j.append_pieces([piece(done, 0.0), piece(done, 600.0), piece(failed, 0.0), piece(unfinished, 0.0)])
    j.append([row(done), row(failed, status="failed")])  # `unfinished` has no row at all (cancelled)
    result = j.close()
    assert result.rows == 2 and journal_ids(fs, root) == []
    listing = scan(fs, root)
    assert list(listing.pieces) == [piece_store.pieces_path(root, j.identity.writer_id)]
    found = answered_pieces(fs, root, [(done, "fp1"), (failed, "fp1"), (unfinished, "fp1")])
    assert sorted(found) == [(failed, "fp1"), (unfinished, "fp1")]
    assert found[(failed, "fp1")] == [piece(failed, 0.0)]


def test_a_writer_with_no_pieces_left_writes_no_piece_file(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    j = journal(fs, root)
    j.append_pieces([piece("file:///in/a.wav", 0.0)])
    j.append([row("file:///in/a.wav")])
    j.close()
    assert scan(fs, root).pieces == {} and len(part_files(fs, root)) == 1


# A writer that journals pieces (and some rows) until it is SIGKILLed; "ready" once some are durable.
CHILD = r"""
import json, sys, time
from datetime import datetime, timezone
import fsspec
from linkai_provider.dataset import SCHEMA
from linkai_provider.journal import Journal, PieceRecord, WriterIdentity
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
    uri = f"file:///long/{i // 3}.wav"
    j.append_pieces([PieceRecord(uri, "fp1", "v1;mix", None, 600.0 * (i % 3), 600.0 * (i % 3 + 1), f"t{i}", 1, 5,
                                 100, 600.0, datetime.now(timezone.utc))])
    if i % 3 == 2 and (i // 3) % 2 == 0:  # every other file got all three pieces and its ok row
        row = dict.fromkeys(SCHEMA.names)
        row.update(source_uri=uri, source_fingerprint="fp1", status="ok", transcribed_at=datetime.now(timezone.utc))
        j.append([row])
    i += 1
    if i == 30:
        j.flush()
        print("ready", flush=True)
    time.sleep(0.002)
"""


def run_and_kill(root: str, identity: dict, endpoint: str | None) -> None:
    cfg = json.dumps({"root": root, "identity": identity, "endpoint": endpoint})
    child = subprocess.Popen([sys.executable, "-c", CHILD, cfg], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        threading.Event().wait(0.2)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(60)


def test_pieces_of_a_sigkilled_writer_survive_and_are_kept_by_the_adopter(store, request):
    fs, root = store
    endpoint = request.getfixturevalue("moto_endpoint") if "s3" in str(fs.protocol) else None
    folder = f"{root}/dt=2026-11-24"
    TI = {"dag_id": "d", "task_id": "t", "run_id": "scheduled__2026-11-24", "map_index": 0}
    run_and_kill(folder, {**TI, "try_number": 1}, endpoint)

    ok = {u for u in read_rows(fs, folder, journals=True).column("source_uri").to_pylist()}
    keys = [(f"file:///long/{n}.wav", "fp1") for n in range(200)]
    before = answered_pieces(fs, root, keys)  # the dead writer's journal counts
    assert sum(map(len, before.values())) >= 30 and ok
    unfinished = {k for k in before if k[0] not in ok}
    assert unfinished

    # The next try adopts the journal: its part holds the rows, its piece file the unfinished files' pieces.
    j = journal(fs, folder, ident(run_id=TI["run_id"], try_number=2, map_index=0))
    assert j.adopted and j.close().rows == len(ok)
    assert journal_ids(fs, folder) == []
    after = answered_pieces(fs, root, keys)
    assert set(after) == unfinished  # pieces of files with an ok row dropped, every other one kept
    assert all(after[k] == before[k] for k in unfinished)


def test_pruning_drops_only_pieces_of_done_files(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    j = journal(fs, root)
    j.append_pieces([piece("file:///a.wav", 0.0), piece("file:///b.wav", 0.0), piece("file:///c.wav", 0.0)])
    j.close()
    store = piece_store.PieceStore(fs, scan(fs, root))
    _, files = store.lookup([])
    write = lambda path, data: fs.pipe_file(path, data)  # noqa: E731
    assert piece_store.prune_pieces(fs, files, lambda keys: set(), write) == 0
    dropped = piece_store.prune_pieces(fs, files, lambda keys: {k for k in keys if k[0] != "file:///c.wav"}, write)
    assert dropped == 2
    left = answered_pieces(fs, root, [(f"file:///{n}.wav", "fp1") for n in "abc"])
    assert list(left) == [("file:///c.wav", "fp1")] and len(scan(fs, root).pieces) == 1
    _, files = piece_store.PieceStore(fs, scan(fs, root)).lookup([])
    assert piece_store.prune_pieces(fs, files, lambda keys: set(keys), write) == 1
    assert scan(fs, root).pieces == {}


def test_the_same_piece_in_a_journal_and_a_kept_file_is_returned_once(tmp_path):
    fs, root = fsspec.filesystem("file"), str(tmp_path)
    first = journal(fs, root)
    first.append_pieces([piece("file:///a.wav", 0.0)])
    first.close()
    second = journal(fs, root)
    second.append_pieces([piece("file:///a.wav", 0.0), piece("file:///a.wav", 600.0)])
    second.flush()
    assert [p.start_s for p in answered_pieces(fs, root, [("file:///a.wav", "fp1")])[("file:///a.wav", "fp1")]] == [
        0.0,
        600.0,
    ]
    second.close()


def test_append_pieces_refuses_a_closed_journal(tmp_path):
    j = journal(fsspec.filesystem("file"), str(tmp_path))
    j.close()
    with pytest.raises(RuntimeError, match="cannot append pieces"):
        j.append_pieces([piece("file:///a.wav", 0.0)])


@pytest.mark.usefixtures("airflow_home")
def test_batch_hands_the_scopes_answered_pieces_to_the_pipeline(tmp_path, linkai_conn):
    from linkai_provider.batch import Batch, BatchOptions
    from linkai_provider.hooks.linkai import LinkAIHook
    from linkai_provider.io.sources import fingerprint
    from tests.test_resilience import make_inputs

    inputs = make_inputs(tmp_path / "in", 3)
    fs, root = fsspec.filesystem("file"), str(tmp_path / "out")
    uri = sorted(inputs)[1]
    info = fs.info(uri.removeprefix("file://"))
    earlier = journal(fs, f"{root}/dt=2026-11-23")  # an earlier day's try answered a piece, then failed
    earlier.append_pieces([piece(uri, 0.0, fp=fingerprint(info))])
    earlier.close()

    hook = LinkAIHook()
    batch = Batch(
        hook, source=str(tmp_path / "in"), destination=f"{root}/dt=2026-11-24", incremental_scope=root,
        identity=ident(), row_context={}, options=BatchOptions(max_concurrency=2),
    )  # fmt: skip
    outcome = batch.run()
    assert outcome.summary["transcribed"] == 3
    pipeline = batch.pipeline
    assert pipeline is not None and list(pipeline.answered) == [(uri, fingerprint(info))]
    sink = pipeline.pieces_sink
    assert isinstance(getattr(sink, "__self__", None), Journal) and sink.__func__ is Journal.append_pieces  # type: ignore[union-attr]
    # Scoped to the destination alone, the earlier day's pieces are not this run's business.
    narrow = Batch(
        hook, source=str(tmp_path / "in"), destination=f"{root}/dt=2026-11-24", identity=ident(), row_context={},
        options=BatchOptions(max_concurrency=2, incremental=False),
    )  # fmt: skip
    narrow.run()
    assert narrow.pipeline is not None and narrow.pipeline.answered == {}


@pytest.mark.usefixtures("airflow_home")
def test_planning_drops_kept_pieces_of_files_done_since(tmp_path, linkai_conn):
    """A kept piece file whose files all got an ok row elsewhere (another day's run) is garbage: the
    next run's planning deletes it; one that still holds a file without an ok row stays."""
    from linkai_provider.batch import Batch, BatchOptions
    from linkai_provider.hooks.linkai import LinkAIHook
    from tests.test_resilience import make_inputs

    fs, root = fsspec.filesystem("file"), str(tmp_path / "out")
    earlier = journal(fs, f"{root}/dt=2026-11-22")
    earlier.append_pieces([piece("file:///done-elsewhere.wav", 0.0)])
    earlier.close()
    waiting = journal(fs, f"{root}/dt=2026-11-23")
    waiting.append_pieces([piece("file:///still-waiting.wav", 0.0)])
    waiting.close()
    later = journal(fs, f"{root}/dt=2026-11-23")
    later.append([row("file:///done-elsewhere.wav")])  # done since, by another run
    later.close()
    assert len(scan(fs, root).pieces) == 2

    make_inputs(tmp_path / "in", 1)
    Batch(
        LinkAIHook(), source=str(tmp_path / "in"), destination=f"{root}/dt=2026-11-24", incremental_scope=root,
        identity=ident(), row_context={}, options=BatchOptions(max_concurrency=2),
    ).run()  # fmt: skip
    assert list(scan(fs, root).pieces) == [piece_store.pieces_path(f"{root}/dt=2026-11-23", waiting.identity.writer_id)]
