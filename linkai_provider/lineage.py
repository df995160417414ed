"""Lineage of a transcript dataset: its Asset, the Asset events a task emits, OpenLineage names.

Airflow emits an event for every plain ``Asset`` outlet of a task that succeeds, whether or not it
wrote anything, and once per mapped task instance. A transcript dataset therefore declares an
:class:`~airflow.sdk.AssetAlias` (:func:`transcript_alias`) as its outlet instead, and the task adds
the event for the dataset's Asset only when it wrote rows (:func:`emit_transcript_events`): one event
per task that wrote, none after a rerun that sent nothing. DAGs are scheduled on the Asset itself
(``schedule=[transcript_asset(url)]``); alias events trigger them like direct ones.

The event's ``extra`` says what changed: ``rows_written``, ``destinations`` and ``partitions`` (the
Hive partition folders written, e.g. ``["dt=2026-11-28"]``), so analytics recomputes only those days
(:mod:`linkai_provider.analytics`).

Before emitting, the task checks that the folder it wrote is inside the Asset it updates, and fails
if not: with the Asset's URI read where the DAG file is parsed and the destination rendered on the
worker, a setting that differs between the two would otherwise update an Asset no DAG waits for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from airflow.sdk import Asset, AssetAlias
from airflow.sdk.exceptions import AirflowFailException

__all__ = [
    "ALIAS_PREFIX",
    "contains",
    "emit_transcript_events",
    "emit_for_summaries",
    "openlineage_name",
    "partitions_written",
    "set_default_outlets",
    "transcript_alias",
    "transcript_asset",
]

ALIAS_PREFIX = "linkai-transcripts:"


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


def transcript_alias(dataset: Asset | str) -> AssetAlias:
    """The outlet of a task writing the transcript dataset ``dataset`` (an Asset, or its root URL):
    events for the dataset's Asset go through it, and only when rows were written."""
    asset = dataset if isinstance(dataset, Asset) else transcript_asset(dataset)
    return AssetAlias(ALIAS_PREFIX + asset.uri)


def set_default_outlets(kwargs: MutableMapping[str, Any], destination: Any) -> None:
    """The operator's default outlet: the alias of the Asset derived from ``destination``.

    Left alone when the DAG author passes ``outlets`` or the destination is wholly templated."""
    if "outlets" in kwargs or not isinstance(destination, str):
        return
    try:
        kwargs["outlets"] = [transcript_alias(transcript_asset(destination))]
    except ValueError:
        pass  # fully templated destination: the DAG author declares outlets


def openlineage_name(url: str) -> tuple[str, str]:
    """(namespace, name) per the OpenLineage naming spec: ``s3://bucket`` + key, ``file`` + path."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "file", url.rstrip("/") or "/"
    if scheme in ("file", "local"):
        return "file", "/" + rest.lstrip("/").rstrip("/")
    bucket, _, key = rest.partition("/")
    return f"{scheme}://{bucket}", key.rstrip("/") or "/"


def _as_url(location: str) -> str:
    scheme, sep, rest = location.partition("://")
    if not sep:
        return "file://" + location.rstrip("/")
    if scheme == "local":
        scheme = "file"
    if scheme == "file":
        return "file:///" + rest.lstrip("/").rstrip("/")
    return f"{scheme}://{rest.rstrip('/')}"


def contains(asset: Asset, destination: str) -> bool:
    """Whether the folder ``destination`` is the Asset's dataset root or below it."""
    root, dest = _as_url(asset.uri), _as_url(destination)
    return dest == root or dest.startswith(root + "/")


def _target(outlet: Any) -> Asset | None:
    """The transcript Asset an outlet updates: a plain Asset, or the one named by our alias."""
    if isinstance(outlet, AssetAlias):
        return Asset(outlet.name[len(ALIAS_PREFIX) :]) if outlet.name.startswith(ALIAS_PREFIX) else None
    return outlet if isinstance(outlet, Asset) else None


def partitions_written(asset: Asset, summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The Hive partitions (folders below the Asset's root, e.g. ``dt=2026-11-28``; ``""`` for the
    root itself) that summaries wrote rows to, sorted: what analytics recomputes."""
    root = _as_url(asset.uri)
    found = set()
    for summary in summaries:
        destination = str(summary.get("destination") or "")
        if int(summary.get("rows_written") or 0) > 0 and destination and contains(asset, destination):
            found.add(_as_url(destination)[len(root) :].strip("/"))
    return sorted(found)


def _known_to_airflow(asset: Asset) -> bool | None:
    """Whether the metadata DB has the Asset (some parsed DAG declares it); None outside a task."""
    try:
        from airflow.sdk.execution_time.comms import ErrorResponse, GetAssetByUri
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        response = SUPERVISOR_COMMS.send(GetAssetByUri(uri=asset.uri))
    except Exception:  # not running as an Airflow task (unit tests, the CLI)
        return None
    return not isinstance(response, ErrorResponse)


def emit_for_summaries(
    outlets: Iterable[Any],
    context: Mapping[str, Any],
    summaries: Sequence[Mapping[str, Any] | None],
    log: Any,
) -> int:
    """Check every summary's ``destination`` against the transcript outlets, then add one Asset event
    per transcript alias when the summaries wrote rows. Returns the rows written.

    :raises AirflowFailException: a destination is outside every transcript Asset of ``outlets``
        (the rows are written and stay; retrying cannot help, so the task fails without retries).
    """
    outlets = list(outlets or [])
    targets = [(outlet, asset) for outlet in outlets if (asset := _target(outlet)) is not None]
    done = [s for s in summaries if s]
    rows = sum(int(s.get("rows_written") or 0) for s in done)
    if not targets:
        return rows
    for summary in done:
        destination = str(summary.get("destination") or "")
        if destination and not any(contains(asset, destination) for _, asset in targets):
            assets = ", ".join(asset.uri for _, asset in targets)
            raise AirflowFailException(
                f"Wrote {summary.get('rows_written') or 0} row(s) to {destination}, which is outside the Asset(s) "
                f"this task updates ({assets}): DAGs scheduled on that Asset would never see these rows. The Asset "
                "is fixed where the DAG file is parsed (the dag-processor), the destination where it runs (the "
                "worker): set the dataset root ([linkai] transcripts_url) the same on both, or pass outlets=."
            )
    for outlet, asset in targets:
        if not isinstance(outlet, AssetAlias):
            continue  # Airflow itself emits an event for a plain Asset outlet of a task that succeeds
        if _known_to_airflow(asset) is False:
            log.warning(
                "Asset %s is unknown to Airflow: no DAG file parsed by the dag-processor declares it, so no DAG "
                "is scheduled on it. If one should be, the dataset root differs between the dag-processor and "
                "this worker ([linkai] transcripts_url).",
                asset.uri,
            )
        if rows <= 0:
            log.info("Asset %s: no rows written, no Asset event", asset.uri)
            continue
        extra = {
            "rows_written": rows,
            "destinations": sorted({str(s.get("destination")) for s in done}),
            "partitions": partitions_written(asset, done),
        }
        context["outlet_events"][outlet].add(asset, extra=extra)
        log.info("Asset %s: one event (%d row(s) written)", asset.uri, rows)
    return rows


def emit_transcript_events(task: Any, context: Mapping[str, Any], summary: Mapping[str, Any]) -> None:
    """The operator's last step: check the destination against its outlets, emit if it wrote rows."""
    emit_for_summaries(task.outlets, context, [summary], task.log)
