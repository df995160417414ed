"""A real Airflow 3 deployment on one machine, started by the test itself: Postgres and Redis from
Debian packages, then Airflow's api-server, scheduler, dag-processor, triggerer and two Celery
workers, each a process of its own with its own log, every port on 127.0.0.1.

Nothing here is Airflow-specific test magic: the components get the settings ``docs/production.md``
gives every component (its ``env`` snippet, run as written; only addresses, secrets of this throwaway
deployment and the test's speed-ups differ), and they are started by the docs' own command lines
(``components`` and ``workers``, run as written, log-server ports included).

One thing is added for the midnight test: a clock the test can move (``tests/stack/clock``), inactive
until :meth:`Stack.shift_clock` is called.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql")
PRODUCTION_SH = REPO / "docs" / "snippets" / "production.sh"
CLOCK_SITE = Path(__file__).resolve().parent / "clock"  # its sitecustomize.py: the movable clock
# Settings of docs/production.md's `env` section this deployment gives other values: addresses (all on
# 127.0.0.1, free ports), and where its dataset, audio and LinkAI server are (the test's own).
ADDRESSES = (
    "AIRFLOW_HOME",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__API__HOST",
    "AIRFLOW__API__PORT",
    "AIRFLOW__API__BASE_URL",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__LINKAI__TRANSCRIPTS_URL",
    "AIRFLOW_CONN_LINKAI_DEFAULT",
    "AIRFLOW_VAR_LINKAI_AUDIO_URL",
)


def snippet_section(name: str) -> str:
    """One ``--8<--`` section of docs/snippets/production.sh, as the docs include it."""
    text = PRODUCTION_SH.read_text()
    return text.split(f"# --8<-- [start:{name}]\n")[1].split(f"# --8<-- [end:{name}]")[0]


def snippet_commands(name: str) -> list[str]:
    """The command lines of a section (continuations joined, comment lines dropped), as written."""
    joined = snippet_section(name).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def documented_env() -> dict[str, str]:
    """What the docs' ``env`` section exports, run by bash as written."""
    script = snippet_section("env") + "\nenv -0\n"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        check=True,
    )
    pairs = (item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    return {k: v for k, v in pairs if k.startswith(("AIRFLOW", "LINKAI"))}


def component_name(line: str) -> str:
    """``worker2`` for a worker's line (its LINKAI_WORKER_NAME), else the airflow command."""
    words = line.split()
    named = [w.split("=", 1)[1] for w in words if w.startswith("LINKAI_WORKER_NAME=")]
    if named:
        return named[0]
    return words[words.index("airflow") + 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_bin(name: str) -> str:
    """A PostgreSQL server binary (Debian keeps them out of PATH, under /usr/lib/postgresql/<major>/bin)."""
    found = sorted(PG_BIN.glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found under {PG_BIN}: run scripts/setup-env.sh")
    return str(found[-1])


def wait_for(what: str, check, timeout: float, components: list[Component] | None = None, every: float = 0.5):
    """Poll ``check()`` until it returns a truthy value; fail with the components' logs otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        for comp in components or []:
            if comp.process.poll() is not None:
                raise RuntimeError(f"{comp.name} exited with {comp.process.returncode} while waiting for {what}")
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


@dataclass
class Component:
    name: str
    process: subprocess.Popen
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


@dataclass
class Stack:
    """Everything started, in start order; :meth:`stop` ends them in reverse."""

    workdir: Path
    components: list[Component] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    pg_port: int = 0
    redis_port: int = 0
    api_port: int = 0
    _pgdata: Path | None = None
    _token: str | None = None
    clock_offset: float = 0.0

    # -- processes -------------------------------------------------------------------------------
    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None, user: str | None = None):
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        with open(log, "ab") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env or self.env,
                cwd=self.workdir,
                start_new_session=True,  # its own process group: stop() ends it and its children
            )
        comp = Component(name, process, log)
        self.components.append(comp)
        return comp

    def stop(self) -> None:
        for comp in reversed(self.components):
            if comp.process.poll() is None:
                try:
                    os.killpg(comp.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for comp in reversed(self.components):
            try:
                comp.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(comp.process.pid, signal.SIGKILL)
                comp.process.wait()
        if self._pgdata is not None:
            shutil.rmtree(self._pgdata, ignore_errors=True)

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"===== {c.name} ({c.log}) =====\n{c.tail(lines)}" for c in self.components)

    # -- Postgres and Redis ----------------------------------------------------------------------
    def start_postgres(self) -> str:
        """A throwaway cluster (fsync off) on 127.0.0.1; returns the SQLAlchemy URL of database ``airflow``."""
        user = "postgres" if os.geteuid() == 0 else None  # PostgreSQL refuses to run as root
        data = Path(tempfile.mkdtemp(prefix="linkai-stack-pg-"))  # outside the root-only pytest tmp folders
        self._pgdata = data
        if user:
            shutil.chown(data, user)
        init = ["runuser", "-u", user, "--"] if user else []
        subprocess.run(
            [*init, pg_bin("initdb"), "-D", str(data / "db"), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        self.pg_port = free_port()
        pg = self.start(
            "postgres",
            [
                pg_bin("postgres"),
                "-D", str(data / "db"),
                "-p", str(self.pg_port),
                "-k", str(data),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=200",
            ],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            user=user,
        )  # fmt: skip

        def ready() -> bool:
            done = subprocess.run(
                [pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres"],
                capture_output=True,
            )
            return done.returncode == 0

        wait_for("postgres accepting connections", ready, 60, [pg])
        self.psql("CREATE DATABASE airflow", database="postgres")
        # The scheduler asks the database whether a run is due (`next_dagrun_create_after <= now()`):
        # a now() that shift_clock() can move, found before pg_catalog's by the database's search_path.
        self.psql(
            "CREATE SCHEMA linkai_clock;"
            " CREATE TABLE linkai_clock.shift (seconds double precision NOT NULL);"
            " INSERT INTO linkai_clock.shift VALUES (0);"
            " CREATE FUNCTION linkai_clock.now() RETURNS timestamptz LANGUAGE sql STABLE AS"
            " $$ SELECT pg_catalog.now() + make_interval(secs => (SELECT seconds FROM linkai_clock.shift)) $$;"
            " ALTER DATABASE airflow SET search_path TO public, linkai_clock, pg_catalog;"
        )
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/airflow"

    def psql(self, sql: str, database: str = "airflow") -> str:
        done = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "-d", database, "-v",
             "ON_ERROR_STOP=1", "-tAc", sql],
            check=True,
            capture_output=True,
            text=True,
        )  # fmt: skip
        return done.stdout.strip()

    # -- the clock --------------------------------------------------------------------------------
    @property
    def clock_file(self) -> Path:
        return self.workdir / "clock-offset"

    def shift_clock(self, seconds: float) -> None:
        """Move every Airflow process's wall clock, and the database's now(), ``seconds`` from the real
        time (the monotonic clock, sleeps and timeouts stay real). Call it while no task runs."""
        # the database a quarter second behind the processes, as NTP-synchronised machines may be: the
        # scheduler's "is it due" (asked of the database) then never runs ahead of the clocks it stamps with
        self.psql(f"UPDATE linkai_clock.shift SET seconds = {float(seconds) - 0.25!r}")
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(repr(float(seconds)))
        tmp.replace(self.clock_file)
        self.clock_offset = float(seconds)
        self._token = None  # issued on the old clock
        time.sleep(0.5)  # every process's watcher looks every 0.1 s

    def now(self) -> float:
        """The deployment's clock, as a Unix timestamp."""
        return time.time() + self.clock_offset

    def start_redis(self) -> str:
        self.redis_port = free_port()
        redis = self.start(
            "redis",
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "", "--appendonly", "no"],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )

        def ready() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for("redis answering PING", ready, 30, [redis])
        return f"redis://127.0.0.1:{self.redis_port}/0"

    # -- Airflow ---------------------------------------------------------------------------------
    def airflow(self, *args: str, env: dict[str, str] | None = None, timeout: float = 180) -> str:
        """Run an ``airflow`` CLI command to completion; returns its output."""
        done = subprocess.run(
            [str(BIN / "airflow"), *args], env=env or self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start_airflow(self) -> None:
        """Every component by the docs' own line (``components``, ``workers``), run by bash as written."""
        path = f"{BIN}:{self.env.get('PATH', '/usr/bin:/bin')}"  # `airflow` is the venv's
        for line in snippet_commands("components") + snippet_commands("workers"):
            self.start(component_name(line), ["bash", "-c", line], env={**self.env, "PATH": path})
        wait_for("api-server /api/v2/monitor/health", self._healthy, 180, self.components)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # -- REST API --------------------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            body = json.dumps({"username": "admin", "password": "admin"}).encode()
            request = urllib.request.Request(
                f"{self.api_url}/auth/token", data=body, headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                self._token = json.loads(response.read())["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None, expect: int | tuple[int, ...] = (200, 201)) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"}
        request = urllib.request.Request(f"{self.api_url}/api/v2{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        expected = (expect,) if isinstance(expect, int) else expect
        if status not in expected:
            raise AssertionError(f"{method} {path} -> {status}: {payload[:2000]!r}")
        return json.loads(payload) if payload else None


def airflow_env(stack: Stack, *, db_url: str, broker_url: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment every Airflow component gets: docs/production.md's ``env`` section as written,
    with this deployment's addresses (:data:`ADDRESSES`) and the test's own settings over it."""
    home = stack.workdir / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    passwords = stack.workdir / "passwords.json"
    passwords.write_text(json.dumps({"admin": "admin"}))
    stack.api_port = free_port()
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR")}
    documented = documented_env()
    undocumented = [name for name in ADDRESSES if name not in documented]
    assert not undocumented, f"docs/snippets/production.sh's env section no longer sets {undocumented}"
    addresses = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(stack.api_port),
        "AIRFLOW__API__BASE_URL": stack.api_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{stack.api_url}/execution/",
    }
    return {
        **keep,
        **documented,
        **addresses,
        "PYTHONPATH": str(CLOCK_SITE),  # the movable clock (inactive until shift_clock)
        "LINKAI_STACK_CLOCK": str(stack.clock_file),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),  # the example DAGs as they are
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        # speed-ups and sizes for a 2-core test machine
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "NO_PROXY": "127.0.0.1,localhost",
        **extra,
    }
