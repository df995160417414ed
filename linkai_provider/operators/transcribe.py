"""TranscribeAudioOperator: a folder of audio in, a Parquet dataset of transcripts out."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowException
from airflow.sdk import Asset, BaseOperator

from linkai_provider.dataset import TranscriptWriter
from linkai_provider.exceptions import PartialBatchError
from linkai_provider.hooks.linkai import LinkAIHook
from linkai_provider.io.sources import Listing, list_audio
from linkai_provider.io.storage import resolve
from linkai_provider.pipeline import BatchResult, TranscriptionPipeline
from linkai_provider.planning import plan_batch, summarize

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_MAX_FILE_SIZE_BYTES = 100 * 1024 * 1024


def transcript_asset(destination: str) -> Asset:
    """The Asset of a transcript dataset: ``destination`` cut before its first templated or
    ``key=value`` (Hive partition) segment, so every daily partition updates one Asset."""
    kept: list[str] = []
    scheme, sep, rest = destination.partition("://")
    if not sep:
        scheme, rest = "file", destination
    for segment in rest.rstrip("/").split("/"):
        if "{{" in segment or "{%" in segment or re.fullmatch(r"[^=/]+=[^/]*", segment):
            break
        kept.append(segment)
    path = "/".join(kept)
    if not path.strip("/"):
        raise ValueError(f"cannot derive an Asset from destination {destination!r}: pass outlets= explicitly")
    if scheme == "file" and not path.startswith("/"):
        raise ValueError(f"destination {destination!r} must be an absolute path or a URL")
    return Asset(f"{scheme}://{path}")


def openlineage_name(url: str) -> tuple[str, str]:
    """(namespace, name) per the OpenLineage naming spec: ``s3://bucket`` + key, ``file`` + path."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "file", url.rstrip("/") or "/"
    if scheme in ("file", "local"):
        return "file", "/" + rest.lstrip("/").rstrip("/")
    bucket, _, key = rest.partition("/")
    return f"{scheme}://{bucket}", key.rstrip("/") or "/"


class TranscribeAudioOperator(BaseOperator):
    """Transcribe every audio file under ``source`` with LinkAI into a Parquet dataset at ``destination``.

    One row per file per finished attempt (columns: see the docs' schema page). Files whose
    ``source_uri`` and ``source_fingerprint`` already have an ``ok`` row are skipped (``incremental``).

    :param source: a file URL, a folder or prefix, a glob, or a list of them; any fsspec URL
        (local path, ``file://``, ``s3://``, ``gs://``, ``memory://``). (templated)
    :param destination: the dataset folder URL, e.g. ``s3://bucket/transcripts/dt={{ ds }}/``. (templated)
    :param linkai_conn_id: connection of type ``linkai`` (base URL and API key).
    :param source_conn_id: connection for the source's storage credentials. (templated)
    :param destination_conn_id: connection for the destination's storage credentials. (templated)
    :param max_concurrency: requests in flight at once.
    :param max_file_size_bytes: larger files are recorded as failed and never uploaded (None: no limit).
    :param extra_fields: form fields sent with every upload, over the connection's (e.g. ``language``). (templated)
    :param fail_on_partial_error: fail the task (after writing every row) if any file failed.
    :param fail_on_empty_source: fail the task if the source holds no audio file.
    :param incremental: skip files that already have an ``ok`` row for their current fingerprint.
    :param incremental_scope: dataset folder checked for ``ok`` rows; default ``destination``. Point it
        at the dataset root to skip files done on any earlier day. (templated)
    :param checkpoint_rows: write a part file after this many finished rows ...
    :param checkpoint_seconds: ... or this many seconds, whichever comes first. A killed worker loses
        at most the rows not yet checkpointed plus the requests in flight; those files are sent
        again by the next try (incremental), so these two bound what a crash can cost in credits.
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
    )
    template_fields_renderers = {"source": "py", "extra_fields": "json"}
    ui_color = "#d6eaf8"
    ui_fgcolor = "#1b2631"

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
        extra_fields: Mapping[str, Any] | None = None,
        fail_on_partial_error: bool = True,
        fail_on_empty_source: bool = False,
        incremental: bool = True,
        incremental_scope: str | None = None,
        checkpoint_rows: int = 100,
        checkpoint_seconds: float = 30.0,
        timeout: float | None = None,
        max_retries: int | None = None,
        progress_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        if "outlets" not in kwargs and isinstance(destination, str):
            try:
                kwargs["outlets"] = [transcript_asset(destination)]
            except ValueError:
                pass  # fully templated destination: the DAG author declares outlets
        super().__init__(**kwargs)
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_file_size_bytes is not None and max_file_size_bytes < 1:
            raise ValueError(f"max_file_size_bytes must be positive or None, got {max_file_size_bytes}")
        self.source = source
        self.destination = destination
        self.linkai_conn_id = linkai_conn_id
        self.source_conn_id = source_conn_id
        self.destination_conn_id = destination_conn_id
        self.max_concurrency = max_concurrency
        self.max_file_size_bytes = max_file_size_bytes
        self.extra_fields = extra_fields
        self.fail_on_partial_error = fail_on_partial_error
        self.fail_on_empty_source = fail_on_empty_source
        self.incremental = incremental
        self.incremental_scope = incremental_scope
        self.checkpoint_rows = checkpoint_rows
        self.checkpoint_seconds = checkpoint_seconds
        self.timeout = timeout
        self.max_retries = max_retries
        self.progress_interval = progress_interval
        self._pipeline: TranscriptionPipeline | None = None
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
        listing = list_audio(self.source, self.source_conn_id)
        writer = self._writer(context)
        writer.check_writable()  # fail before spending a single credit
        plan = plan_batch(listing, self._incremental_scope())
        self.log.info(
            "Found %d file(s): %d to send, %d already transcribed, %d not audio",
            listing.found,
            len(plan.todo),
            plan.already_done,
            len(listing.unsupported),
        )
        self._pipeline = pipeline = TranscriptionPipeline(
            self.hook,
            writer,
            max_concurrency=self.max_concurrency,
            max_file_size_bytes=self.max_file_size_bytes,
            extra_fields=self.extra_fields,
            row_context=self._row_context(context, config.base_url),
            progress_interval=self.progress_interval,
            logger=self.log,
        )
        if self._killed:  # SIGTERM came while listing: send nothing
            pipeline.cancel.set()
        try:
            result = pipeline.run(plan.todo, total=len(plan.todo))
        finally:
            self.hook.close()
        summary = summarize(plan, result, writer)
        self.log.info("Summary: %s", summary)
        self._raise_for(result, listing)
        return summary

    def on_kill(self) -> None:
        """SIGTERM (task timeout, "mark failed"): send nothing more; execute() then writes every
        finished row before the task ends."""
        self._killed = True
        if self._pipeline is not None:
            self._pipeline.cancel.set()

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
    def _writer(self, context: Context) -> TranscriptWriter:
        fs, root = resolve(self.destination, self.destination_conn_id)
        ti = context["ti"]
        run = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(ti.run_id))[:80]
        return TranscriptWriter(
            fs,
            root,
            part_prefix=f"part-{run}-m{ti.map_index}-t{ti.try_number}",
            checkpoint_rows=self.checkpoint_rows,
            checkpoint_seconds=self.checkpoint_seconds,
        )

    def _incremental_scope(self) -> tuple[Any, str] | None:
        if not self.incremental:
            return None
        return resolve(self.incremental_scope or self.destination, self.destination_conn_id)

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

    def _raise_for(self, result: BatchResult, listing: Listing) -> None:
        if result.fatal is not None:
            raise result.fatal
        if self._killed:
            raise AirflowException(
                f"Stopped by SIGTERM: {result.not_sent} file(s) not sent; the {result.done} finished are written"
            )
        if self.fail_on_empty_source and not listing.files:
            raise FileNotFoundError(f"source {self.source!r} holds no audio file of the ten formats")
        if result.failed and self.fail_on_partial_error:
            reasons = "; ".join(f"{uri}: {why}" for uri, why in result.failures[:5])
            raise PartialBatchError(
                f"{result.failed} of {result.total} file(s) failed (rows written; rerun retries only these): {reasons}",
                failed=result.failed,
                total=result.total,
            )
