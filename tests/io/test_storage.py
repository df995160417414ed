"""Storage connections that fail loudly (``linkai_provider.io.storage``): a connection whose Airflow
provider is missing, or a connection for another store than the URL's, stops the batch before any
request, to the LinkAI API or to the store, with a message naming what to install or change.

The Google provider is not installed in the test environment, so its case is the real one. The Amazon
provider is (other tests use it), so its case runs in subprocesses that hide it the way a machine
without it looks: a ``sitecustomize`` module makes ``airflow.providers.amazon`` unimportable and drops
its distribution from ``importlib.metadata`` (Airflow discovers providers through their entry points).
The same command without the hiding succeeds through the same counting proxy, so a zero count means
nothing was sent, not that the proxy was never in the way.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from linkai_provider.io.storage import StorageConfigurationError, check, resolve
from tests.conftest import REPO
from tests.helpers import get_dag, task_states

pytestmark = pytest.mark.usefixtures("airflow_home")

HIDE_AMAZON = '''
"""Loaded at interpreter start (PYTHONPATH): this process sees no apache-airflow-providers-amazon."""
import importlib.metadata
import sys

MODULE, DIST = "airflow.providers.amazon", "apache-airflow-providers-amazon"


class HideAmazon:
    def find_spec(self, name, path=None, target=None):
        if name == MODULE or name.startswith(MODULE + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def without_amazon(discover):
    def discover_others(cls, *args, **kwargs):
        for dist in discover.__func__(cls, *args, **kwargs):
            if (dist.metadata["Name"] or "").lower().replace("_", "-") != DIST:
                yield dist
    return classmethod(discover_others)


sys.meta_path.insert(0, HideAmazon())
import importlib_metadata  # Airflow's provider discovery reads entry points through the backport

for module in (importlib.metadata, importlib_metadata):
    module.Distribution.discover = without_amazon(module.Distribution.discover)
'''


class CountingProxy:
    """A TCP forwarder on 127.0.0.1 to a real server, counting the connections made through it."""

    def __init__(self, target: str) -> None:
        parsed = urlparse(target)
        self.target = (parsed.hostname, parsed.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def s3_proxy(moto_endpoint):
    proxy = CountingProxy(moto_endpoint)
    yield proxy
    proxy.close()


@pytest.fixture
def gcs_proxy(gcs_endpoint):
    proxy = CountingProxy(gcs_endpoint)
    yield proxy
    proxy.close()


@pytest.fixture
def clips(tmp_path, speech) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for clip in sorted(speech.dir.iterdir())[:2]:
        shutil.copy(clip, folder / clip.name)
    return folder


# -- what a connection may be used for ----------------------------------------------------------------
AWS = {"conn_type": "aws", "login": "testing", "password": "testing", "extra": {"region_name": "us-east-1"}}
GCP = {"conn_type": "google_cloud_platform", "extra": {"project": "calls-prod"}}
AZURE = {"conn_type": "wasb", "login": "account", "password": "key"}
LINKAI = {"conn_type": "linkai", "host": "http://127.0.0.1:8765", "password": "sk-local"}


@pytest.mark.parametrize(
    ("conn", "url", "expected"),
    [
        (AWS, "gs://calls/2026-11-28/", ["'aws'", "S3 credentials", "gs://calls/2026-11-28/", "'google_cloud_pl"]),
        (GCP, "s3://calls/in/", ["Google Cloud Storage credentials", "s3://calls/in/", "type 'aws' for s3://"]),
        (AZURE, "s3://calls/in/", ["Azure", "s3://calls/in/", "type 'aws'"]),
        (AWS, "/data/calls", ["a local path (/data/calls)", "needs no connection"]),
        (AWS, "file:///data/calls", ["a local path (file:///data/calls)"]),
        (GCP, "memory://calls", ["memory://calls", "'generic' connection"]),
        (LINKAI, "s3://calls/in/", ["LinkAI API connection", "linkai_conn_id", "s3://calls/in/"]),
    ],
)  # fmt: skip
def test_a_connection_for_another_store_is_refused_by_name(conn_env, conn, url, expected):
    conn_env(lake=conn)
    with pytest.raises(StorageConfigurationError) as info:
        resolve(url, "lake")
    message = str(info.value)
    assert "connection 'lake'" in message
    for needle in expected:
        assert needle in message, message
    assert "testing" not in message and "sk-local" not in message  # never the credentials


def test_plain_and_matching_connections_still_resolve(conn_env, moto_endpoint):
    """A 'generic' connection's extra is fsspec options for any store; an 'aws' one reaches S3 through
    the Amazon provider (installed here), its endpoint and keys included."""
    conn_env(
        plain={"conn_type": "generic", "extra": {"key": "testing", "secret": "testing",
                                                 "client_kwargs": {"endpoint_url": moto_endpoint}}},
        aws_lake={**AWS, "extra": {"region_name": "us-east-1", "endpoint_url": moto_endpoint}},
    )  # fmt: skip
    for conn_id in ("plain", "aws_lake"):
        fs, path = resolve("s3://storage-checks/x/", conn_id)
        fs.mkdirs("storage-checks", exist_ok=True)
        fs.pipe_file("storage-checks/x/probe", b"ok")
        assert fs.cat_file("storage-checks/x/probe") == b"ok" and path == "storage-checks/x"
        fs.rm("storage-checks/x/probe")
    check("/tmp/anything", None)  # a local path without a connection: nothing to say


def test_a_missing_fsspec_package_is_named_before_anything_is_built():
    """adlfs is not installed here: an abfs:// URL says what to install, with or without a connection."""
    assert importlib.util.find_spec("adlfs") is None
    with pytest.raises(StorageConfigurationError, match=r"abfs:// URLs need the adlfs package.*pip install adlfs"):
        check("abfs://calls/2026-11-28/", None)


# -- Google: the provider is really missing here -----------------------------------------------------
def test_google_provider_is_not_installed_here():
    """The next tests rely on it: if someone installs it, they would test nothing, so say so."""
    assert importlib.util.find_spec("airflow.providers.google") is None


def test_google_connection_without_its_provider_fails_before_any_request_in_the_operator(
    tmp_path, clips, linkai_conn, conn_env, gcs_proxy, monkeypatch, capfd
):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_proxy.url)  # where gcsfs would send anything
    conn_env(gcp_lake=GCP)
    run = get_dag("linkai_test_transcribe").test(
        run_conf={"source": str(clips), "destination": "gs://calls/transcripts/dt=2026-11-28",
                  "destination_conn_id": "gcp_lake"}
    )  # fmt: skip
    output = capfd.readouterr()
    assert task_states(run)["transcribe"] == "failed"
    assert "StorageConfigurationError" in output.out + output.err
    assert "needs apache-airflow-providers-google, which is not installed" in output.out + output.err
    assert linkai_conn.stats()["requests_total"] == 0
    assert gcs_proxy.connections == 0


def test_google_connection_without_its_provider_fails_before_any_request_in_the_cli(
    tmp_path, linkai_server, conn_env, gcs_proxy, monkeypatch, capsys
):
    from linkai_provider import cli

    linkai_server.reset_stats()
    monkeypatch.setenv("LINKAI_API_KEY", linkai_server.api_key)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_proxy.url)
    conn_env(gcp_lake=GCP)
    code = cli.main(["gs://calls/2026-11-28/", str(tmp_path / "out"), "--source-conn-id", "gcp_lake",
                     "--base-url", linkai_server.url, "-q"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "connection 'gcp_lake' (type 'google_cloud_platform') needs apache-airflow-providers-google" in err
    assert "pip install apache-airflow-providers-google" in err
    assert linkai_server.stats()["requests_total"] == 0 and gcs_proxy.connections == 0


# -- Amazon: hidden in subprocesses -------------------------------------------------------------------
def without_amazon(tmp_path: Path) -> dict[str, str]:
    hide = tmp_path / "hide-amazon"
    hide.mkdir(exist_ok=True)
    (hide / "sitecustomize.py").write_text(HIDE_AMAZON)
    return {"PYTHONPATH": os.pathsep.join([str(hide), str(REPO)])}


def test_aws_connection_without_the_amazon_provider_fails_before_any_request(
    tmp_path, clips, linkai_server, s3_proxy, s3fs_factory, monkeypatch, capsys
):
    """Without the provider (one subprocess, to pay Airflow's start once): the operator's task fails in
    dag.test(), and the CLI exits 2, both naming the package, and neither S3 nor LinkAI saw a request.
    Then the same CLI arguments with the provider: the files go to S3 through the same proxy."""
    s3fs_factory().mkdirs("aws-checks", exist_ok=True)
    conn = {**AWS, "extra": {"region_name": "us-east-1", "endpoint_url": s3_proxy.url}}
    argv = [str(clips), "s3://aws-checks/transcripts/dt=2026-11-28", "--destination-conn-id", "aws_lake",
            "--base-url", linkai_server.url, "-q"]  # fmt: skip
    env = {
        **os.environ,
        **without_amazon(tmp_path),
        "LINKAI_API_KEY": linkai_server.api_key,
        "AIRFLOW_CONN_AWS_LAKE": json.dumps(conn),
        "AIRFLOW_CONN_LINKAI_DEFAULT": linkai_server.airflow_conn_json,
        "IN": str(clips),
        "ARGV": json.dumps(argv),
    }
    script = (
        "import contextlib, importlib.metadata, io, json, os\n"
        "from airflow.sdk.io.fs import has_fs\n"
        "from tests.helpers import get_dag, task_states\n"
        "conf = {'source': os.environ['IN'], 'destination': 's3://aws-checks/transcripts/dt=2026-11-29',"
        " 'destination_conn_id': 'aws_lake'}\n"
        "run = get_dag('linkai_test_transcribe').test(run_conf=conf)\n"
        "from linkai_provider import cli\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "    code = cli.main(json.loads(os.environ['ARGV']))\n"
        "amazon = [d for d in importlib.metadata.distributions() if 'providers-amazon' in d.metadata['Name']]\n"
        "print('RESULT', json.dumps({'state': task_states(run)['transcribe'], 'has_s3': has_fs('s3'),"
        " 'amazon': len(amazon), 'cli': [code, out.getvalue(), err.getvalue()]}))\n"
    )
    linkai_server.reset_stats()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    logs = "\n".join(line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("RESULT "))
    output = done.stdout + done.stderr
    result = json.loads(
        next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), "RESULT {}")[7:]
    )
    assert {k: result.get(k) for k in ("state", "has_s3", "amazon")} == {"state": "failed", "has_s3": False,
                                                                          "amazon": 0}, output[-3000:]  # fmt: skip
    assert "needs apache-airflow-providers-amazon, which is not installed" in logs  # the task's log
    code, out, err = result["cli"]
    assert (code, out) == (2, ""), err
    assert "connection 'aws_lake' (type 'aws') needs apache-airflow-providers-amazon" in err
    assert "pip install apache-airflow-providers-amazon" in err
    assert "region_name" not in output + err and "NoCredentialsError" not in output + err
    assert (s3_proxy.connections, linkai_server.stats()["requests_total"]) == (0, 0)

    # the same CLI arguments with the provider (in this process): files go to S3 through the proxy
    from linkai_provider import cli

    for name in ("LINKAI_API_KEY", "AIRFLOW_CONN_AWS_LAKE"):
        monkeypatch.setenv(name, env[name])
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert json.loads(out)["transcribed"] == 2  # stdout is the summary alone (the provider logs to stderr)
    assert s3_proxy.connections > 0 and linkai_server.stats()["requests_total"] == 2
