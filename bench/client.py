"""The task under test, in a process of its own so that its resident memory is the task's.

Runs exactly what ``TranscribeAudioOperator.execute`` and ``linkai-transcribe`` run: a LinkAIHook
with ``max_connections = max_concurrency`` and ``linkai_provider.batch.Batch`` with ``BatchOptions``
(listing, planning, the durable journal, the adaptive scheduler, splitting of long recordings, and
compaction into one part per task at the end). Airflow's scheduler and the DAG machinery are left
out: they cost the same whatever the provider does.

Spec keys: ``scenario``, ``source``, ``destination``, ``max_concurrency``, optional
``source_conn_id``/``destination_conn_id`` and the BatchOptions ``adaptive``, ``initial_concurrency``,
``max_upload_bytes``, ``max_chunk_seconds``, ``split_long_audio``, ``piece_format``, ``channels``,
``skip_silence``, ``max_file_size_bytes`` (keys a tree's BatchOptions does not know are not passed:
an older baseline tree ignores them).

Usage: ``python -m bench.client '<json spec>'``; prints one JSON line with the timings.
The API key comes from ``$AIRFLOW_CONN_LINKAI_BENCH``; storage credentials from
``$AIRFLOW_CONN_<source_conn_id>`` (a ``generic`` connection whose extra holds fsspec options).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class SchedSampler(threading.Thread):
    """Per-thread scheduler counters (/proc/self/task/*/schedstat): time on a CPU and time runnable
    but waiting for one. The second says how much of the wall time a busy machine took away."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.first: dict[str, tuple[int, int]] = {}
        self.last: dict[str, tuple[int, int]] = {}

    def sample(self) -> None:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as fh:
                    run, wait, _ = map(int, fh.read().split())
            except (OSError, ValueError):
                continue
            self.first.setdefault(tid, (run, wait))
            self.last[tid] = (run, wait)

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.sample()

    def totals(self) -> tuple[float, float]:
        self.sample()
        run = sum(v[0] - self.first[t][0] for t, v in self.last.items()) / 1e9
        wait = sum(v[1] - self.first[t][1] for t, v in self.last.items()) / 1e9
        return run, wait


def main() -> None:
    spec = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    t_start = time.perf_counter()

    import httpcore
    import pyarrow as pa
    import pyarrow.parquet as pq

    from linkai_provider import batch as batch_module
    from linkai_provider.batch import DEFAULT_MAX_FILE_SIZE_BYTES, Batch, BatchOptions, WriterIdentity
    from linkai_provider.dataset import part_files
    from linkai_provider.hooks.linkai import LinkAIHook
    from linkai_provider.io.storage import resolve
    from linkai_provider.pipeline import TranscriptionPipeline

    logging.getLogger().setLevel(logging.WARNING)  # importing Airflow resets logging
    # Instrumentation only: count TCP connections the pool opens (keep-alive check) and time the
    # phases of Batch.run (listing; planning = the rest until the pipeline starts).
    opened = [0]
    original = httpcore.ConnectionPool.create_connection

    def counting(self, origin):  # type: ignore[no-untyped-def]
        opened[0] += 1
        return original(self, origin)

    httpcore.ConnectionPool.create_connection = counting  # type: ignore[method-assign]
    marks: dict[str, float] = {}
    original_list = batch_module.list_audio

    def timed_list(*a, **kw):  # type: ignore[no-untyped-def]
        listing = original_list(*a, **kw)
        marks["listed"] = time.perf_counter()
        return listing

    batch_module.list_audio = timed_list  # type: ignore[assignment]
    original_run = TranscriptionPipeline.run

    def timed_run(self, *a, **kw):  # type: ignore[no-untyped-def]
        marks["planned"] = time.perf_counter()
        try:
            return original_run(self, *a, **kw)
        finally:
            marks["sent"] = time.perf_counter()

    TranscriptionPipeline.run = timed_run  # type: ignore[method-assign]

    k = int(spec["max_concurrency"])
    options = BatchOptions(
        max_concurrency=k,
        max_file_size_bytes=spec.get("max_file_size_bytes", DEFAULT_MAX_FILE_SIZE_BYTES),
        adaptive=spec.get("adaptive", True),
        **({"initial_concurrency": spec["initial_concurrency"]} if "initial_concurrency" in spec else {}),
        progress_interval=3600.0,
        **{
            name: spec[name]
            for name in (
                "max_upload_bytes",
                "max_chunk_seconds",
                "split_long_audio",
                "piece_format",
                "channels",
                "skip_silence",
            )
            if name in spec
        },
    )
    t_imported = time.perf_counter()
    baseline_kb = _status_kb("VmRSS")
    # -- the task --------------------------------------------------------------------------------
    sched = SchedSampler()
    sched.sample()
    sched.start()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    hook = LinkAIHook("linkai_bench", max_connections=k)
    batch = Batch(
        hook,
        source=spec["source"],
        destination=spec["destination"],
        source_conn_id=spec.get("source_conn_id"),
        destination_conn_id=spec.get("destination_conn_id"),
        identity=WriterIdentity.new(dag_id="bench", task_id=spec["scenario"], run_id="bench", try_number=1),
        row_context={
            "endpoint": hook.config.base_url,
            "dag_id": "bench",
            "task_id": spec["scenario"],
            "run_id": "bench",
            "map_index": -1,
            "try_number": 1,
        },
        options=options,
    )
    try:
        outcome = batch.run()
    finally:
        hook.close()
    summary = outcome.summary
    t_end = time.perf_counter()
    cpu_end = time.process_time()
    hwm_kb = _status_kb("VmHWM")
    sched.stop.set()
    sched.join()
    on_cpu_s, cpu_wait_s = sched.totals()
    if outcome.result is not None and outcome.result.fatal is not None:
        summary["fatal"] = str(outcome.result.fatal)
    if outcome.result is not None and outcome.result.failures:
        summary["first_failures"] = outcome.result.failures[:5]
    # -- checks, untimed -------------------------------------------------------------------------
    # Each part fetched whole, parsed from memory: when pyarrow reads through a Python file object
    # (pyarrow.dataset over an fsspec filesystem, or pq.read_table(fsspec_file)), the interpreter
    # sometimes aborts at exit ("terminate called without an active exception").
    fs, root = resolve(spec["destination"], spec.get("destination_conn_id"))
    mine: list[str] = []
    parts = part_files(fs, root)
    for path in parts:
        table = pq.read_table(pa.BufferReader(fs.cat_file(path)), columns=["status", "task_id"], use_threads=False)
        mine += [
            s
            for s, t in zip(table.column("status").to_pylist(), table.column("task_id").to_pylist(), strict=True)
            if t == spec["scenario"]
        ]
    listed = marks.get("listed", t0)
    planned = marks.get("planned", listed)
    print(
        json.dumps(
            {
                "summary": summary,
                "import_s": t_imported - t_start,
                "list_s": listed - t0,
                "plan_s": planned - listed,
                "pipeline_s": marks.get("sent", t_end) - planned,
                "close_s": t_end - marks.get("sent", t_end),  # journal compaction into the one part
                "wall_s": t_end - t0,
                "cpu_s": cpu_end - cpu0,
                "on_cpu_s": on_cpu_s,
                "cpu_wait_s": cpu_wait_s,  # runnable, waiting for a CPU (summed over threads)
                "baseline_rss_mb": baseline_kb / 1024,
                "hwm_mb": hwm_kb / 1024,
                "rss_growth_mb": (hwm_kb - baseline_kb) / 1024,
                "connections_opened": opened[0],
                "rows_ok": mine.count("ok"),
                "rows_failed": mine.count("failed"),
                "parts_written": summary.get("parts_written"),
                "part_files": len(parts),
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
