"""TranscribeAudioOperator: a folder of audio in, a Parquet dataset of transcripts out."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowException, AirflowProviderDeprecationWarning
from airflow.sdk import BaseOperator

from linkai_provider.batch import DEFAULT_MAX_FILE_SIZE_BYTES, Batch, BatchOptions, BatchOutcome, WriterIdentity
from linkai_provider.exceptions import PartialBatchError
from linkai_provider.hooks.linkai import LinkAIHook
from linkai_provider.lineage import emit_transcript_events, set_default_outlets
from linkai_provider.lineage import openlineage_name as openlineage_name  # re-exported
from linkai_provider.lineage import transcript_asset as transcript_asset  # re-exported
from linkai_provider.pipeline import DEFAULT_MAX_CHUNK_SECONDS, DEFAULT_MAX_UPLOAD_BYTES
from linkai_provider.planning import Budget
from linkai_provider.plugins.links import TranscriptsLink
from linkai_provider.sharding import ShardArgs, may_be_template

if TYPE_CHECKING:
    from airflow.sdk import Context


class TranscribeAudioOperator(BaseOperator):
    """Transcribe every audio file under ``source`` with LinkAI into a Parquet dataset at ``destination``.

    One row per file per finished attempt (columns: see the docs' schema page). Files whose
    ``source_uri`` and ``source_fingerprint`` already have an ``ok`` row are skipped (``incremental``).

    :param source: a file URL, a folder or prefix, a glob, or a list of them; any fsspec URL
        (local path, ``file://``, ``s3://``, ``gs://``, ``memory://``). (templated)
    :param destination: the dataset folder URL, e.g.
        ``s3://bucket/transcripts/dt={{ run_day(dag_run) }}/`` (see :mod:`linkai_provider.nightly`). (templated)
    :param linkai_conn_id: connection of type ``linkai`` (base URL and API key).
    :param source_conn_id: connection for the source's storage credentials. (templated)
    :param destination_conn_id: connection for the destination's storage credentials. (templated)
    :param max_concurrency: the most requests in flight at once: a ceiling. Under 429s (and 503s) the
        operator sends fewer at once and climbs back while answers are clean.
    :param max_file_size_bytes: larger files are recorded as failed and never read (None: no limit);
        a guard against accidents, 2 GiB by default so multi-hour recordings go through.
    :param max_upload_bytes: the most one request carries (default 25 MiB). A longer recording is
        split into pieces at silences, sent concurrently and joined in order into its one row. A 413
        for a smaller upload means the API's limit is lower: the budget shrinks for the rest of the batch.
    :param max_chunk_seconds: the longest piece sent (default 600 s), for APIs that limit duration,
        and so that one long file's pieces run in parallel.
    :param split_long_audio: False: a file over ``max_upload_bytes`` is a failed row, never sent.
    :param piece_format: encoding of pieces: ``ogg`` (Opus), ``flac`` or ``mp3``; None chooses per
        file: FLAC when a ``max_chunk_seconds`` piece fits the upload budget uncompressed, else Opus.
    :param channels: ``"mix"`` (default): the API hears a multi-channel recording's channels mixed, as
        it would; ``"separate"``: each channel is transcribed as its own recording (a call with agent
        and customer on their own channels), the row's text is the conversation in turns, one line
        each (``[ch0] ...``), and its ``segments`` carry ``channel``. Identical channels are sent once.
    :param dry_run: list and plan as a real run would; log and return what would be sent (files,
        bytes, audio seconds, files of unknown duration, files that would be split); send and write nothing.
    :param max_files: send at most this many files this run, in listing order; the rest are held
        back for the next run (incremental).
    :param max_audio_seconds: likewise, by audio duration: files are taken in listing order until
        the next one would pass the budget. A file whose duration cannot be read is held back.
    :param extra_fields: form fields sent with every upload, over the connection's (e.g. ``language``). (templated)
    :param fail_on_partial_error: fail the task (after writing every row) if any file failed.
    :param fail_on_empty_source: fail the task if the source holds no audio file.
    :param incremental: skip files that already have an ``ok`` row for their current fingerprint.
    :param incremental_scope: dataset folder checked for ``ok`` rows; default ``destination``. Point it
        at the dataset root to skip files done on any earlier day. (templated)
    :param shard_index: send only this slice of ``source`` (0-based); with ``shard_count``, the files whose
        stable hash of ``source_uri`` falls in this shard (every shard lists the whole source), or with
        ``manifest``, the manifest's slice. Map it over ``range(shard_count)``. (templated)
    :param shard_count: how many slices ``source`` is cut into; optional with ``manifest``, which knows it. (templated)
    :param manifest: URL of a manifest written by :func:`linkai_provider.sharding.write_manifest` (one
        listing for every shard): the shard's files are read from it instead of listing ``source``
        (which then names the input for lineage only). Read with ``destination_conn_id``. (templated)
    :param checkpoint_rows: deprecated, ignored: every finished row is journaled within moments
        and a task try leaves exactly one part file.
    :param checkpoint_seconds: deprecated, ignored (see ``checkpoint_rows``).
    :param timeout: per-request timeout in seconds, over the connection's.
    :param max_retries: retries of transient errors, over the connection's.
    :param progress_interval: seconds between progress log lines.
    """

    template_fields: Sequence[str] = (
        "source",
        "destination",
        "source_conn_id",
        "destination_conn_id",
        "extra_fields",
        "incremental_scope",
        "shard_index",
        "shard_count",
        "manifest",
    )
    template_fields_renderers = {"source": "py", "extra_fields": "json"}
    ui_color = "#d6eaf8"
    ui_fgcolor = "#1b2631"
    # "Transcripts" on the task instance: the Transcripts page on this run's files (docs/ui.md)
    operator_extra_links = (TranscriptsLink(),)

    def __init__(
        self,
        *,
        source: str | Sequence[str],
        destination: str,
        linkai_conn_id: str = LinkAIHook.default_conn_name,
        source_conn_id: str | None = None,
        destination_conn_id: str | None = None,
        max_concurrency: int = 8,
        max_file_size_bytes: int | None = DEFAULT_MAX_FILE_SIZE_BYTES,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS,
        split_long_audio: bool = True,
        piece_format: str | None = None,
        channels: str = "mix",
        dry_run: bool = False,
        max_files: int | None = None,
        max_audio_seconds: float | None = None,
        extra_fields: Mapping[str, Any] | None = None,
        fail_on_partial_error: bool = True,
        fail_on_empty_source: bool = False,
        incremental: bool = True,
        incremental_scope: str | None = None,
        shard_index: int | str | None = None,
        shard_count: int | str | None = None,
        manifest: str | None = None,
        checkpoint_rows: int | None = None,
        checkpoint_seconds: float | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        set_default_outlets(kwargs, destination)  # an AssetAlias: one event only when rows were written
        super().__init__(**kwargs)
        if checkpoint_rows is not None or checkpoint_seconds is not None:
            warnings.warn(
                "checkpoint_rows/checkpoint_seconds are deprecated and ignored: every finished row is "
                "journaled within moments and each task try leaves one part file",
                AirflowProviderDeprecationWarning,
                stacklevel=2,
            )
        # Validated here so a DAG with a bad value fails to import, not at 3 a.m.
        self.batch_options = BatchOptions(
            max_concurrency=max_concurrency,
            max_file_size_bytes=max_file_size_bytes,
            max_upload_bytes=max_upload_bytes,
            max_chunk_seconds=max_chunk_seconds,
            split_long_audio=split_long_audio,
            piece_format=piece_format,
            channels=channels,
            incremental=incremental,
            dry_run=dry_run,
            budget=Budget(max_files=max_files, max_audio_seconds=max_audio_seconds),
            progress_interval=progress_interval,
        )
        if not any(may_be_template(v) for v in (shard_index, shard_count, manifest)):
            ShardArgs.parse(shard_index, shard_count, manifest)  # templated ones are checked once rendered
        self.shard_index = shard_index
        self.shard_count = shard_count
        self.manifest = manifest
        self.source = source
        self.destination = destination
        self.linkai_conn_id = linkai_conn_id
        self.source_conn_id = source_conn_id
        self.destination_conn_id = destination_conn_id
        self.max_concurrency = max_concurrency
        self.max_file_size_bytes = max_file_size_bytes
        self.max_upload_bytes = max_upload_bytes
        self.max_chunk_seconds = max_chunk_seconds
        self.split_long_audio = split_long_audio
        self.piece_format = piece_format
        self.channels = channels
        self.is_dry_run = dry_run  # not ``dry_run``: that is BaseOperator.dry_run(), which renders templates
        self.max_files = max_files
        self.max_audio_seconds = max_audio_seconds
        self.extra_fields = extra_fields
        self.fail_on_partial_error = fail_on_partial_error
        self.fail_on_empty_source = fail_on_empty_source
        self.incremental = incremental
        self.incremental_scope = incremental_scope
        self.timeout = timeout
        self.max_retries = max_retries
        self.progress_interval = progress_interval
        self._batch: Batch | None = None
        self._killed = False

    @cached_property
    def hook(self) -> LinkAIHook:
        return LinkAIHook(
            self.linkai_conn_id,
            timeout=self.timeout,
            max_retries=self.max_retries,
            max_connections=self.max_concurrency,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        config = self.hook.config  # a connection without a key fails here, before any I/O
        ti = context["ti"]
        shard = ShardArgs.parse(self.shard_index, self.shard_count, self.manifest)
        options = dataclasses.replace(
            self.batch_options,
            extra_fields=dict(self.extra_fields or {}),
            initial_concurrency=shard.initial_concurrency,
        )
        self._batch = batch = Batch(
            self.hook,
            source=self.source,
            destination=self.destination,
            source_conn_id=self.source_conn_id,
            destination_conn_id=self.destination_conn_id,
            incremental_scope=self.incremental_scope,
            identity=WriterIdentity.new(
                dag_id=ti.dag_id,
                task_id=ti.task_id,
                run_id=ti.run_id,
                map_index=ti.map_index,
                try_number=ti.try_number,
            ),
            row_context=self._row_context(context, config.base_url),
            options=options,
            logger=self.log,
            lister=shard.lister(self.source, self.source_conn_id, self.destination_conn_id),
        )
        if self._killed:
            batch.stop()
        try:
            outcome = batch.run()
        finally:
            self.hook.close()
        summary = outcome.summary
        if outcome.listing.shard:
            summary["shard"] = outcome.listing.shard
        self.log.info("Summary: %s", summary)
        self._raise_for(outcome)
        emit_transcript_events(self, context, summary)
        return summary

    def on_kill(self) -> None:
        """SIGTERM (task timeout, "mark failed"): send nothing more; execute() then journals and
        compacts every finished row before the task ends."""
        self._killed = True
        if self._batch is not None:
            self._batch.stop()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs: the source folders or files as given; output: the transcript dataset folder."""
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        sources = [self.source] if isinstance(self.source, str) else list(self.source)
        return OperatorLineage(
            inputs=[Dataset(*openlineage_name(str(src))) for src in sources],
            outputs=[Dataset(*openlineage_name(self.destination))],
        )

    # -- the parts execute wires together ---------------------------------------------------------
    def _row_context(self, context: Context, endpoint: str) -> dict[str, Any]:
        ti = context["ti"]
        return {
            "endpoint": endpoint,
            "dag_id": ti.dag_id,
            "task_id": ti.task_id,
            "run_id": ti.run_id,
            "map_index": ti.map_index,
            "try_number": ti.try_number,
        }

    def _raise_for(self, outcome: BatchOutcome) -> None:
        result = outcome.result
        if result is None:  # dry run
            return
        if result.fatal is not None:
            raise result.fatal
        if self._killed:
            raise AirflowException(
                f"Stopped by SIGTERM: {result.not_sent} file(s) not sent; the {result.done} finished are written"
            )
        if self.fail_on_empty_source and not outcome.listing.files and not outcome.listing.shard:
            raise FileNotFoundError(f"source {self.source!r} holds no audio file of the ten formats")
        if result.failed and self.fail_on_partial_error:
            reasons = "; ".join(f"{uri}: {why}" for uri, why in result.failures[:5])
            raise PartialBatchError(
                f"{result.failed} of {result.total} file(s) failed (rows written; rerun retries only these): {reasons}",
                failed=result.failed,
                total=result.total,
            )
