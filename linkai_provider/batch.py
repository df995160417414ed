"""One batch from start to end, shared by the operator and the CLI.

list the source → read what is done (parts and journals) → plan within the budgets → look up the pieces
already answered for the files to send → open the journal (adopting rows of writers that died) → send
through the pipeline (answered pieces are journaled as they arrive) → compact the journal into one part
→ summary. A dry run stops after planning: it reads, but sends and writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from linkai_provider.dataset import _atomic_write
from linkai_provider.hooks.linkai import LinkAIHook
from linkai_provider.io.sources import Listing, list_audio
from linkai_provider.io.storage import preflight, resolve
from linkai_provider.journal import CompactionResult, Journal, PieceRecord, WriterIdentity, answered_pieces
from linkai_provider.piece_store import PieceStore, prune_pieces
from linkai_provider.pipeline import BatchResult, TranscriptionPipeline
from linkai_provider.planning import Budget, KeyIndex, Plan, check_done, dry_run_report, plan_batch, summarize
from linkai_provider.uploads import DEFAULT_MAX_CHUNK_SECONDS, DEFAULT_MAX_UPLOAD_BYTES, FileSettings

log = logging.getLogger(__name__)

DEFAULT_MAX_FILE_SIZE_BYTES = 2 * 1024**3  # a guard against accidents; a 3-hour 16 kHz WAV is ~350 MB


@dataclass(frozen=True)
class BatchOptions:
    max_concurrency: int = 8
    max_file_size_bytes: int | None = DEFAULT_MAX_FILE_SIZE_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS
    split_long_audio: bool = True
    piece_format: str | None = None
    channels: str = "mix"  # "separate": each channel of a call on its own
    skip_silence: bool = True
    extra_fields: Mapping[str, Any] = field(default_factory=dict)
    incremental: bool = True
    dry_run: bool = False
    budget: Budget = Budget()
    progress_interval: float = 10.0
    adaptive: bool = True  # False: a fixed level of max_concurrency (benchmarks compare the two)
    # where slow start begins (None: min(max_concurrency, 16)); shards start at 1 (linkai_provider.sharding)
    initial_concurrency: int | None = None
    # How long a failing destination write is retried (sending held meanwhile) before the batch stops.
    destination_retry_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        self.file_settings({})  # the per-file limits are checked where they live

    def file_settings(self, row_context: Mapping[str, Any]) -> FileSettings:
        return FileSettings(
            max_file_size_bytes=self.max_file_size_bytes,
            max_upload_bytes=self.max_upload_bytes,
            max_chunk_seconds=self.max_chunk_seconds,
            split_long_audio=self.split_long_audio,
            piece_format=self.piece_format,
            channels=self.channels,
            skip_silence=self.skip_silence,
            extra_fields=dict(self.extra_fields),
            row_context=dict(row_context),
        )


@dataclass
class BatchOutcome:
    summary: dict[str, Any]
    plan: Plan
    result: BatchResult | None  # None for a dry run

    @property
    def listing(self) -> Listing:
        return self.plan.listing


class Batch:
    """Wires the parts for one run; ``stop()`` (SIGTERM) may be called from another thread."""

    def __init__(
        self,
        hook: LinkAIHook,
        *,
        source: str | Sequence[str],
        destination: str,
        identity: WriterIdentity,
        row_context: Mapping[str, Any],
        options: BatchOptions,
        source_conn_id: str | None = None,
        destination_conn_id: str | None = None,
        incremental_scope: str | None = None,
        logger: Any = log,
        on_progress: Callable[[BatchResult, TranscriptionPipeline], None] | None = None,
        lister: Callable[[], Listing] | None = None,
    ) -> None:
        self.hook, self.source, self.destination, self.identity = hook, source, destination, identity
        self.row_context, self.options = dict(row_context), options
        self.source_conn_id, self.destination_conn_id = source_conn_id, destination_conn_id
        self.incremental_scope, self.log, self.on_progress = incremental_scope, logger, on_progress
        self.pipeline: TranscriptionPipeline | None = None
        self.stopped = False
        self.index: KeyIndex | None = None  # the incremental check's view of the scope
        # one shard's slice instead of the whole source (linkai_provider.sharding.shard_lister)
        self.lister = lister

    def stop(self) -> None:
        self.stopped = True
        if self.pipeline is not None:
            self.pipeline.stop()

    def run(self) -> BatchOutcome:
        opts = self.options
        # every storage URL against its connection (provider installed, the right store) before any request
        preflight(self._storage_urls())
        listing = self.lister() if self.lister is not None else list_audio(self.source, self.source_conn_id)
        fs, root = resolve(self.destination, self.destination_conn_id)
        destination = fs.unstrip_protocol(root)
        if opts.dry_run:
            return self._dry_run(listing, destination)
        _sweep_split_workdirs(self.log)
        retry = opts.destination_retry_seconds
        journal = Journal(
            fs,
            root,
            self.identity,
            write_retry_seconds=retry,
            stale_after_seconds=max(120.0, 2 * (10.0 + retry) + 20.0),  # a writer that only retries never looks gone
            logger=self.log,
        )
        journal.check_writable()  # fail before spending a single credit
        plan = plan_batch(listing, self._done(listing, build=True), opts.budget)
        self._log_plan(plan)
        pipeline = self.pipeline = TranscriptionPipeline(
            self.hook,
            journal,
            opts.file_settings(self.row_context),
            max_concurrency=opts.max_concurrency,
            progress_interval=opts.progress_interval,
            hold=(journal.healthy, journal.room),
            adaptive=opts.adaptive,
            initial_concurrency=opts.initial_concurrency,
            logger=self.log,
            on_progress=self._progress_callback(),
            answered=self._answered(plan),
            pieces_sink=journal.append_pieces,
        )
        journal.on_fatal = pipeline.stop  # rows that cannot be stored must not be paid for
        journal.backlog_limit = 2 * opts.max_concurrency
        if self.stopped:  # SIGTERM came while listing: send nothing
            pipeline.stop()
        journal.open()
        try:
            result = pipeline.run(plan.todo, total=len(plan.todo), durations=plan.durations)
        finally:
            compacted, close_error = self._close(journal)
        if close_error is not None and result.fatal is None:
            result.fatal = close_error
        summary = run_summary(plan, result, destination, compacted)
        if plan.held_back:
            self.log.info(
                "Held back %d file(s) for the next run by the budget (max_files=%s, max_audio_seconds=%s)",
                len(plan.held_back),
                opts.budget.max_files,
                opts.budget.max_audio_seconds,
            )
        return BatchOutcome(summary, plan, result)

    def _storage_urls(self) -> list[tuple[str, str | None]]:
        sources = [self.source] if isinstance(self.source, str) else list(self.source)
        urls = [(str(s), self.source_conn_id) for s in sources] + [(self.destination, self.destination_conn_id)]
        if self.incremental_scope:
            urls.append((self.incremental_scope, self.destination_conn_id))
        return urls

    def _progress_callback(self) -> Callable[[BatchResult], None] | None:
        report = self.on_progress
        if report is None:
            return None
        return lambda result: report(result, self.pipeline) if self.pipeline is not None else None

    def _close(self, journal: Journal) -> tuple[Any, BaseException | None]:
        """Compact the journal into this try's one part; a failure is returned, not raised, so the
        batch's own error (if any) still wins and nothing journaled is lost (the next run adopts it)."""
        try:
            return journal.close(), None
        except Exception as exc:
            self.log.error("Could not compact the journal into a part file: %s", exc)
            return None, exc

    def _done(self, listing: Listing, *, build: bool) -> set[tuple[str, str]] | None:
        """The listed files already done under the scope (``None``: not incremental). ``build`` indexes
        parts found without a key index (written by an older version): never in a dry run."""
        if not self.options.incremental:
            return None
        scope_fs, scope_root = resolve(self.incremental_scope or self.destination, self.destination_conn_id)
        done, self.index = check_done(
            scope_fs, scope_root, [(f.uri, f.fingerprint) for f in listing.files], build=build
        )
        figures = self.index.stats
        self.log.info(
            "Incremental check under %s: %d of %d listed file(s) done; read %d key-index file(s) of %d part(s), "
            "%d part(s) without an index (%d indexed now), %d journal segment(s)",
            scope_fs.unstrip_protocol(scope_root), len(done), len(listing.files), figures.index_files_read,
            figures.parts, figures.parts_read, figures.indexed, figures.segments_read,
        )  # fmt: skip
        return done

    def _answered(self, plan: Plan) -> dict[tuple[str, str], list[PieceRecord]]:
        """Pieces answered earlier for the files this run sends (a killed try, a failed piece), under
        the same scope as the incremental check: they are not paid for again."""
        index = self.index
        if not self.options.incremental or index is None:
            return {}
        keys = [(f.uri, f.fingerprint) for f in plan.todo]
        try:
            answered, files = PieceStore(index.fs, index.listing).lookup(keys)
            # Pieces of files done meanwhile are garbage: the store keeps only files still waiting.
            prune_pieces(index.fs, files, index.done, lambda path, data: _atomic_write(index.fs, path, data), self.log)
        except FileNotFoundError:  # a journal compacted since the check listed it: look again
            scope_fs, scope_root = resolve(self.incremental_scope or self.destination, self.destination_conn_id)
            answered = answered_pieces(scope_fs, scope_root, keys)
        if answered:
            self.log.info(
                "%d answered piece(s) of %d file(s) from earlier tries will not be sent again",
                sum(len(v) for v in answered.values()),
                len(answered),
            )
        return answered

    def _log_plan(self, plan: Plan) -> None:
        self.log.info(
            "Found %d file(s): %d to send, %d already transcribed, %d held back by the budget, %d not audio",
            plan.listing.found,
            len(plan.todo),
            plan.already_done,
            len(plan.held_back),
            len(plan.listing.unsupported),
        )

    def _dry_run(self, listing: Listing, destination: str) -> BatchOutcome:
        opts = self.options
        plan = plan_batch(listing, self._done(listing, build=False), opts.budget, probe=True)
        self._log_plan(plan)
        report = dry_run_report(
            plan,
            max_upload_bytes=opts.max_upload_bytes,
            max_chunk_seconds=opts.max_chunk_seconds,
            split=opts.split_long_audio,
        )
        self.log.info(
            "Dry run: would send %d file(s), %d bytes, %.1f s of audio (%d of unknown duration); %d would be "
            "split into pieces; %d held back by the budget. Nothing was sent or written.",
            report["would_send"],
            report["would_send_bytes"],
            report["would_send_audio_seconds"],
            report["unknown_duration"],
            report["would_split"],
            len(plan.held_back),
        )
        summary = summarize(plan, None, destination, dry_run=True, **report)
        return BatchOutcome(summary, plan, None)


def run_summary(
    plan: Plan, result: BatchResult, destination: str, compacted: CompactionResult | None
) -> dict[str, Any]:
    """The summary a (non-dry) run returns to XCom and the CLI prints."""
    return summarize(
        plan,
        result,
        destination,
        rows_written=compacted.rows if compacted else 0,  # own rows and those adopted from dead writers
        journals_adopted=len(compacted.adopted) if compacted else 0,
        parts_written=1 if compacted and compacted.part_url else 0,
    )


def _sweep_split_workdirs(logger: Any) -> None:
    """Temp folders of pieces left by a SIGKILLed task on this machine (SIGTERM cleans up itself)."""
    try:
        from linkai_provider.io.workdirs import sweep_stale_workdirs
    except ImportError:  # no [audio] extra: nothing was ever split here
        return
    removed = sweep_stale_workdirs()
    if removed:
        logger.info("Removed %d temporary folder(s) of pieces left by killed tasks", removed)
