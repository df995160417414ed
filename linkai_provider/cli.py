"""``linkai-transcribe``: the operator's pipeline for ad-hoc use, outside a DAG.

    linkai-transcribe s3://bucket/calls/2026-11-20/ /tmp/transcripts/dt=2026-11-20 \\
        --base-url http://127.0.0.1:8765 --max-concurrency 16

The key comes from ``$LINKAI_API_KEY`` (never a flag: flags end up in shell history and ``ps``), or
from an Airflow connection with ``--conn-id``. Storage credentials come from fsspec's usual sources
(environment, ``~/.aws``, ...) or Airflow connections with ``--source-conn-id``/``--destination-conn-id``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any

from linkai_provider.batch import DEFAULT_MAX_FILE_SIZE_BYTES, Batch, BatchOptions, WriterIdentity
from linkai_provider.hooks.linkai import LinkAIHook
from linkai_provider.pipeline import (
    DEFAULT_MAX_CHUNK_SECONDS,
    DEFAULT_MAX_UPLOAD_BYTES,
    BatchResult,
    TranscriptionPipeline,
)
from linkai_provider.planning import Budget
from linkai_provider.sharding import ShardArgs

log = logging.getLogger("linkai_provider.cli")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="linkai-transcribe",
        description="Transcribe audio files (local, s3://, gs://, any fsspec URL) into a Parquet dataset.",
    )
    p.add_argument("source", nargs="+", help="file, folder/prefix or glob URL(s)")
    p.add_argument("destination", help="dataset folder URL for the Parquet part files")
    p.add_argument("--base-url", help="LinkAI base URL (with $LINKAI_API_KEY); default https://api.linkai.cloud")
    p.add_argument("--conn-id", help="use this Airflow connection instead of --base-url/$LINKAI_API_KEY")
    p.add_argument("--source-conn-id", help="Airflow connection with the source's storage credentials")
    p.add_argument("--destination-conn-id", help="Airflow connection with the destination's storage credentials")
    p.add_argument(
        "--max-concurrency", type=int, default=8, help="ceiling of requests in flight; adapts below it under 429s"
    )
    p.add_argument(
        "--max-file-size-bytes", type=int, default=DEFAULT_MAX_FILE_SIZE_BYTES, help="never read larger files"
    )
    p.add_argument(
        "--max-upload-bytes",
        type=int,
        default=DEFAULT_MAX_UPLOAD_BYTES,
        help="most bytes one request carries; longer recordings are split at silences (default 25 MiB)",
    )
    p.add_argument(
        "--max-chunk-seconds", type=float, default=DEFAULT_MAX_CHUNK_SECONDS, help="longest piece sent (default 600)"
    )
    p.add_argument("--no-split", action="store_true", help="never split: files over --max-upload-bytes fail")
    p.add_argument("--piece-format", choices=("ogg", "flac", "mp3"), help="encoding of pieces of long recordings")
    p.add_argument(
        "--channels",
        choices=("mix", "separate"),
        default="mix",
        help="separate: transcribe each channel of a multi-channel recording (a call) on its own (default mix)",
    )
    p.add_argument("--dry-run", action="store_true", help="list and plan; print what would be sent; send nothing")
    p.add_argument("--max-files", type=int, help="send at most N files this run (the rest wait for the next)")
    p.add_argument("--max-audio-seconds", type=float, help="send at most this much audio this run")
    p.add_argument("--language", help="sent as the 'language' form field")
    p.add_argument("--field", action="append", default=[], metavar="K=V", help="extra form field, repeatable")
    p.add_argument("--no-incremental", action="store_true", help="transcribe files that already have an ok row")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="send only slice I of N (0-based): by a stable hash of each file's URL, or the manifest's slice I",
    )
    p.add_argument("--manifest", help="read this shard's files from a manifest (linkai_provider.sharding)")
    p.add_argument("--checkpoint-rows", type=int, help=argparse.SUPPRESS)  # deprecated, ignored
    p.add_argument("--checkpoint-seconds", type=float, help=argparse.SUPPRESS)  # deprecated, ignored
    p.add_argument("--timeout", type=float, help="per-request timeout in seconds")
    p.add_argument("--max-retries", type=int, help="retries of transient errors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar, warnings and errors only (stdout: the summary)"
    )
    return p


def _hook(args: argparse.Namespace) -> LinkAIHook:
    conn_id = args.conn_id
    if not conn_id:
        key = os.environ.get("LINKAI_API_KEY")
        if not key:
            raise SystemExit("linkai-transcribe: set $LINKAI_API_KEY (or pass --conn-id)")
        conn_id = "linkai_cli"
        conn = {"conn_type": "linkai", "host": args.base_url or "", "password": key}
        os.environ["AIRFLOW_CONN_LINKAI_CLI"] = json.dumps(conn)
    return LinkAIHook(conn_id, timeout=args.timeout, max_retries=args.max_retries, max_connections=args.max_concurrency)


class _Bar:
    """tqdm over finished files; the pipeline reports, the bar draws (with the concurrency level)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, result: BatchResult, pipeline: TranscriptionPipeline) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=result.total, unit="file", dynamic_ncols=True, file=sys.stderr)
        level = pipeline.scheduler
        self.bar.n = result.done
        self.bar.set_postfix(
            ok=result.ok, failed=result.failed, concurrency=f"{level.current}/{level.ceiling}", refresh=False
        )
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _shard(args: argparse.Namespace) -> ShardArgs:
    """``--shard I/N`` (N optional with ``--manifest``: ``I`` or ``I/``) and ``--manifest``, checked."""
    index: str | None = None
    count: str | None = None
    if args.shard is not None:
        index, _, count = args.shard.partition("/")
    try:
        return ShardArgs.parse(index, count or None, args.manifest)
    except ValueError as exc:
        raise ValueError(f"--shard/--manifest: {exc}") from None


def run(args: argparse.Namespace) -> dict[str, Any]:
    hook = _hook(args)
    fields = dict(kv.split("=", 1) for kv in args.field)
    if args.language:
        fields["language"] = args.language
    shard = _shard(args)
    options = BatchOptions(
        max_concurrency=args.max_concurrency,
        max_file_size_bytes=args.max_file_size_bytes,
        max_upload_bytes=args.max_upload_bytes,
        max_chunk_seconds=args.max_chunk_seconds,
        split_long_audio=not args.no_split,
        piece_format=args.piece_format,
        channels=args.channels,
        extra_fields=fields,
        incremental=not args.no_incremental,
        dry_run=args.dry_run,
        budget=Budget(max_files=args.max_files, max_audio_seconds=args.max_audio_seconds),
        initial_concurrency=shard.initial_concurrency,
    )
    bar = _Bar(enabled=not (args.no_progress or args.quiet))
    batch = Batch(
        hook,
        source=args.source,
        destination=args.destination,
        source_conn_id=args.source_conn_id,
        destination_conn_id=args.destination_conn_id,
        identity=WriterIdentity.new(),
        row_context={
            "endpoint": hook.config.base_url,
            "dag_id": None,
            "task_id": None,
            "run_id": None,
            "map_index": None,
            "try_number": None,
        },
        options=options,
        on_progress=bar,
        lister=shard.lister(args.source, args.source_conn_id, args.destination_conn_id),
    )
    stopped_by: list[str] = []

    def stop(signum: int, frame: Any) -> None:
        """SIGTERM / Ctrl-C: as Airflow's on_kill, send nothing more, keep (and compact) what finished."""
        stopped_by.append(signal.Signals(signum).name)
        batch.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        outcome = batch.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        bar.close()
        hook.close()
    summary = outcome.summary
    if outcome.listing.shard:
        summary["shard"] = outcome.listing.shard
    if outcome.result is not None and outcome.result.fatal is not None:
        summary["fatal"] = str(outcome.result.fatal)
    if stopped_by:
        summary["stopped_by"] = stopped_by[0]
    return summary


def _logs_to_stderr(level: int) -> None:
    """Every log line to stderr, so stdout carries only the JSON summary (``-q | jq`` works).

    Importing Airflow points both logging systems at stdout: the standard library's root handler,
    and structlog, which the hook's ``self.log`` (Airflow's ``LoggingMixin``: the retry warnings)
    writes through without the standard library. Both are sent to the root handler on stderr.
    """
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr, force=True)
    import structlog

    structlog.configure(
        processors=[structlog.processors.format_exc_info, structlog.stdlib.render_to_log_kwargs],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _logs_to_stderr(logging.WARNING if args.quiet else logging.INFO)
    try:
        # Airflow's structlog loggers (e.g. the Amazon provider's, reading an `aws` connection) print to
        # stdout whatever logging says: during the run stdout is stderr, so stdout is the summary alone
        with contextlib.redirect_stdout(sys.stderr):
            summary = run(args)
    except (FileNotFoundError, PermissionError, ValueError) as exc:
        print(f"linkai-transcribe: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=None if args.quiet else 2))
    if "fatal" in summary:
        return 3
    if "stopped_by" in summary:
        return 4
    return 1 if summary.get("failed") else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
