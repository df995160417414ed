"""One listing mode in a process of its own, so that its peak memory is the listing's (bench scenario
``listing``). Usage: ``python -m bench.listing_client MODE ENDPOINT BUCKET/PREFIX SHARDS MANIFEST_URL``.

Modes: ``find`` (what ``list_audio`` did before: ``fs.find(detail=True)``), ``list_audio`` (one task
lists everything), ``hash_shard`` (one of SHARDS shards lists everything and keeps its slice),
``manifest_write`` (the listing task writes the manifest), ``manifest_read`` (one shard reads its
slice), ``manifest_synthetic`` (the manifest writer alone over ENDPOINT-many synthetic entries, e.g.
1,000,000, written to the local path MANIFEST_URL: a night too large to list on moto). Prints one
JSON line: seconds, S3 calls by operation (counted through botocore's events),
files, peak RSS growth over a baseline taken after imports and pyarrow's first allocation.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from unittest import mock


def _kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main() -> None:
    mode, endpoint, prefix, shards, manifest = sys.argv[1:6]
    shards_n = int(shards)
    import pyarrow as pa
    import s3fs

    from linkai_provider.io import sources
    from linkai_provider.sharding import Shard, read_shard, shard_of, write_manifest

    if mode == "manifest_synthetic":
        synthetic(int(endpoint), shards_n, manifest)
        return
    fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint})
    calls: Counter[str] = Counter()
    fs.s3.meta.events.register("before-call.s3", lambda event_name, **kw: calls.update([event_name.split(".")[-1]]))
    fs.ls(prefix.split("/")[0])  # connect
    pa.array(["warm-up"])  # pyarrow's allocator reserves ~50 MB on first use: not the listing's
    calls.clear()
    base = _kb("VmRSS")
    resolve = mock.patch("linkai_provider.io.sources.resolve", lambda url, conn=None: (fs, fs._strip_protocol(url)))
    resolve2 = mock.patch("linkai_provider.sharding.resolve", lambda url, conn=None: (fs, fs._strip_protocol(url)))
    out: dict = {"mode": mode}
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    with resolve, resolve2:
        if mode == "find":
            found = fs.find(prefix, detail=True)
            out["files"] = len(found)
        elif mode == "list_audio":
            listing = sources.list_audio(f"s3://{prefix}")
            out["files"] = len(listing.files)
        elif mode == "hash_shard":
            listing = sources.list_audio(f"s3://{prefix}", keep=Shard(0, shards_n).holds)
            out["files"] = len(listing.files)
        elif mode == "manifest_write":
            summary = write_manifest(f"s3://{prefix}", manifest, shards_n)
            out.update(summary.as_dict())
            out["files"] = summary.files_found
        elif mode == "manifest_read":
            listing = read_shard(manifest, 0)
            out["files"] = len(listing.files)
        else:
            raise SystemExit(f"unknown mode {mode}")
    out["seconds"] = time.perf_counter() - t0
    out["cpu_s"] = time.process_time() - cpu0
    out["calls"] = dict(calls)
    out["rss_growth_mb"] = (_kb("VmHWM") - base) / 1024
    if mode == "list_audio":  # balance of the hash slices over this listing (the bench's +-10 % check)
        counts = Counter(shard_of(f.uri, shards_n) for f in listing.files)
        out["hash_slices"] = [counts.get(i, 0) for i in range(shards_n)]
    print(json.dumps(out))


def synthetic(n: int, shards: int, path: str) -> None:
    """write_manifest over ``n`` entries shaped like the S3 listing's (URI, size, 32-hex ETag)."""
    import pyarrow as pa
    from fsspec.implementations.local import LocalFileSystem

    from linkai_provider.io.sources import Entry
    from linkai_provider.sharding import write_manifest

    fs = LocalFileSystem()

    def entries(*args, **kwargs):  # type: ignore[no-untyped-def]
        for i in range(n):
            uri = f"s3://bench/calls/2026-11-{i % 28 + 1:02d}/agent-{i % 97:02d}/call-{i:07d}.wav"
            yield Entry(uri, uri[5:], 64, f"etag:{(i * 2654435761) % 2**128:032x}", "wav", fs)

    pa.array(["warm-up"])
    base = _kb("VmRSS")
    t0, cpu0 = time.perf_counter(), time.process_time()
    with mock.patch("linkai_provider.sharding.iter_files", entries):
        summary = write_manifest("s3://bench/calls/", path, shards)
    out = {"mode": "manifest_synthetic", "files": n, **summary.as_dict()}
    out.update(seconds=time.perf_counter() - t0, cpu_s=time.process_time() - cpu0)
    out["rss_growth_mb"] = (_kb("VmHWM") - base) / 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
