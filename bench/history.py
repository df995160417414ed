"""Bench scenario ``history`` (issue 16 item 1): what the incremental check costs against a year of history.

A year of nightly runs: 365 daily partitions ``dt=<day>/`` of 10,000 rows each (3.65 M rows; the audio
was ``s3://calls/<day>/call-*.wav``; 2 % failed), written once with pyarrow as an older version left
them (no key index) and cached (``--cache``, default ``/tmp/linkai-bench-history``). Tonight's run
lists 10,000 files; the planning step (the done check under the dataset root, then the plan) runs in
a fresh process per measurement, which reports its wall time and peak RSS (``ru_maxrss``):

- ``empty``: the same listing against an empty dataset (the baseline);
- ``index``: the key index (this version), tonight's new files; ``index_year_old``: the 10,000 files of
  the first day, all done a year ago, all skipped;
- ``arrow``: no index, every part's ``source_uri``/``source_fingerprint``/``status`` read by column and
  filtered in Arrow against the listed URIs (the other candidate);
- ``legacy``: ``completed_keys`` (0.2.0: every ok key of the history in a Python set);
- ``build``: the first run after an upgrade, which reads every part by column and writes its index.

Each mode runs ``--repeat`` times, interleaved; local disk, then S3 (a moto server process holding
a copy). ``python -m bench.history --help``; ``bench/run.py --scenario history`` calls :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DAYS, PER_DAY, LISTED = 365, 10_000, 10_000
FIRST = date(2025, 11, 29)
_VOCABULARY = (
    "the a to and of I you that it is we for on have be this with your can my call account please thank "
    "number order payment card help problem service customer support time today yes no okay right sure "
    "check send email address phone change cancel refund delivery week month year morning back again"
)
WORDS = np.array(_VOCABULARY.split())
BUCKET = "history-bench"


def day(n: int) -> str:
    return (FIRST + timedelta(days=n)).isoformat()


def keys_of_day(n: int, count: int = PER_DAY) -> tuple[list[str], list[str]]:
    """The URIs and fingerprints of day ``n``'s files: deterministic, so a later listing can name them."""
    rng = np.random.default_rng(n)
    tags = rng.integers(0, 2**63, size=(count, 2), dtype=np.int64)
    uris = [f"s3://calls/{day(n)}/call-{i:05d}-{a & 0xFFFFFF:06x}.wav" for i, (a, _) in enumerate(tags)]
    fps = [f"etag:{a:016x}{b:016x}" for a, b in tags]
    return uris, fps


def day_table(n: int) -> pa.Table:
    from linkai_provider.dataset import SCHEMA

    rng = np.random.default_rng(10_000 + n)
    uris, fps = keys_of_day(n)
    words = WORDS[rng.integers(0, len(WORDS), size=(PER_DAY, 60))]
    texts = [" ".join(w) for w in words]  # ~300 characters, every one different
    ok = rng.random(PER_DAY) >= 0.02
    at = np.datetime64(f"{day(n)}T00:30:00") + rng.integers(0, 3_600_000_000, PER_DAY).astype("timedelta64[us]")
    duration = rng.uniform(30, 600, PER_DAY)
    cols: dict[str, Any] = {
        "source_uri": uris,
        "source_size_bytes": (duration * 32_000).astype(np.int64),
        "source_fingerprint": fps,
        "content_sha256": [f"{x:016x}" * 4 for x in rng.integers(0, 2**63, PER_DAY)],
        "audio_format": ["wav"] * PER_DAY,
        "audio_duration_s": duration,
        "status": np.where(ok, "ok", "failed").tolist(),
        "text": [t if k else None for t, k in zip(texts, ok, strict=True)],
        "error_type": [None if k else "ServiceUnavailableError" for k in ok],
        "error_code": [None if k else 503 for k in ok],
        "error_message": [None if k else "upstream busy" for k in ok],
        "attempts": np.ones(PER_DAY, np.int32),
        "latency_ms": rng.integers(300, 9000, PER_DAY),
        "transcribed_at": pa.array(at, pa.timestamp("us", tz="UTC")),
        "endpoint": ["https://api.linkai.cloud"] * PER_DAY,
        "dag_id": ["linkai_nightly_transcription"] * PER_DAY,
        "task_id": ["transcribe"] * PER_DAY,
        "run_id": [f"scheduled__{day(n + 1)}T00:00:00+00:00"] * PER_DAY,
        "map_index": np.zeros(PER_DAY, np.int32),
        "try_number": np.ones(PER_DAY, np.int32),
        "chunks": [1 if k else None for k in ok],
        "segments": [
            [{"start_s": 0.0, "end_s": float(d), "text": t, "channel": None}] if k else None
            for t, d, k in zip(texts, duration, ok, strict=True)
        ],
        "warnings": [None] * PER_DAY,
    }
    return pa.table({name: pa.array(cols[name], SCHEMA.field(name).type) for name in SCHEMA.names}, schema=SCHEMA)


def build_history(cache: Path) -> Path:
    """The year of parts under ``cache/history`` (built once; ~20 s per 100 days)."""
    root = cache / "history"
    marker = cache / "history.json"
    if marker.exists() and json.loads(marker.read_text()) == {"days": DAYS, "per_day": PER_DAY}:
        return root
    shutil.rmtree(root, ignore_errors=True)
    for n in range(DAYS):
        folder = root / f"dt={day(n)}"
        folder.mkdir(parents=True)
        pq.write_table(day_table(n), folder / f"part-scheduled__{day(n + 1)}-m0-t1.parquet", row_group_size=64_000)
        if n % 50 == 0:
            print(f"[history] built {n + 1}/{DAYS} days", file=sys.stderr, flush=True)
    marker.write_text(json.dumps({"days": DAYS, "per_day": PER_DAY}))
    return root


def drop_index(fs: Any, root: str) -> None:
    paths = [p for p in fs.find(root) if "/_linkai/keys/" in p]
    if paths:
        fs.rm(paths)


# -- one measurement, in its own process -----------------------------------------------------------------------
def _status_mb(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` of this process, in MB. Not ``ru_maxrss``: Linux carries that over
    from the parent across exec, so a child of a big parent would report the parent's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(mode: str, root: str, endpoint: str | None, listing_kind: str) -> dict[str, Any]:
    import fsspec

    from linkai_provider.dataset import completed_keys
    from linkai_provider.io.sources import AudioFile, Listing
    from linkai_provider.planning import KeyIndex, check_done, plan_batch
    from linkai_provider.staging import scan

    if endpoint:
        import s3fs

        fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint})
    else:
        fs = fsspec.filesystem("file")
    n = 0 if listing_kind == "year_old" else DAYS + 1
    uris, fps = keys_of_day(n, LISTED)
    files = [AudioFile(u, u[5:], 1_000_000, f, "wav", fs) for u, f in zip(uris, fps, strict=True)]
    listing = Listing(files, [])
    rss_before = _status_mb("VmRSS")
    keys = [(f.uri, f.fingerprint) for f in files]
    t = time.perf_counter()
    stats: dict[str, Any] = {}
    if mode == "legacy":
        done = completed_keys(fs, root)
    elif mode == "arrow":
        found = scan(fs, root)
        found.keys = {}  # as if no part had an index: every part read by column, filtered in Arrow
        index = KeyIndex(fs, found)
        done = index.done(keys)
        stats = vars(index.stats)
    else:
        done, index = check_done(fs, root, keys, build=mode == "build")
        stats = vars(index.stats)
    plan = plan_batch(listing, done)
    seconds = time.perf_counter() - t
    peak = _status_mb("VmHWM")
    return {
        "mode": mode,
        "listing": listing_kind,
        "seconds": seconds,
        "peak_rss_mb": peak,
        "rss_before_mb": rss_before,
        "to_send": len(plan.todo),
        "already_done": plan.already_done,
        "stats": stats,
    }


def _measure_in_child(mode: str, root: str, endpoint: str | None, listing: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.history", "--measure", mode, "--root", root, "--listing", listing]
    if endpoint:
        cmd += ["--endpoint", endpoint]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    secs = [r["seconds"] for r in results]
    rss = [r["peak_rss_mb"] for r in results]
    return {
        "seconds": {"min": min(secs), "median": statistics.median(secs), "max": max(secs)},
        "peak_rss_mb": {"min": min(rss), "median": statistics.median(rss), "max": max(rss)},
        "to_send": results[0]["to_send"],
        "already_done": results[0]["already_done"],
        "stats": results[0]["stats"],
        "runs": len(results),
    }


def bench_store(
    label: str, fs: Any, root: str, empty: str, endpoint: str | None, repeat: int, legacy: bool
) -> dict[str, Any]:
    """Every mode against ``root`` (the year) and ``empty``, interleaved ``repeat`` times."""
    out: dict[str, Any] = {}
    drop_index(fs, root)
    print(f"[history] {label}: first run after an upgrade (indexes 365 parts)", file=sys.stderr, flush=True)
    out["build"] = _summary([_measure_in_child("build", root, endpoint, "new")])
    modes = [
        ("empty", empty, "new"),
        ("index", root, "new"),
        ("index_year_old", root, "year_old"),
        ("arrow", root, "new"),
    ]
    if legacy:
        modes.append(("legacy", root, "new"))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in modes}
    for i in range(repeat):
        for name, where, listing in modes:
            if name == "legacy" and i > 0 and endpoint:
                continue  # minutes on moto: once is enough to show it
            mode = "index" if name.startswith("index") or name == "empty" else name
            runs[name].append(_measure_in_child(mode, where, endpoint, listing))
            print(f"[history] {label} {name} run {i + 1}: {runs[name][-1]['seconds']:.2f} s, "
                  f"{runs[name][-1]['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)  # fmt: skip
    for name, results in runs.items():
        out[name] = _summary(results)
    base_s, base_mb = out["empty"]["seconds"]["median"], out["empty"]["peak_rss_mb"]["median"]
    for name in [n for n in out if n != "empty"]:
        out[name]["adds_seconds"] = out[name]["seconds"]["median"] - base_s
        out[name]["adds_mb"] = out[name]["peak_rss_mb"]["median"] - base_mb
    return out


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    import urllib.request

    for _ in range(200):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    return proc, endpoint


def run(cache: Path, repeat: int = 3, s3: bool = True, legacy: bool = True) -> dict[str, Any]:
    import fsspec

    cache.mkdir(parents=True, exist_ok=True)
    local = build_history(cache)
    empty = cache / "empty"
    empty.mkdir(exist_ok=True)
    results: dict[str, Any] = {"rows": DAYS * PER_DAY, "parts": DAYS, "listed": LISTED}
    sizes = [p.stat().st_size for p in local.rglob("*.parquet")]
    results["history_bytes"] = sum(sizes)
    results["local"] = bench_store("local", fsspec.filesystem("file"), str(local), str(empty), None, repeat, legacy)
    results["index_bytes"] = sum(p.stat().st_size for p in local.rglob("*.keys"))
    if s3:
        import s3fs

        proc, endpoint = start_moto()
        try:
            fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": endpoint})
            fs.mkdir(BUCKET)
            fs.mkdir(f"{BUCKET}-empty")
            print("[history] s3: uploading the year to moto", file=sys.stderr, flush=True)
            for path in sorted(p for p in local.rglob("*") if p.is_file()):  # one at a time: little memory
                fs.put_file(str(path), f"{BUCKET}/history/{path.relative_to(local)}")
            results["s3"] = bench_store("s3", fs, f"{BUCKET}/history", f"{BUCKET}-empty/t", endpoint, repeat, legacy)
        finally:
            proc.terminate()
            proc.wait(30)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--measure", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    p.add_argument("--listing", default="new", help=argparse.SUPPRESS)
    p.add_argument("--cache", default="/tmp/linkai-bench-history", help="where the year of parts is kept")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-s3", action="store_true")
    p.add_argument("--no-legacy", action="store_true", help="skip 0.2.0's check (slow, ~1 GB)")
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.root, args.endpoint, args.listing)))
        return 0
    print(json.dumps(run(Path(args.cache), args.repeat, not args.no_s3, not args.no_legacy), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
