"""Bench scenario ``analytics`` (issue 16 item 3): bytes the analytics DAG reads after a nightly run, with a
year of history, incremental against full, counted through fsspec.

The year is bench/history.py's (365 daily partitions of 10,000 rows, cached). Tonight's nightly run is
played for real through two journals (compaction writes the parts and their key index): 10,000 new
files of the day that ended, and, in its lookback, 200 files of the day before that failed then and
succeed now. The Asset event would name ``["dt=<day before>", "dt=<day>"]``. The analytics step
(:func:`linkai_provider.analytics.plan_recompute` then ``summarize``) runs twice over a filesystem that
counts every byte read (a wrapper of the local disk that DuckDB and pyarrow read through fsspec, as
they read S3): once for those partitions, once for everything. Target: the incremental run reads at
most 2x the bytes of the partitions the run wrote. Tonight's parts are removed afterwards.

    .venv/bin/python -m bench.analytics [--cache /tmp/linkai-bench-history]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileOpener
from fsspec.spec import AbstractFileSystem

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import history  # noqa: E402


class CountingFileSystem(AbstractFileSystem):
    """The local disk under the protocol ``counted://``, counting the bytes read through it. Not a
    LocalFileSystem, so the provider and DuckDB read it as they read an object store (ranges, fsspec)."""

    protocol = "counted"
    root_marker = "/"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inner = fsspec.filesystem("file")
        # list.append is atomic under the GIL; a threading.Lock taken inside DuckDB's reads (its threads
        # call back into Python) broke them ("don't know what type")
        self._sizes: list[int] = []

    def count(self, n: int) -> None:
        self._sizes.append(n)

    @property
    def bytes_read(self) -> int:
        return sum(self._sizes)

    @property
    def reads(self) -> int:
        return len(self._sizes)

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("counted://"):
            path = path[len("counted://") :]
        return path.rstrip("/") or "/"

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        return self.inner.ls(self._strip_protocol(path), detail=detail, **kwargs)

    def info(self, path: str, **kwargs: Any) -> Any:
        return self.inner.info(self._strip_protocol(path), **kwargs)

    def modified(self, path: str) -> Any:
        return self.inner.modified(self._strip_protocol(path))

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        data = self.inner.cat_file(self._strip_protocol(path), start=start, end=end)
        self.count(len(data))
        return data

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" in mode:
            return _CountingFile(self._strip_protocol(path), mode, self)
        return self.inner.open(self._strip_protocol(path), mode)

    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> None:
        self.inner.pipe_file(self._strip_protocol(path), value)

    def rm_file(self, path: str) -> None:
        self.inner.rm_file(self._strip_protocol(path))

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.inner.makedirs(self._strip_protocol(path), exist_ok=exist_ok)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self.inner.mkdir(self._strip_protocol(path), create_parents=create_parents)


class _CountingFile(LocalFileOpener):
    """A local file whose reads are counted (a subclass: DuckDB reads it as it reads fsspec's own)."""

    def __init__(self, path: str, mode: str, counter: CountingFileSystem) -> None:
        self.counter = counter
        super().__init__(path, mode, fs=counter.inner)

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        data = super().read(*args, **kwargs)
        self.counter.count(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        n = self.f.readinto(buffer)
        self.counter.count(n or 0)
        return n


def tonight(local: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Play the nightly run into the year: the day that ended (10,000 new files, rows like the year's),
    and in its lookback the day before, whose failed files succeed now. Returns the run's summaries (as
    the operator returns them) and every file it created (removed afterwards)."""
    from linkai_provider.dataset import STATUS_OK
    from linkai_provider.journal import Journal, WriterIdentity

    fs = fsspec.filesystem("file")
    before = set(fs.find(str(local)))
    day, previous = history.DAYS, history.DAYS - 1
    now = datetime.now(timezone.utc)
    retried = [r for r in history.day_table(previous).to_pylist() if r["status"] != STATUS_OK]
    donor = history.day_table(day + 1).to_pylist()  # texts and figures for the retried files
    for r, d in zip(retried, donor, strict=False):
        r.update({k: d[k] for k in ("text", "segments", "chunks", "audio_duration_s")}, status=STATUS_OK)
        r.update(error_type=None, error_code=None, error_message=None)
    summaries = []
    for n, rows in ((previous, retried), (day, history.day_table(day).to_pylist())):
        folder = f"{local}/dt={history.day(n)}"
        identity = WriterIdentity.new(run_id=f"scheduled__{history.day(day + 1)}", map_index=n, try_number=1)
        journal = Journal(fs, folder, identity)
        journal.check_writable()
        journal.open()
        for start in range(0, len(rows), 500):
            journal.append([{**r, "transcribed_at": now} for r in rows[start : start + 500]])
        result = journal.close()
        summaries.append({"destination": f"file://{folder}", "rows_written": result.rows})
    created = sorted(set(fs.find(str(local))) - before)
    return summaries, created


def run(cache: Path) -> dict[str, Any]:
    import duckdb
    from airflow.sdk import Asset

    from linkai_provider.analytics import plan_recompute, summarize
    from linkai_provider.lineage import partitions_written
    from linkai_provider.planning import check_done

    local = history.build_history(cache)
    fs_local = fsspec.filesystem("file")
    _, index = check_done(fs_local, str(local), [("s3://none", "x")], build=True)  # the year's key index
    print(f"[analytics] indexed {index.stats.indexed} part(s) of the year", file=sys.stderr, flush=True)
    summaries, created = tonight(local)
    out: dict[str, Any] = {}
    try:
        partitions = partitions_written(Asset(f"file://{local}"), summaries)
        written_bytes = sum(
            p.stat().st_size for part in partitions for p in (local / part).glob("*.parquet")
        )  # the partitions the run wrote, whole (earlier parts of those days included)
        out.update(partitions=partitions, partitions_bytes=written_bytes, created=len(created))
        results = {}
        for mode, which in (("incremental", partitions), ("full", None)):
            fs = CountingFileSystem(skip_instance_cache=True)
            con = duckdb.connect()
            con.execute("SET memory_limit = '3GB'; SET threads = 2")
            started = time.perf_counter()
            plan = plan_recompute(fs, str(local), which)
            planned = fs.bytes_read
            table = summarize(fs, plan, con)
            seconds = time.perf_counter() - started
            assert table is not None
            results[mode] = table.drop_columns(["generated_at"])
            out[mode] = {
                "bytes_read": fs.bytes_read,
                "bytes_planning": planned,
                "reads": fs.reads,
                "seconds": seconds,
                "days": table.num_rows,
                "parts_read": len(plan.parts),
                "other_parts_keys": len(plan.others),
                "x_partitions_written": fs.bytes_read / written_bytes,
            }
            print(f"[analytics] {mode}: {fs.bytes_read / 1e6:.1f} MB read in {seconds:.1f} s", file=sys.stderr)
        full = {r["dt"]: r for r in results["full"].to_pylist()}
        incremental = results["incremental"].to_pylist()
        out["incremental_equals_full"] = all(full[r["dt"]] == r for r in incremental)
        out["days_recomputed"] = sorted(r["dt"] for r in incremental)
        out["target"] = "incremental bytes read <= 2x the bytes of the partitions written"
        out["met"] = out["incremental"]["x_partitions_written"] <= 2.0 and out["incremental_equals_full"]
    finally:
        for path in reversed(created):
            fs_local.rm(path, recursive=True)
        fs_local.rm(f"{local}/dt={history.day(history.DAYS)}", recursive=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", default="/tmp/linkai-bench-history", help="where the year of parts is kept")
    args = p.parse_args(argv)
    print(json.dumps(run(Path(args.cache)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
