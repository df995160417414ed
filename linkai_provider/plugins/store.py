"""A local DuckDB cache of the transcript dataset, kept in step with its parts.

Why a cache: the page asks about the *current* row of every file (its latest ``transcribed_at``), and
computing that over every part on each request costs seconds at a million rows, longer on object
storage. The cache holds every row once, marks the current ones, and keeps a lower-cased copy of
the text, so a search is one scan of that column (about 0.3 s per million transcripts of ~500
characters on two cores) and the days view a group-by.

How it stays right: parts are written whole and never changed in place, so a part's path and size
identify its rows. Each refresh lists the dataset (the same listing every reader uses: hidden and
``_``-prefixed names skipped), reads only the parts it has not seen, drops the rows of parts that
are gone, and re-ranks only the files those rows belong to. A refresh runs when a request finds the
listing older than ``refresh_seconds``; requests wait for it (one at a time) rather than answer
from a listing they know is old.

It reads only the configured dataset, never writes to it, and keeps its file under ``cache_dir``
readable by the api-server's user alone (it holds transcripts).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from linkai_provider.plugins.config import PageConfig
from linkai_provider.plugins.queries import HitCache

if TYPE_CHECKING:
    import duckdb
    from fsspec import AbstractFileSystem

log = logging.getLogger(__name__)

CACHE_FORMAT = "2"  # bump when the tables below change: an older cache file is rebuilt
READ_BATCH = 256  # parts per read_parquet call
# The columns the page uses, with the type each has in schema v3; older parts lack some (null here).
COLUMNS: dict[str, str] = {
    "source_uri": "VARCHAR",
    "status": "VARCHAR",
    "text": "VARCHAR",
    "error_type": "VARCHAR",
    "error_code": "INTEGER",
    "error_message": "VARCHAR",
    "transcribed_at": "TIMESTAMP",  # UTC (the session's time zone is UTC)
    "dag_id": "VARCHAR",
    "task_id": "VARCHAR",
    "run_id": "VARCHAR",
    "map_index": "INTEGER",
    "try_number": "INTEGER",
    "audio_format": "VARCHAR",
    "audio_duration_s": "DOUBLE",
    "attempts": "INTEGER",
    "chunks": "INTEGER",
    "segments": "STRUCT(start_s DOUBLE, end_s DOUBLE, text VARCHAR, channel INTEGER)[]",
    "warnings": "VARCHAR[]",
}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS parts (path VARCHAR PRIMARY KEY, size BIGINT, rows BIGINT);
CREATE SEQUENCE IF NOT EXISTS rid_seq;
CREATE TABLE IF NOT EXISTS rows (
    rid BIGINT, part VARCHAR, dt VARCHAR,
    {", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())},
    lt VARCHAR,            -- lower(text) of current rows only (null once superseded): what a search scans
    is_current BOOLEAN     -- the latest row of its source_uri
);
"""


class DatasetUnavailable(RuntimeError):
    """The dataset could not be read (not configured, unreachable, DuckDB missing): says what to fix."""


@dataclass(frozen=True)
class RefreshStats:
    parts_added: int
    parts_removed: int
    rows_added: int
    files_reranked: int
    seconds: float


class TranscriptStore:
    """The cache of one dataset. Thread-safe: :meth:`cursor` gives each request its own connection."""

    def __init__(self, config: PageConfig) -> None:
        if not config.transcripts_url:
            raise DatasetUnavailable(
                "no dataset configured: set [linkai] transcripts_url (env AIRFLOW__LINKAI__TRANSCRIPTS_URL) "
                "on the api-server, the same URL the transcribing DAGs write to"
            )
        self.config = config
        self.url: str = config.transcripts_url
        self._lock = threading.Lock()
        self._listed_at: float | None = None
        self._fs: AbstractFileSystem | None = None
        self._root = ""
        self.dag_ids: frozenset[str | None] = frozenset()  # the DAGs that wrote rows (None: outside a DAG)
        self.last_refresh: RefreshStats | None = None
        self.refreshed_at: float | None = None  # wall clock of the last successful listing
        self.version = 0  # bumped whenever the rows change: cached search hits of older versions are stale
        self.hits = HitCache()
        self._db = self._open()

    # -- the cache file ------------------------------------------------------------------------------
    def _open(self) -> duckdb.DuckDBPyConnection:
        try:
            import duckdb
        except ImportError as exc:
            raise DatasetUnavailable(
                "DuckDB is not installed on the api-server: pip install 'airflow-provider-linkai[analytics]'"
            ) from exc
        # A folder of our own, readable by the api-server's user only: the file, its write-ahead log and
        # DuckDB's spill files all hold transcripts.
        folder = self.config.cache_dir / f"transcripts-{self.config.cache_key}"
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        path = folder / "cache.duckdb"
        try:
            db = self._connect(duckdb, path)
        except duckdb.IOException:
            # Another api-server worker on this host holds the file: keep a private cache instead.
            path = folder / f"cache-{os.getpid()}.duckdb"
            _remove(path)
            db = self._connect(duckdb, path)
            atexit.register(_remove, path)
        log.info("Transcripts page: caching %s in %s", self.url, path)
        return db

    def _connect(self, duckdb: Any, path: Path) -> duckdb.DuckDBPyConnection:
        fresh = not path.exists()
        db = duckdb.connect(
            str(path),
            config={
                "memory_limit": self.config.memory_limit,
                "preserve_insertion_order": False,
                "autoinstall_known_extensions": False,  # never download an extension
                "autoload_known_extensions": False,
            },
        )
        db.execute("SET GLOBAL TimeZone = 'UTC'")  # every cursor: timestamps in and out are UTC
        if fresh:
            os.chmod(path, 0o600)
        found = _meta(db, "cache_format"), _meta(db, "dataset")
        if found != (CACHE_FORMAT, self.url) and found != (None, None):
            log.info("Transcripts page: rebuilding the cache (format or dataset changed)")
            db.execute("DROP TABLE IF EXISTS rows; DROP TABLE IF EXISTS parts; DROP TABLE IF EXISTS meta")
        db.execute(_SCHEMA)
        db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('cache_format', $f), ('dataset', $d)",
            {"f": CACHE_FORMAT, "d": self.url},
        )
        return db

    def close(self) -> None:
        self._db.close()

    # -- reading ------------------------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection for one request, after bringing the cache up to date if its listing is old."""
        self.ensure_fresh()
        return self._db.cursor()

    def ensure_fresh(self) -> None:
        if self._fresh():
            return
        with self._lock:
            if self._fresh():
                return  # another request refreshed while we waited
            try:
                self.last_refresh = self.refresh()
            except DatasetUnavailable:
                raise
            except Exception as exc:
                if self.refreshed_at is None:
                    raise DatasetUnavailable(f"could not read the dataset {self.url}: {exc}") from exc
                # Answer from what was read before; try again after refresh_seconds.
                log.warning("Transcripts page: could not list %s, showing the cached rows: %s", self.url, exc)
            self._listed_at = time.monotonic()

    def _fresh(self) -> bool:
        return self._listed_at is not None and time.monotonic() - self._listed_at < self.config.refresh_seconds

    # -- keeping in step ----------------------------------------------------------------------------
    def _filesystem(self) -> tuple[AbstractFileSystem, str]:
        if self._fs is None:
            from linkai_provider.io.storage import is_local, resolve

            fs, root = resolve(self.url, self.config.conn_id)
            if not is_local(fs):
                self._db.register_filesystem(fs)  # DuckDB reads s3:// and gs:// through fsspec
            self._fs, self._root = fs, root.rstrip("/")
        return self._fs, self._root

    def _duck_path(self, path: str) -> str:
        from linkai_provider.io.storage import is_local

        assert self._fs is not None
        return path if is_local(self._fs) else self._fs.unstrip_protocol(path)

    def refresh(self) -> RefreshStats:
        """List the dataset and apply the difference to the cache, in one transaction."""
        from linkai_provider.staging import scan

        started = time.monotonic()
        fs, root = self._filesystem()
        listed = {self._duck_path(path): size for path, size in scan(fs, root).parts.items()}
        known = dict(self._db.execute("SELECT path, size FROM parts").fetchall())
        gone = [path for path, size in known.items() if listed.get(path) != size]
        new = sorted(path for path, size in listed.items() if known.get(path) != size)
        con = self._db.cursor()
        rows_added = reranked = 0
        con.execute("BEGIN")
        try:
            con.execute("CREATE OR REPLACE TEMP TABLE touched (source_uri VARCHAR)")
            if gone:
                con.execute(
                    "INSERT INTO touched SELECT DISTINCT source_uri FROM rows WHERE part IN (SELECT unnest($p))",
                    {"p": gone},
                )
                con.execute("DELETE FROM rows WHERE part IN (SELECT unnest($p))", {"p": gone})
                con.execute("DELETE FROM parts WHERE path IN (SELECT unnest($p))", {"p": gone})
            for start in range(0, len(new), READ_BATCH):
                rows_added += self._load(con, new[start : start + READ_BATCH], listed)
            if new:
                con.execute(
                    "INSERT INTO touched SELECT DISTINCT source_uri FROM rows WHERE part IN (SELECT unnest($p))",
                    {"p": new},
                )
            reranked = _rerank(con)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        if gone or new:
            self.version += 1
            self._checkpoint()
        self.dag_ids = frozenset(r[0] for r in self._db.execute("SELECT DISTINCT dag_id FROM rows").fetchall())
        self.refreshed_at = time.time()
        stats = RefreshStats(len(new), len(gone), rows_added, reranked, time.monotonic() - started)
        if gone or new:
            log.info("Transcripts page: cache of %s refreshed: %s", self.url, stats)
        return stats

    def _load(self, con: duckdb.DuckDBPyConnection, paths: Sequence[str], sizes: dict[str, int]) -> int:
        """Insert the rows of ``paths``: schema versions differ (a column or field added later reads as
        null), and a batch of old parts may lack a column altogether."""
        source = "read_parquet($p, union_by_name = true, filename = true, hive_partitioning = false)"
        present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}", {"p": list(paths)}).fetchall()}
        select = ", ".join(f"{name}::{kind}" if name in present else f"NULL::{kind}" for name, kind in COLUMNS.items())
        dt = (
            "coalesce(nullif(regexp_extract(filename, '/dt=([^/]+)/', 1), ''), "
            "strftime(transcribed_at::TIMESTAMP, '%Y-%m-%d'))"
        )
        text = "text" if "text" in present else "NULL::VARCHAR"
        done = con.execute(
            f"INSERT INTO rows SELECT nextval('rid_seq'), filename, {dt}, {select}, lower({text}), false FROM {source}",
            {"p": list(paths)},
        ).fetchone()
        counts = dict(
            con.execute(
                "SELECT part, count(*) FROM rows WHERE part IN (SELECT unnest($p)) GROUP BY part", {"p": list(paths)}
            ).fetchall()
        )
        con.executemany("INSERT INTO parts VALUES (?, ?, ?)", [(p, sizes[p], counts.get(p, 0)) for p in paths])
        return int(done[0]) if done else 0

    def _checkpoint(self) -> None:
        try:
            self._db.execute("CHECKPOINT")  # fold the refresh into the file: later scans read it compacted
        except Exception as exc:  # a request's transaction is open; DuckDB checkpoints later by itself
            log.debug("Transcripts page: checkpoint deferred: %s", exc)


def _rerank(con: duckdb.DuckDBPyConnection) -> int:
    """Mark the latest row of every file in ``touched`` as its current row (ties: the later part).
    Rows arrive with their search copy (``lt``); a superseded row loses it, so history never slows a
    search down. Only rows whose state changes are written."""
    touched = con.execute("SELECT count(DISTINCT source_uri) FROM touched").fetchone()
    count = int(touched[0]) if touched else 0
    if not count:
        return 0
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE winners AS
        SELECT rid FROM rows WHERE source_uri IN (SELECT source_uri FROM touched)
        QUALIFY row_number() OVER (PARTITION BY source_uri ORDER BY transcribed_at DESC, part DESC, rid DESC) = 1
        """
    )
    con.execute(
        """
        UPDATE rows SET is_current = false, lt = NULL
        WHERE (is_current OR lt IS NOT NULL) AND source_uri IN (SELECT source_uri FROM touched)
          AND rid NOT IN (SELECT rid FROM winners)
        """
    )
    con.execute("UPDATE rows SET is_current = true WHERE NOT is_current AND rid IN (SELECT rid FROM winners)")
    con.execute(
        "UPDATE rows SET lt = lower(text) WHERE lt IS NULL AND text IS NOT NULL AND rid IN (SELECT rid FROM winners)"
    )
    return count


def _meta(db: duckdb.DuckDBPyConnection, key: str) -> str | None:
    try:
        row = db.execute("SELECT value FROM meta WHERE key = $k", {"k": key}).fetchone()
    except Exception:  # no meta table yet
        return None
    return row[0] if row else None


def _remove(path: Path) -> None:
    for name in (path, Path(f"{path}.wal")):
        try:
            name.unlink()
        except FileNotFoundError:
            pass
