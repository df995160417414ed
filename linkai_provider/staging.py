"""The dataset's hidden staging area: journal layout, writer identity, staleness, claims and garbage.

Under a dataset folder ``root``::

    root/part-<writer_id>.parquet                 compacted parts (what readers see)
    root/_linkai/journal/<writer_id>/writer.json  who writes this journal, and its heartbeat
    root/_linkai/journal/<writer_id>/seg-00000001.rows   rows, an Arrow IPC stream (not *.parquet: globs skip it)
    root/_linkai/journal/<writer_id>/claim-<other_writer_id>.json   another writer wants to adopt it
    root/_linkai/journal/<writer_id>/pcs-00000001.pieces  answered pieces (linkai_provider.piece_store)
    root/_linkai/pieces/<writer_id>.pieces        pieces compaction kept (files with no ok row yet)
    root/_linkai/keys/<part>.g<n>-<hash>.keys     the ok keys of a part, by source folder (linkai_provider.keyindex)

Readers never look inside ``_linkai`` (``_``-prefixed names are skipped by DuckDB's hive globs, Spark,
pyarrow datasets and Athena), and segment names do not end in ``.parquet``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from linkai_provider.io.storage import is_local

log = logging.getLogger(__name__)

STAGING = "_linkai"
JOURNALS = f"{STAGING}/journal"
PIECES_DIR = f"{STAGING}/pieces"
KEYS_DIR = f"{STAGING}/keys"
WRITER_FILE = "writer.json"
SEGMENT_RE = re.compile(r"^seg-(\d{8})\.rows$")
PIECE_SEGMENT_RE = re.compile(r"^pcs-(\d{8})\.pieces$")
CLAIM_RE = re.compile(r"^claim-(.+)\.json$")
JOURNALS_KEY = b"linkai.journals"  # key-value metadata of a part: the journal ids compacted into it
PART_SUFFIX = ".parquet"
_FOOTER_TAIL = 64 * 1024


def _now() -> float:
    return time.time()


# -- process identity --------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def pid_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is told apart."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def pid_namespace() -> str | None:
    """Boot and pid namespace of this process: pids are comparable only between equal values."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def process_state(pid: int, start: int | None) -> str:
    """``dead``, ``alive`` or ``unknown`` for a pid of this host and pid namespace."""
    fields = _proc_stat(pid)
    if fields is not None:
        if fields[0] in ("Z", "X"):  # exited, not yet reaped
            return "dead"
        if start is not None:
            return "alive" if pid_start(pid) == start else "dead"
        return "unknown"
    if os.path.isdir("/proc/self"):
        return "dead"
    try:  # no procfs: only "not running" is certain
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except OSError:
        pass
    return "unknown"


@dataclass(frozen=True)
class WriterIdentity:
    """Who writes a journal. ``writer_id`` is unique and safe as a file name."""

    writer_id: str
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    host: str = ""
    pid: int = 0
    pid_start: int | None = None
    pid_namespace: str | None = None
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    @classmethod
    def new(
        cls,
        *,
        dag_id: str | None = None,
        task_id: str | None = None,
        run_id: str | None = None,
        map_index: int | None = None,
        try_number: int | None = None,
    ) -> WriterIdentity:
        pid = os.getpid()
        return cls(
            writer_id=new_writer_id(run_id, map_index, try_number),
            dag_id=dag_id,
            task_id=task_id,
            run_id=run_id,
            map_index=map_index,
            try_number=try_number,
            host=socket.gethostname(),
            pid=pid,
            pid_start=pid_start(pid),
            pid_namespace=pid_namespace(),
        )

    def renewed(self) -> WriterIdentity:
        """The same writer under a fresh id (a new journal after the old one was forfeited)."""
        return replace(self, writer_id=new_writer_id(self.run_id, self.map_index, self.try_number))

    def to_json(self, heartbeat: float) -> bytes:
        doc = asdict(self)
        doc["heartbeat_at"] = datetime.fromtimestamp(heartbeat, timezone.utc).isoformat()
        return json.dumps(doc, sort_keys=True).encode()


def new_writer_id(run_id: str | None, map_index: int | None, try_number: int | None) -> str:
    suffix = uuid.uuid4().hex[:12]
    if not run_id:
        return f"cli-{suffix}"
    run = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)[:60].lstrip("._") or "run"
    return f"{run}-m{-1 if map_index is None else map_index}-t{try_number or 0}-{suffix}"


def gone_reason(me: WriterIdentity, other: Mapping[str, Any] | None, now: float, stale_after: float) -> str | None:
    """Why the writer described by ``other`` (its writer.json) is gone, or None while it may be alive."""
    if other is None:
        return "it has no writer.json"
    same_ti = me.run_id is not None and all(
        other.get(k) == getattr(me, k) for k in ("dag_id", "task_id", "run_id", "map_index")
    )
    theirs, mine = other.get("try_number"), me.try_number
    if same_ti and isinstance(theirs, int) and isinstance(mine, int) and theirs < mine:
        return f"it is try {theirs} of this task instance (Airflow runs one try at a time)"
    if other.get("host") == me.host and other.get("pid_namespace") == me.pid_namespace:
        state = process_state(int(other.get("pid") or 0), other.get("pid_start"))
        if state == "dead":
            return f"its process {other.get('pid')} on this host has ended"
    try:
        beat = datetime.fromisoformat(str(other["heartbeat_at"])).timestamp()
    except (KeyError, ValueError):
        return "its heartbeat is unreadable"
    if now - beat > stale_after:
        return f"its last heartbeat was {now - beat:.0f} s ago"
    return None


# -- listing -----------------------------------------------------------------------------------------------
@dataclass
class JournalFiles:
    """One journal directory as listed: file name -> size."""

    folder: str  # the dataset folder holding _linkai
    writer_id: str
    files: dict[str, int] = field(default_factory=dict)

    @property
    def dir(self) -> str:
        return journal_dir(self.folder, self.writer_id)

    @property
    def segments(self) -> list[str]:
        return [f"{self.dir}/{n}" for n in sorted(self.files) if SEGMENT_RE.match(n)]

    @property
    def piece_segments(self) -> list[str]:
        return [f"{self.dir}/{n}" for n in sorted(self.files) if PIECE_SEGMENT_RE.match(n)]

    @property
    def claimants(self) -> list[str]:
        return [m.group(1) for n in self.files if (m := CLAIM_RE.match(n))]

    @property
    def has_writer(self) -> bool:
        return WRITER_FILE in self.files


@dataclass
class Listing:
    parts: dict[str, int]  # visible part path -> size
    journals: dict[tuple[str, str], JournalFiles]  # (folder, writer_id) -> files
    pieces: dict[str, int] = field(default_factory=dict)  # compacted piece files -> size
    keys: dict[str, dict[str, int]] = field(default_factory=dict)  # folder -> key-index file name -> size

    def segments(self) -> list[str]:
        return [s for j in self.journals.values() for s in j.segments]


def journal_dir(root: str, writer_id: str) -> str:
    return f"{root.rstrip('/')}/{JOURNALS}/{writer_id}"


def _walk_local(root: str) -> dict[str, int]:
    """Every file under ``root`` (path -> size), listed in the order an object store lists keys: a
    folder's subfolders (``_linkai`` among them) before its own files. Rows only move from a journal
    (``_linkai/journal/``) to a part in the folder above, and an index or kept pieces are written
    before their journal is deleted, so listing the source of a move before its target never misses
    both (fsspec's ``find`` lists a folder's files before its subfolders: a journal compacted in
    between was seen neither as a journal nor as a part). Entries that vanish while listed (a temporary
    file renamed, a segment deleted) are skipped."""
    found: dict[str, int] = {}

    def entries(folder: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as it:
                return sorted(it, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def walk(folder: str) -> None:
        for entry in entries(folder):
            try:
                if entry.is_dir(follow_symlinks=True):
                    walk(entry.path)
            except FileNotFoundError:
                continue
        for entry in entries(folder):  # listed again, after the subfolders: what moved up is here now
            try:
                if entry.is_file(follow_symlinks=True):
                    found[entry.path] = entry.stat(follow_symlinks=True).st_size
            except FileNotFoundError:
                continue

    walk(root)
    return found


def scan(fs: AbstractFileSystem, root: str) -> Listing:
    """One recursive listing of ``root``: visible parts, every journal, piece file and key-index file
    at any depth. Object stores list keys in order (``_linkai/...`` before ``part-...``); local disk is
    walked the same way (:func:`_walk_local`)."""
    root = fs._strip_protocol(root).rstrip("/")
    if is_local(fs):
        sizes = _walk_local(root)
    else:
        fs.invalidate_cache(root)  # other processes write here; fsspec's listing cache would hide them
        try:
            found = fs.find(root, detail=True)
        except FileNotFoundError:
            found = {}
        sizes = {path: int(info.get("size") or 0) for path, info in found.items() if info.get("type") != "directory"}
    listing = Listing({}, {})
    for path, size in sizes.items():
        rel = path[len(root) :].lstrip("/") if path.startswith(root) else path
        parts = rel.split("/")
        if path.endswith(PART_SUFFIX) and not any(p.startswith((".", "_")) for p in parts):
            listing.parts[path] = size
            continue
        for i in range(len(parts) - 2):  # <folder>/_linkai/journal/<id>/<name>, <folder>/_linkai/<kind>/<name>
            if parts[i] != STAGING:
                continue
            if parts[-1].startswith("."):
                break  # a write in progress (temporary file), not there yet
            folder = "/".join([root, *parts[:i]]) if i else root
            if parts[i + 1] == "journal" and i + 3 == len(parts) - 1:
                key = (folder, parts[i + 2])
                listing.journals.setdefault(key, JournalFiles(folder, parts[i + 2])).files[parts[i + 3]] = size
            elif parts[i + 1] == "pieces" and i + 2 == len(parts) - 1 and parts[-1].endswith(".pieces"):
                listing.pieces[path] = size
            elif parts[i + 1] == "keys" and i + 2 == len(parts) - 1:
                listing.keys.setdefault(folder, {})[parts[-1]] = size
            break
    return listing


def list_journal(fs: AbstractFileSystem, root: str, writer_id: str, prefix: str = "") -> JournalFiles:
    """A fresh listing of one journal directory (only names starting with ``prefix``: object stores
    filter on the server, so a heartbeat's claim check does not list every segment)."""
    jf = JournalFiles(root.rstrip("/"), writer_id)
    fs.invalidate_cache(jf.dir)
    try:
        found = fs.find(jf.dir, detail=True, **({"prefix": prefix} if prefix else {}))
    except FileNotFoundError:
        found = {}
    for path, info in found.items():
        name = path.rsplit("/", 1)[-1]
        if info.get("type") != "directory" and name.startswith(prefix):
            jf.files[name] = int(info.get("size") or 0)
    return jf


def read_writer(fs: AbstractFileSystem, root: str, writer_id: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(fs.cat_file(f"{journal_dir(root, writer_id)}/{WRITER_FILE}"))
    except (FileNotFoundError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def remove_journal(fs: AbstractFileSystem, root: str, writer_id: str) -> None:
    """Delete every file of a journal as listed now (and its folder on local disk)."""
    jf = list_journal(fs, root, writer_id)
    paths = [f"{jf.dir}/{name}" for name in jf.files]
    if paths:
        try:
            fs.rm(paths)
        except FileNotFoundError:  # another writer deleted the same garbage
            pass
    _rmdir_local(fs, jf.dir)


def _rmdir_local(fs: AbstractFileSystem, folder: str) -> None:
    if is_local(fs):
        try:
            os.rmdir(folder)
        except OSError:  # not empty (a claim just arrived) or already gone: harmless either way
            pass


# -- garbage: journals already compacted into a visible part ------------------------------------------------
def _journals_of_footer(tail: bytes) -> list[str] | None:
    """Journal ids in a part's footer, from the file's last bytes; None if the tail is too short."""
    if len(tail) < 8 or tail[-4:] != b"PAR1":
        return []
    length = struct.unpack("<I", tail[-8:-4])[0]
    if length + 8 > len(tail):
        return None
    meta = pq.read_metadata(pa.BufferReader(b"PAR1" + tail[-(length + 8) :])).metadata or {}
    raw = meta.get(JOURNALS_KEY)
    return list(json.loads(raw)) if raw else []


def compacted_ids(fs: AbstractFileSystem, parts: Mapping[str, int], cache: dict[str, list[str]]) -> set[str]:
    """Ids of the journals that visible parts say they contain. Parts never change (unique names),
    so ``cache`` keeps what was read; only footers are fetched, in one concurrent batch."""
    todo = [p for p in parts if p not in cache]
    if todo:
        starts = [max(0, parts[p] - _FOOTER_TAIL) for p in todo]
        tails = fs.cat_ranges(todo, starts, [parts[p] for p in todo], on_error="return")
        for path, tail in zip(todo, tails, strict=True):
            if isinstance(tail, BaseException):
                if isinstance(tail, FileNotFoundError):
                    continue
                raise tail
            ids = _journals_of_footer(bytes(tail))
            if ids is None:  # footer longer than the tail read: fetch the whole file
                ids = _journals_of_footer(fs.cat_file(path)) or []
            cache[path] = ids
    return {jid for p in parts if p in cache for jid in cache[p]}


# -- claims --------------------------------------------------------------------------------------------------
def claim_and_decide(
    fs: AbstractFileSystem,
    root: str,
    me: WriterIdentity,
    candidates: Iterable[str],
    *,
    stale_after: float,
    settle: float,
    write: Callable[[str, bytes], None],
    logger: Any = log,
) -> list[str]:
    """Claim each dead journal in ``candidates``; return those this writer won.

    A claim is ``claim-<me>.json`` {claimant, at}. After ``settle`` seconds every claim is read back;
    valid claims are this writer's and those whose claimant's own journal is alive; the lowest
    ``(at, claimant)`` wins. A claim whose write took longer than ``settle / 2`` is withdrawn: another
    claimant may have listed before it was visible, and both would adopt."""
    mine: list[str] = []
    for wid in candidates:
        at = _now()
        path = f"{journal_dir(root, wid)}/claim-{me.writer_id}.json"
        write(path, json.dumps({"claimant": me.writer_id, "at": at}).encode())
        if _now() - at > settle / 2:
            _unclaim(fs, path)
            logger.info("Journal %s: claim written too slowly to be safe, left for a later run", wid)
        else:
            mine.append(wid)
    if not mine:
        return []
    time.sleep(settle)
    won = []
    now = _now()
    for wid in mine:
        jf = list_journal(fs, root, wid)
        valid = []
        for claimant in jf.claimants:
            try:
                doc = json.loads(fs.cat_file(f"{jf.dir}/claim-{claimant}.json"))
                at = float(doc["at"])
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                continue  # withdrawn or unreadable
            if claimant == me.writer_id or gone_reason(me, read_writer(fs, root, claimant), now, stale_after) is None:
                valid.append((at, claimant))
        if valid and min(valid)[1] == me.writer_id:
            won.append(wid)
        else:
            _unclaim(fs, f"{jf.dir}/claim-{me.writer_id}.json")
    return won


def adopt_dead(
    fs: AbstractFileSystem,
    root: str,
    me: WriterIdentity,
    *,
    stale_after: float,
    settle: float,
    write: Callable[[str, bytes], None],
    cache: dict[str, list[str]],
    exclude: Iterable[str] = (),
    logger: Any = log,
) -> list[str]:
    """The journals directly in ``root`` whose writers are gone and that this writer won the claim
    for. Garbage (journals a visible part already contains, folders with nothing but claims) is
    deleted on the way; live writers' journals are never touched."""
    root = root.rstrip("/")
    skip = {me.writer_id, *exclude}
    listing = scan(fs, root)
    done = compacted_ids(fs, listing.parts, cache)
    now = _now()
    candidates = []
    for (folder, wid), jf in listing.journals.items():
        if folder != root or wid in skip:
            continue
        if wid in done:
            logger.info("Journal %s is already in a part (a kill after compaction): deleting it", wid)
            remove_journal(fs, root, wid)
        elif not jf.has_writer and not jf.segments:
            # Only claims are left (their journal was compacted meanwhile): delete them once void.
            # Nothing else is touched: a writer may be creating its journal here right now.
            if all(gone_reason(me, read_writer(fs, root, c), now, stale_after) for c in jf.claimants):
                for claimant in jf.claimants:
                    _unclaim(fs, f"{jf.dir}/claim-{claimant}.json")
                _rmdir_local(fs, jf.dir)
        elif reason := gone_reason(me, read_writer(fs, root, wid) if jf.has_writer else None, now, stale_after):
            logger.info("Journal %s: its writer is gone (%s)", wid, reason)
            candidates.append(wid)
    if not candidates:
        return []
    won = claim_and_decide(fs, root, me, candidates, stale_after=stale_after, settle=settle, write=write, logger=logger)
    # Read parts only now: a writer that compacted one of these wrote its part before it let its
    # heartbeat lapse, so a part listed after the claims shows it.
    done = compacted_ids(fs, scan(fs, root).parts, cache)
    adopted = []
    for wid in won:
        if wid in done:
            remove_journal(fs, root, wid)
        else:
            adopted.append(wid)
    if adopted:
        logger.info("Adopting %d journal(s) of gone writers: %s", len(adopted), ", ".join(adopted))
    return adopted


def _unclaim(fs: AbstractFileSystem, path: str) -> None:
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


__all__ = [
    "JOURNALS",
    "JOURNALS_KEY",
    "KEYS_DIR",
    "PIECES_DIR",
    "STAGING",
    "JournalFiles",
    "Listing",
    "WriterIdentity",
    "adopt_dead",
    "claim_and_decide",
    "compacted_ids",
    "gone_reason",
    "journal_dir",
    "list_journal",
    "read_writer",
    "remove_journal",
    "scan",
]
