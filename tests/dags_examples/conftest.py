"""Fixtures for running the example DAGs of ``dags/`` as they are, pointed at test data.

The example DAGs read their dataset root from the environment when parsed (it is their Asset's URI),
so every test sets the environment first and then parses the DAG file.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass

import pytest


@pytest.fixture
def example_dag(airflow_home):
    """Parse one example DAG from the Airflow DAGs folder, with the environment as set now."""
    from airflow.dag_processing.dagbag import DagBag

    def load(dag_id: str):
        bag = DagBag(dag_folder=airflow_home / "dags" / f"{dag_id}.py", known_pools={"default_pool"})
        assert not bag.import_errors, bag.import_errors
        return bag.dags[dag_id]

    return load


@dataclass(frozen=True)
class Lake:
    """Where the example DAGs read and write in one test."""

    audio: str  # Variable linkai_audio_url
    transcripts: str  # [linkai] transcripts_url
    summary: str  # where the analytics DAG writes (default: beside the transcripts)


@pytest.fixture
def lake_env(monkeypatch):
    """Point the example DAGs at ``audio`` / ``transcripts`` URLs; no task retries (fail fast)."""

    def configure(audio: str, transcripts: str, conn_id: str | None = None) -> Lake:
        monkeypatch.setenv("AIRFLOW__LINKAI__TRANSCRIPTS_URL", transcripts)  # [linkai] transcripts_url
        monkeypatch.delenv("LINKAI_TRANSCRIPTS_URL", raising=False)
        monkeypatch.delenv("LINKAI_SUMMARY_URL", raising=False)
        monkeypatch.setenv("AIRFLOW_VAR_LINKAI_AUDIO_URL", audio)
        monkeypatch.setenv("LINKAI_TASK_RETRIES", "0")
        for var in ("LINKAI_SOURCE_CONN_ID", "LINKAI_DESTINATION_CONN_ID"):
            if conn_id:
                monkeypatch.setenv(f"AIRFLOW_VAR_{var}", conn_id)
            else:
                monkeypatch.delenv(f"AIRFLOW_VAR_{var}", raising=False)
        return Lake(audio, transcripts, transcripts.rstrip("/").rsplit("/", 1)[0] + "/transcript_summary")

    return configure


@pytest.fixture
def local_audio(tmp_path, speech):
    """``put(day, names=None) -> {file URL: bytes}``: copy the spoken clips into ``audio/<day>/``."""
    root = tmp_path / "audio"

    def put(day: str, names: list[str] | None = None, subdir: str = "") -> dict[str, bytes]:
        folder = root / day / subdir
        folder.mkdir(parents=True, exist_ok=True)
        written = {}
        for name in names or sorted(speech.truth):
            shutil.copy(speech.dir / name, folder / name)
            written[f"file://{folder / name}"] = (folder / name).read_bytes()
        return written

    put.root = root  # type: ignore[attr-defined]
    return put


@pytest.fixture
def s3_bucket(s3fs_factory, request):
    """A fresh bucket on the moto server; yields ``(fs, bucket)``."""
    fs = s3fs_factory()
    bucket = "lake-" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]
    fs.mkdir(bucket)
    return fs, bucket
