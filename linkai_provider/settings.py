"""The provider's settings, read the Airflow way: the ``[linkai]`` section the provider declares
(``get_provider_info()["config"]``), so ``airflow.cfg``, ``AIRFLOW__LINKAI__*`` environment variables
and ``_CMD``/``_SECRET`` variants all work, on every component (dag-processor, workers, api-server).

``transcripts_url`` is the transcript dataset's root: the example DAGs write below it (and make it
their Asset), the analytics DAG and the Transcripts page read it. Set it once, the same everywhere.
"""

from __future__ import annotations

import os

SECTION = "linkai"
LEGACY_URL_ENV = "LINKAI_TRANSCRIPTS_URL"  # 0.2's setting, still honoured when the section is unset

# What ``get_provider_info()["config"]`` declares (Airflow's provider config schema).
CONFIG = {
    SECTION: {
        "description": "The transcript dataset that the example DAGs write and the Transcripts page reads.",
        "options": {
            "transcripts_url": {
                "description": (
                    "Root of the transcript dataset (the folder above its dt=YYYY-MM-DD partitions): a local "
                    "path or an fsspec URL (file://, s3://, gs://). The example DAGs write below it and use it "
                    "as their Asset's URI; set it to the same value on the dag-processor, every worker and "
                    "the api-server."
                ),
                "version_added": "0.3.0",
                "type": "string",
                "example": "s3://my-lake/transcripts",
                "default": "",
            },
            "transcripts_conn_id": {
                "description": (
                    "Airflow connection with the storage credentials of transcripts_url (an aws connection "
                    "for s3://, google_cloud_platform for gs://, or generic with fsspec storage options); "
                    "empty for local disk or the environment's own credentials."
                ),
                "version_added": "0.3.0",
                "type": "string",
                "example": "aws_default",
                "default": "",
            },
            # -- the Transcripts page (linkai_provider.plugins, docs/ui.md); read by the api-server only --
            "ui_refresh_seconds": {
                "description": (
                    "How old the Transcripts page's listing of the dataset may be before a request lists it "
                    "again: new parts show on the page within this time. 0 lists on every request."
                ),
                "version_added": "0.3.0",
                "type": "float",
                "example": "30",
                "default": "30",
            },
            "ui_cache_dir": {
                "description": (
                    "Folder where the api-server keeps the Transcripts page's DuckDB cache of the dataset "
                    "(it holds transcripts; created readable by the api-server's user only). Empty: "
                    "airflow-linkai-ui in the system's temporary folder."
                ),
                "version_added": "0.3.0",
                "type": "string",
                "example": "/var/cache/airflow/linkai-ui",
                "default": "",
            },
            "ui_memory_limit": {
                "description": (
                    "DuckDB's memory limit for the Transcripts page's cache, e.g. 512MB or 2GB; what does "
                    "not fit is read from the cache file (the OS page cache keeps it warm)."
                ),
                "version_added": "0.3.0",
                "type": "string",
                "example": "2GB",
                "default": "512MB",
            },
        },
    }
}


def _conf():
    try:
        from airflow.sdk import conf  # DAG files and workers (the Task SDK)
    except ImportError:  # pragma: no cover - Airflow < 3.1
        from airflow.configuration import conf
    return conf


def _get(key: str) -> str | None:
    value = _conf().get(SECTION, key, fallback="") or ""
    return value.strip() or None


def transcripts_url(default: str | None = None) -> str | None:
    """``[linkai] transcripts_url`` (without a trailing slash), else the 0.2 environment variable
    ``LINKAI_TRANSCRIPTS_URL``, else ``default``."""
    value = _get("transcripts_url") or os.environ.get(LEGACY_URL_ENV, "").strip() or default
    return value.rstrip("/") if value else None


def transcripts_conn_id() -> str | None:
    """``[linkai] transcripts_conn_id``, or None (local disk, or the environment's credentials)."""
    return _get("transcripts_conn_id")


__all__ = ["CONFIG", "SECTION", "transcripts_conn_id", "transcripts_url"]
