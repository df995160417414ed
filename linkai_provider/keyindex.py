"""The incremental check at a cost that follows the listing, not the history: a key index of the parts.

Which of tonight's files are done? Reading every ``ok`` key of a year of parts costs a second and a gigabyte
of memory (3.65 M rows); reading only the ``source_uri`` column and filtering in Arrow still reads every
part. So each part gets a small index beside it, written when the part is written (compaction, bulk
loads) or, for parts without one (older versions, other tools), the first time a planner reads the part::

    folder/part-<id>.parquet
    folder/_linkai/keys/part-<id>.g<n>-<hash>.keys    one of the part's n groups (n <= 8)
    folder/_linkai/keys/part-<id>.g0.keys             the part has no row (empty file)

A group holds the part's keys ``(source_uri, source_fingerprint, status)`` whose URI lies under one
folder *prefix* (as deep as keeps the groups at 8 or fewer: few names to list), sorted, as Parquet;
``<hash>`` is a hash of that prefix. A key can only be in a group whose prefix is an ancestor folder of
its URI, so a planner hashes the ancestor folders of the URIs it listed and reads just the groups whose
hash is among them: tonight's ``s3://calls/2026-11-28/`` never opens the index of
``s3://calls/2025-11-28/``. What it reads follows the folders it listed (their history, not the
dataset's); the rest of the history costs one listing of names. Hash collisions only add reads; a part
counts through its index only when all ``n`` groups are listed (they are written after the part, and
the count is in every name, so a listing that caught only some of them is seen to be incomplete) and
the part itself is listed.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from linkai_provider.staging import KEYS_DIR, PART_SUFFIX, Listing

Key = tuple[str, str]
RowKey = tuple[str, str, str]  # (source_uri, source_fingerprint, status)
KEYS_SUFFIX = ".keys"
MAX_GROUPS = 8
KEY_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string()),
        pa.field("source_fingerprint", pa.string()),
        pa.field("status", pa.string()),
    ],
    metadata={"linkai.keys_version": "1"},
)
_NAME = re.compile(r"^(?P<stem>.+)\.g(?P<n>\d+)(?:-(?P<hash>[0-9a-f]{16}))?\.keys$")


def prefix_hash(prefix: str) -> str:
    return hashlib.sha1(prefix.encode(), usedforsecurity=False).hexdigest()[:16]


def _dir(uri: str) -> str:
    return uri[: uri.rfind("/") + 1]


def ancestors(folder: str) -> Iterator[str]:
    """``""`` and every prefix of ``folder`` that ends with ``/`` (``s3:/``, ``s3://``, ``s3://b/``, ...)."""
    yield ""
    for i, char in enumerate(folder):
        if char == "/":
            yield folder[: i + 1]


def _cut(folder: str, depth: int) -> str:
    """``folder`` up to its ``depth``-th ``/`` (all of it when shallower)."""
    end = -1
    for _ in range(depth):
        end = folder.find("/", end + 1)
        if end < 0:
            return folder
    return folder[: end + 1]


def group_prefixes(uris: Iterable[str], max_groups: int = MAX_GROUPS) -> dict[str, str]:
    """Folder of each URI -> its group's prefix: the deepest grouping with at most ``max_groups`` groups,
    each group's prefix the longest folder its URIs share."""
    folders = sorted({_dir(u) for u in uris})
    if not folders:
        return {}
    depth = max(f.count("/") for f in folders)
    while depth > 0 and len({_cut(f, depth) for f in folders}) > max_groups:
        depth -= 1
    groups: dict[str, list[str]] = {}
    for folder in folders:
        groups.setdefault(_cut(folder, depth) if depth else "", []).append(folder)
    out = {}
    for members in groups.values():
        common = os.path.commonprefix(members)
        common = common[: common.rfind("/") + 1]
        out.update(dict.fromkeys(members, common))
    return out


def index_files(part: str, keys: Iterable[RowKey]) -> dict[str, bytes]:
    """The index of ``part`` (its path) holding its rows' ``keys``: index path -> content. Failed rows
    are indexed too: analytics asks which parts hold any row of a file."""
    folder, name = part.rsplit("/", 1)
    stem = name[: -len(PART_SUFFIX)] if name.endswith(PART_SUFFIX) else name
    base = f"{folder}/{KEYS_DIR}/{stem}"
    unique = sorted(set(keys))
    prefixes = group_prefixes(key[0] for key in unique)
    groups: dict[str, list[RowKey]] = {}
    for key in unique:
        groups.setdefault(prefixes[_dir(key[0])], []).append(key)
    if not groups:
        return {f"{base}.g0{KEYS_SUFFIX}": b""}
    files = {}
    for prefix, members in groups.items():
        columns = list(zip(*members, strict=True))
        table = pa.Table.from_arrays([pa.array(c, pa.string()) for c in columns], schema=KEY_SCHEMA)
        table = table.replace_schema_metadata({**(KEY_SCHEMA.metadata or {}), b"linkai.prefix": prefix.encode()})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        files[f"{base}.g{len(groups)}-{prefix_hash(prefix)}{KEYS_SUFFIX}"] = sink.getvalue().to_pybytes()
    return files


def parse(listing: Listing) -> dict[tuple[str, str], PartIndex]:
    """The index files a listing shows, by (folder, part stem)."""
    parts: dict[tuple[str, str], PartIndex] = {}
    for folder, names in listing.keys.items():
        for name in names:
            m = _NAME.match(name)
            if m is None:
                continue
            entry = parts.setdefault((folder, m["stem"]), PartIndex())
            entry.groups.setdefault(int(m["n"]), {})[m["hash"] or ""] = f"{folder}/{KEYS_DIR}/{name}"
    return parts


@dataclass
class PartIndex:
    groups: dict[int, dict[str, str]] = field(default_factory=dict)  # n -> {prefix hash: index path}

    def complete(self) -> dict[str, str] | None:
        """Prefix hash -> index file of every group, or None while some group is missing."""
        for n, found in self.groups.items():
            if n == 0:
                return {}  # the part has no ok row
            if len(found) == n:
                return found
        return None


def wanted_hashes(uris: Iterable[str]) -> set[str]:
    """Hashes of every ancestor folder of ``uris``: the groups that may hold them."""
    return {prefix_hash(a) for folder in {_dir(u) for u in uris} for a in ancestors(folder)}


__all__ = [
    "KEYS_SUFFIX",
    "MAX_GROUPS",
    "PartIndex",
    "ancestors",
    "group_prefixes",
    "index_files",
    "parse",
    "prefix_hash",
    "wanted_hashes",
]
