"""Shared test fixtures: an isolated Airflow home, real S3 (moto server) and GCS (emulator) on loopback,
and real spoken audio in the ten formats.

Airflow reads its configuration at import, so the environment is set here, before any test module
imports airflow.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="linkai-airflow-home-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(_HOME / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME}/airflow.db",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # gcsfs probes hierarchical-namespace support with calls the emulator lets hang for ~30 s
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "NO_PROXY": "127.0.0.1,localhost",
    }
)
(_HOME / "dags").mkdir()

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TEST_DAGS = Path(__file__).resolve().parent / "dags"
FORMATS = ("mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm", "flac", "amr")
SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "please send the quarterly report before friday",
    "please call me back when you have a moment",
    "my phone number has changed since last year",
    "thank you for calling customer support",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """A migrated SQLite metadata DB and a DAGs folder holding the example and test DAGs."""
    dags = _HOME / "dags"
    for folder in (REPO / "dags", TEST_DAGS):
        for dag_file in folder.glob("*.py"):
            shutil.copy(dag_file, dags / dag_file.name)
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return _HOME


@pytest.fixture
def conn_env(monkeypatch):
    """Set Airflow connections for one test: ``conn_env(my_conn={...})``."""

    def set_conns(**conns: dict) -> None:
        for conn_id, conn in conns.items():
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))

    return set_conns


@pytest.fixture
def linkai_conn(conn_env, linkai_server):
    """``linkai_default`` pointing at the session's digest server, its counters reset."""
    conn_env(linkai_default=json.loads(linkai_server.airflow_conn_json))
    linkai_server.reset_stats()
    return linkai_server


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 API: moto in server mode on loopback."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3fs_factory(moto_endpoint):
    def make():
        import s3fs

        return s3fs.S3FileSystem(
            key="testing", secret="testing", client_kwargs={"endpoint_url": moto_endpoint}, skip_instance_cache=True
        )

    return make


@pytest.fixture(scope="session")
def gcs_endpoint():
    """A real GCS JSON API: gcp-storage-emulator on loopback."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def own_moto():
    """A moto server this test may stop and restart on the same port (the stored objects survive)."""
    from moto.server import ThreadedMotoServer

    from tests.conftest import free_port

    port = free_port()
    state = {"server": ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)}
    state["server"].start()

    def stop():
        state["server"].stop()

    def start():
        state["server"] = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        state["server"].start()

    def fs():
        import s3fs

        fs = s3fs.S3FileSystem(
            key="testing", secret="testing", client_kwargs={"endpoint_url": f"http://127.0.0.1:{port}"},
            skip_instance_cache=True, config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 2},
        )  # fmt: skip
        fs.retries = 1  # fail fast: the journal's own retries are under test
        return fs

    yield type("Moto", (), {"stop": staticmethod(stop), "start": staticmethod(start), "fs": staticmethod(fs)})
    try:
        state["server"].stop()
    except Exception:
        pass


@pytest.fixture
def gcsfs_factory(gcs_endpoint):
    def make():
        import gcsfs

        return gcsfs.GCSFileSystem(endpoint_url=gcs_endpoint, token="anon", project="test", skip_instance_cache=True)

    return make


@dataclass(frozen=True)
class Speech:
    dir: Path
    truth: dict[str, str]  # file name -> the sentence spoken in it


@pytest.fixture(scope="session")
def speech(tmp_path_factory) -> Speech:
    """Ten spoken files, one per format, sentences rotating; nothing else in the folder."""
    from linkai_provider.server.audio_fixtures import synthesize

    out = tmp_path_factory.mktemp("speech")
    truth = {}
    for i, fmt in enumerate(FORMATS):
        text = SENTENCES[i % len(SENTENCES)]
        path = synthesize(text, out / f"clip_{i:02d}.{fmt}", fmt)
        truth[path.name] = text
    return Speech(out, truth)
