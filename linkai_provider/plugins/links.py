"""The "Transcripts" button of a transcribe task: opens the Transcripts page on that task's DAG run.

Airflow 3 computes an operator's links in the worker when the task ends (whatever its state) and
keeps them in XCom, so the link works for failed runs too, which is when people look.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def base_path() -> str:
    """The path Airflow is served under (``[api] base_url``), without a trailing slash: ``""`` at the root."""
    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "/").path.rstrip("/")


def run_page(dag_id: str, run_id: str) -> str:
    """The Transcripts page of one DAG run, inside Airflow's UI (navigation and all)."""
    query = urlencode({"view": "run", "dag_id": dag_id, "run_id": run_id})
    return f"{base_path()}/plugin/transcripts/linkai/?{query}"


class TranscriptsLink(BaseOperatorLink):
    """Every file the task's DAG run transcribed or failed, with text and error."""

    name = "Transcripts"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return run_page(ti_key.dag_id, ti_key.run_id)
