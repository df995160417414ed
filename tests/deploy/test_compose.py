"""docker-compose.yaml, .env.example and the Dockerfile, checked without a Docker engine: what
`docker compose config` would reject, what would make the stack fail at start, and whether the
settings it passes are ones the provider, the DAGs and the images actually read."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy import compose
from tests.deploy.compose import REPO

PYTHON_SOURCES = sorted([*REPO.glob("linkai_provider/**/*.py"), *REPO.glob("dags/*.py")])

# Services that run once and exit: each must be awaited with service_completed_successfully.
ONE_SHOT = {"airflow-init", "minio-init", "linkai-samples"}
# Run by hand only (`docker compose run --rm airflow-cli ...`).
ON_DEMAND = {"airflow-cli"}

# Variables read by an image's entrypoint rather than by Python in this repository or a library.
# apache/airflow: https://airflow.apache.org/docs/docker-stack/entrypoint.html
IMAGE_ENV = {
    "apache/airflow": {
        "_AIRFLOW_DB_MIGRATE",
        "_AIRFLOW_WWW_USER_CREATE",
        "_AIRFLOW_WWW_USER_USERNAME",
        "_AIRFLOW_WWW_USER_PASSWORD",
        "_PIP_ADDITIONAL_REQUIREMENTS",
        "CONNECTION_CHECK_MAX_COUNT",
        "DUMB_INIT_SETSID",
    },
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
    "minio/minio": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
}
# Variables read by a library: the module file that reads it must name it.
LIBRARY_ENV = {
    "AIRFLOW_CONFIG": ("airflow", "configuration.py"),
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": ("gcsfs", "__init__.py"),
}
# [section] option pairs of providers that are in the apache/airflow image but not in this venv.
PROVIDER_OPTIONS = {("celery", "result_backend")}


@pytest.fixture(scope="module")
def stack() -> dict:
    return compose.load()


@pytest.fixture(scope="module")
def services(stack) -> dict[str, dict]:
    return stack["services"]


def built_from_dockerfile(service: dict) -> bool:
    return "build" in service


def base_image(service: dict) -> str:
    """The image a service really runs: its Dockerfile stage's base when built here."""
    if not built_from_dockerfile(service):
        return service["image"]
    _, stages, _ = compose.dockerfile_stages()
    return stages[0][0]


def python_text() -> str:
    return "\n".join(path.read_text() for path in PYTHON_SOURCES)


# -- structure ------------------------------------------------------------------------------------
def test_the_stack_has_every_part(services):
    expected = {
        "postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
        "airflow-worker", "airflow-triggerer", "airflow-init", "minio", "minio-init", "fake-gcs",
        "linkai-server", "linkai-samples",
    }  # fmt: skip
    assert expected <= set(services)
    airflow = [name for name, svc in services.items() if name.startswith("airflow-")]
    for name in airflow:
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert "./dags:/opt/airflow/dags:ro" in services[name]["volumes"], name


def test_every_interpolation_is_valid_and_has_a_value_without_an_env_file():
    raw = compose.COMPOSE.read_text()
    missing = [ref.name for ref in compose.references(raw) if not ref.has_default]
    # AIRFLOW_UID etc. are always written with a default; a bare ${VAR} must come from .env.example
    assert set(missing) <= set(compose.env_file()), f"no default and not in .env.example: {missing}"
    compose.load({})  # no ${VAR:?...} fails with an empty environment


def test_env_example_lists_only_variables_the_compose_file_uses():
    used = {ref.name for ref in compose.references(compose.COMPOSE.read_text())}
    listed = set(compose.env_file())
    assert listed <= used, f".env.example has variables docker-compose.yaml never reads: {listed - used}"
    # the two that switch to the real API are documented there
    assert {"LINKAI_HOST", "LINKAI_API_KEY"} <= listed


def test_env_example_values_are_the_compose_defaults():
    """Copying .env.example to .env must change nothing: its values are the defaults."""
    assert compose.load(compose.env_file()) == compose.load({})


# -- images -----------------------------------------------------------------------------------------
PINNED = re.compile(r"^[\w./-]+:(?P<tag>[\w.-]+)$")
SPECIFIC = re.compile(r"\d+\.\d+|RELEASE\.\d{4}-\d\d-\d\d")  # a release, not a moving major tag


def test_every_image_is_pinned(services):
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name}: no image"
        match = PINNED.match(image)
        assert match, f"{name}: image {image!r} has no tag"
        tag = match.group("tag")
        assert tag != "latest", f"{name}: {image} uses latest"
        if not built_from_dockerfile(svc):
            assert SPECIFIC.search(tag), f"{name}: {image} is not pinned to a release"


def test_dockerfile_bases_are_pinned_and_airflow_is_the_tested_version():
    args, stages, lines = compose.dockerfile_stages()
    names = {name for _, name in stages}
    assert {"airflow", "linkai-server"} <= names
    external = [image for image, _ in stages if image not in names]
    assert external == ["apache/airflow:" + args["AIRFLOW_VERSION"]]
    assert args["AIRFLOW_VERSION"] == importlib.metadata.version("apache-airflow"), (
        "the image's Airflow must be the one the test suite runs on"
    )
    installs = [line for line in lines if line.startswith("RUN pip install")]
    assert installs and all('"apache-airflow==${AIRFLOW_VERSION}"' in line for line in installs), (
        "every pip install must pin Airflow, or resolving the extras may move it"
    )


def test_images_built_here_use_the_dockerfile_targets(services):
    _, stages, _ = compose.dockerfile_stages()
    targets = {name for _, name in stages if name}
    for name, svc in services.items():
        if built_from_dockerfile(svc):
            assert svc["build"]["context"] == "."
            assert svc["build"]["target"] in targets, name
    assert services["linkai-server"]["build"]["target"] == "linkai-server"
    assert services["airflow-worker"]["build"]["target"] == "airflow"


def test_dockerfile_copies_what_the_install_needs_and_dockerignore_keeps_it():
    _, _, lines = compose.dockerfile_stages()
    copied = []
    for line in lines:
        if line.startswith("COPY "):
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            copied += parts[:-1]
    assert set(copied) == {"pyproject.toml", "README.md", "linkai_provider"}
    for path in copied:
        assert (REPO / path).exists(), f"COPY {path}: missing from the repository"
    ignore = (REPO / ".dockerignore").read_text().split()
    assert "*" in ignore and {"!pyproject.toml", "!README.md", "!linkai_provider"} <= set(ignore)
    # every extra the image installs exists in pyproject.toml
    extras = set(importlib.metadata.metadata("airflow-provider-linkai").get_all("Provides-Extra"))
    for line in lines:
        for group in re.findall(r"/opt/linkai\[([\w,-]+)\]", line):
            assert set(group.split(",")) <= extras, line


# -- health, order, ports ----------------------------------------------------------------------------
def test_long_running_services_have_health_checks(services):
    for name, svc in services.items():
        if name in ONE_SHOT or name in ON_DEMAND:
            continue
        check = svc.get("healthcheck")
        assert check and check.get("test"), f"{name}: no healthcheck"
        assert svc.get("restart") == "always", f"{name}: should be restarted"
    for name in ON_DEMAND:
        assert services[name].get("profiles"), f"{name} must not start with `docker compose up`"


def test_depends_on_targets_exist_and_conditions_can_be_met(services):
    awaited_once = set()
    for name, svc in services.items():
        for target, condition in compose.depends_on(svc).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert condition in ("service_healthy", "service_completed_successfully"), (name, target)
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target}, which has no healthcheck"
            else:
                assert target in ONE_SHOT, f"{name} waits for {target} to exit, but it runs forever"
                awaited_once.add(target)
    assert awaited_once == ONE_SHOT
    for name in ONE_SHOT:
        assert "restart" not in services[name], f"{name} runs once: restarting it would loop"


def test_dependency_graph_has_no_cycle(services):
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "active", f"cycle: {' -> '.join(path + [name])}"
        state[name] = "active"
        for target in compose.depends_on(services[name]):
            visit(target, path + [name])
        state[name] = "done"

    for name in services:
        visit(name, [])


def test_ports_are_on_loopback_and_do_not_clash(services):
    seen: dict[str, str] = {}
    for name, svc in services.items():
        for port in svc.get("ports", []):
            host_ip, host_port, container_port = str(port).split(":")
            assert host_ip == "127.0.0.1", f"{name}: {port} is reachable from other machines"
            assert host_port not in seen, f"{name} and {seen.get(host_port)} both publish {host_port}"
            seen[host_port] = name
    assert seen["8080"] == "airflow-apiserver"
    assert seen["8765"] == "linkai-server"


def test_worker_can_be_scaled(services):
    worker = services["airflow-worker"]
    assert "ports" not in worker and "container_name" not in worker, "`--scale airflow-worker=3` would clash"


# -- settings are read by someone -------------------------------------------------------------------
def all_env(services) -> dict[tuple[str, str], str]:
    return {(name, key): value for name, svc in services.items() for key, value in compose.environment(svc).items()}


def test_airflow_settings_are_real_options(services):
    from airflow.configuration import conf

    known = conf.configuration_description
    for (name, key), _ in all_env(services).items():
        if not key.startswith("AIRFLOW__"):
            continue
        _, section, option = key.lower().split("__", 2)
        valid = option in known.get(section, {}).get("options", {}) or (section, option) in PROVIDER_OPTIONS
        assert valid, f"{name}: {key} is not an Airflow option"


def conn_ids_in_code() -> set[str]:
    """Literal values of every ``*conn_id=`` keyword in the DAGs, plus the hook's default."""
    from linkai_provider.hooks.linkai import LinkAIHook

    ids = {LinkAIHook.default_conn_name}
    for path in REPO.glob("dags/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.keyword)
                and node.arg
                and node.arg.endswith("conn_id")
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
                and node.value.value
                and "{{" not in node.value.value
            ):
                ids.add(node.value.value)
    return ids


def test_every_connection_the_dags_use_is_defined(services):
    env = compose.environment(services["airflow-worker"])
    defined = {key[len("AIRFLOW_CONN_") :].lower() for key in env if key.startswith("AIRFLOW_CONN_")}
    assert conn_ids_in_code() <= defined
    # connections named through Variables exist too
    for key, value in env.items():
        if key.startswith("AIRFLOW_VAR_") and key.endswith("_CONN_ID"):
            assert value in defined, f"{key}={value}: no such connection"


def test_every_connection_and_variable_set_is_used(services):
    code = python_text()
    env = compose.environment(services["airflow-worker"])
    samples = compose.environment(services["linkai-samples"])
    via_variables = {v for k, v in env.items() if k.startswith("AIRFLOW_VAR_") and k.endswith("_CONN_ID")}
    via_samples = {t.split("@")[1] for t in samples["LINKAI_SAMPLE_TARGETS"].split()}
    for key in env:
        if key.startswith("AIRFLOW_CONN_"):
            conn_id = key[len("AIRFLOW_CONN_") :].lower()
            assert conn_id in conn_ids_in_code() | via_variables | via_samples, f"{key}: nobody uses it"
        if key.startswith("AIRFLOW_VAR_"):
            name = key[len("AIRFLOW_VAR_") :].lower()
            assert f"'{name}'" in code or f'"{name}"' in code, f"{key}: no DAG reads Variable {name}"


def test_every_other_variable_is_read_by_code_an_image_or_a_library(services):
    code = python_text()
    for (name, key), _ in all_env(services).items():
        if key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")):
            continue
        svc = services[name]
        own_command = json.dumps(svc.get("command", "")) + json.dumps(svc.get("entrypoint", ""))
        image = base_image(svc).split(":")[0]
        if key in IMAGE_ENV.get(image, set()) or re.search(rf"\b{key}\b", own_command):
            continue
        if key in LIBRARY_ENV:
            package, module = LIBRARY_ENV[key]
            spec = importlib.util.find_spec(package)
            assert spec and spec.origin
            assert key in (Path(spec.origin).parent / module).read_text(), f"{package} no longer reads {key}"
            continue
        assert re.search(rf"\b{key}\b", code), f"{name}: {key} is read by nothing in this repository"


# -- the connections work as written --------------------------------------------------------------
def set_connections(monkeypatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        if key.startswith("AIRFLOW_CONN_"):
            json.loads(value)  # valid JSON after interpolation
            monkeypatch.setenv(key, value)


def test_linkai_connection_defaults_to_the_local_server(monkeypatch):
    from linkai_provider.hooks.linkai import LinkAIHook

    set_connections(monkeypatch, compose.environment(compose.load({})["services"]["airflow-worker"]))
    config = LinkAIHook().config
    assert config.endpoint == "http://linkai-server:8765/v1/audio/transcriptions"
    server = compose.load({})["services"]["linkai-server"]
    assert config.api_key in compose.environment(server)["LINKAI_SERVER_API_KEYS"].split(",")


def test_env_switches_to_the_real_api(monkeypatch):
    from linkai_provider.hooks.linkai import LinkAIHook

    env = {"LINKAI_HOST": "https://api.linkai.cloud", "LINKAI_API_KEY": "sk-real-key-123"}
    set_connections(monkeypatch, compose.environment(compose.load(env)["services"]["airflow-worker"]))
    config = LinkAIHook().config
    assert config.endpoint == "https://api.linkai.cloud/v1/audio/transcriptions"
    assert config.api_key == "sk-real-key-123"


def test_storage_connections_reach_minio_and_fake_gcs(monkeypatch):
    from linkai_provider.io.storage import resolve

    services = compose.load({})["services"]
    set_connections(monkeypatch, compose.environment(services["airflow-worker"]))
    s3, path = resolve("s3://linkai/audio", "minio")
    assert type(s3).__name__ == "S3FileSystem" and path == "linkai/audio"
    assert s3.endpoint_url == "http://minio:9000"
    minio_env = compose.environment(services["minio"])
    assert (s3.key, s3.secret) == (None, None) or s3.key == minio_env["MINIO_ROOT_USER"]
    gcs, path = resolve("gs://linkai/audio", "fake_gcs")
    assert "GCSFileSystem" in type(gcs).__name__ and path == "linkai/audio"
    assert gcs._endpoint == "http://fake-gcs:4443"
    assert services["fake-gcs"]["command"][services["fake-gcs"]["command"].index("-port") + 1] == "4443"


def test_linkai_server_runs_the_configured_engine(services):
    server = services["linkai-server"]
    command = server["command"]
    assert command[command.index("--engine") + 1] == "whisper"
    assert command[command.index("--port") + 1] == "8765"
    # inside its container the server must listen beyond loopback for the workers to reach it;
    # the published port stays on 127.0.0.1 (test_ports_are_on_loopback_and_do_not_clash)
    assert command[command.index("--host") + 1] == "0.0.0.0"


# -- the install step -------------------------------------------------------------------------------
def test_the_wheel_the_image_installs_is_complete(tmp_path):
    """What `pip install /opt/linkai[...]` builds: an isolated PEP 517 build of this checkout."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("airflow_provider_linkai-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        metadata = zf.read(f"{dist_info}/METADATA").decode()
    assert "linkai_provider/py.typed" in names
    assert "linkai_provider/hooks/linkai.py" in names and "linkai_provider/operators/transcribe.py" in names
    assert not any(n.startswith(("tests/", "dags/", "docs/")) for n in names)
    # every entry point names a module that is in the wheel
    targets = re.findall(r"^\S+\s*=\s*([\w.]+):\w+$", entry_points, re.M)
    targets += re.findall(r"^\S+\s*=\s*([\w.]+)$", entry_points, re.M)
    assert "linkai_provider:get_provider_info" in entry_points.replace(" ", "")
    assert "linkai-server=linkai_provider.server.cli:main" in entry_points.replace(" ", "")
    for module in targets:
        path = module.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__init__.py" in names, f"entry point module {module} not in wheel"
    for extra in ("s3", "gcs", "analytics", "server"):
        assert f"Provides-Extra: {extra}" in metadata


# -- the sample uploader --------------------------------------------------------------------------
def test_sample_uploader_fills_s3_and_gcs_through_airflow_connections(moto_endpoint, gcs_endpoint, s3fs_factory):
    """linkai-samples' script, run as written against real S3 and GCS APIs (moto, emulator) with the
    compose connections pointed at them."""
    from linkai_provider.io.sources import list_audio

    svc = compose.load({})["services"]["linkai-samples"]
    script = svc["command"][0]
    assert svc["entrypoint"] == ["python", "-c"]
    env = dict(os.environ)
    env["LINKAI_SAMPLE_TARGETS"] = compose.environment(svc)["LINKAI_SAMPLE_TARGETS"]
    conns = {
        "minio": {"conn_type": "aws", "login": "testing", "password": "testing",
                  "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}},
        "fake_gcs": {"conn_type": "generic", "extra": {"endpoint_url": gcs_endpoint, "token": "anon", "project": "t"}},
    }  # fmt: skip
    for conn_id, conn in conns.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(conn)
    s3fs_factory().mkdir("linkai")  # minio-init's job in the stack

    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("10 clips and 1 text file in") == 2, result.stdout

    day = re.search(r"/audio/(\d{4}-\d\d-\d\d)/", result.stdout).group(1)
    for url, conn_id in (("s3://linkai/audio", "minio"), ("gs://linkai/audio", "fake_gcs")):
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = env[f"AIRFLOW_CONN_{conn_id.upper()}"]
        try:
            listing = list_audio(f"{url}/{day}/", conn_id)
        finally:
            del os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"]
        assert len(listing.files) == 10 and len(listing.unsupported) == 1, url
        assert sorted(f.audio_format for f in listing.files) == sorted(
            ("mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm", "flac", "amr")
        )
        assert all(f.size > 1000 for f in listing.files)
