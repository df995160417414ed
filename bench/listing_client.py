"""One listing mode in a process of its own, so that its peak memory is the listing's (bench scenario
``listing``). Usage: ``python -m bench.listing_client MODE ENDPOINT BUCKET/PREFIX SHARDS MANIFEST_URL``.

Modes: ``find`` (what ``list_audio`` did before: ``fs.find(detail=True)``), ``list_audio`` (one task
lists everything), ``hash_shard`` (one of SHARDS shards lists everything and keeps its slice),
``manifest_write`` (the listing task writes the manifest), ``manifest_read`` (one shard reads its
slice). Prints one JSON line: seconds, S3 calls by operation (counted through botocore's events),
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


if __name__ == "__main__":
    main()
