"""Benchmark harness for the LinkAI transcription pipeline (issue 6).

    .venv/bin/python bench/run.py                      # every scenario, full size (~5 min)
    .venv/bin/python bench/run.py --quick              # smoke run, fewer files
    .venv/bin/python bench/run.py --scenario latency   # one scenario (repeatable)
    .venv/bin/python bench/run.py --profile            # also py-spy the client of each scenario

Starts linkai-server (digest engine) as a child process, generates the inputs in a temp folder,
runs each scenario's task in a client subprocess (``bench/client.py``: hook + list_audio +
plan_batch + TranscriptionPipeline + TranscriptWriter, as the operator wires them), samples that
process's memory, and prints a table; JSON and Markdown copies go to ``bench/results/``.
See docs/performance.md for the figures and what they mean.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench import inputs  # noqa: E402
from linkai_provider.server.testing import ProcessServerHandle, start_server_process  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SCENARIOS = ("latency", "s3", "cpu", "memory", "planning")
SMALL = 20_000  # bytes per small file
BIG = 50 * 1024 * 1024
LATENCY_MS = 200


@dataclass
class Row:
    scenario: str
    files: int
    wall_s: float
    files_per_s: float
    limit_s: float | None = None
    seed_loop_s: float | None = None
    rss_growth_mb: float | None = None
    list_plan_s: float | None = None
    requests: int | None = None
    connections: int | None = None
    target: str = ""
    met: bool = False
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_client(cls, scenario: str, files: int, res: dict[str, Any], limit_s: float | None = None) -> Row:
        """A row from what the client subprocess reported."""
        return cls(
            scenario,
            files,
            res["wall_s"],
            files / res["wall_s"],
            limit_s=limit_s,
            rss_growth_mb=res["rss_growth_mb"],
            list_plan_s=res["list_s"] + res["plan_s"],
            requests=res["server"]["requests_total"],
            connections=res["connections_opened"],
            detail=res,
        )

    @property
    def ratio_limit(self) -> float | None:
        return self.wall_s / self.limit_s if self.limit_s else None

    @property
    def ratio_seed(self) -> float | None:
        return self.seed_loop_s / self.wall_s if self.seed_loop_s else None


# -- processes ---------------------------------------------------------------------------------------
def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.update(extra or {})
    return env


class RssSampler(threading.Thread):
    """Samples a process's RSS every 10 ms (psutil), keeping the maximum."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self.stop.wait(0.01)


def run_client(
    spec: dict[str, Any], server: ProcessServerHandle, env: dict[str, str] | None = None, profile: Path | None = None
) -> dict[str, Any]:
    conn = json.dumps({"conn_type": "linkai", "host": server.url, "password": server.api_key})
    cmd = [sys.executable, "-X", "faulthandler", "-m", "bench.client", json.dumps(spec)]
    if profile is not None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        cmd = [
            py_spy,
            "record",
            "--format",
            "speedscope",
            "--rate",
            "250",
            "--threads",
            "--idle",
            "-o",
            str(profile),
            "--",
            *cmd,
        ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=_env({"AIRFLOW_CONN_LINKAI_BENCH": conn, **(env or {})}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = None
    if profile is None:
        sampler = RssSampler(proc.pid)
        sampler.start()
    out, err = proc.communicate()
    if sampler is not None:
        sampler.stop.set()
        sampler.join()
    lines = [line for line in out.splitlines() if line.startswith("{")]  # py-spy prints its own lines
    if not lines:
        raise RuntimeError(f"client failed ({proc.returncode}):\n{err[-4000:]}")
    result = json.loads(lines[-1])
    if proc.returncode != 0:
        # The task finished and reported; the interpreter died on the way out (see docs/performance.md).
        result["exit_code"] = proc.returncode
        print(f"[bench] warning: client exited {proc.returncode} after finishing: {err.strip()[:200]}", file=sys.stderr)
    if sampler is not None:
        result["sampled_peak_rss_mb"] = sampler.peak / 2**20
    if err.strip():
        result["stderr_tail"] = err.strip()[-1000:]
    return result


def run_seed_loop(paths: list[Path], server: ProcessServerHandle, workdir: Path) -> dict[str, Any]:
    list_file = workdir / "seed-loop-files.txt"
    list_file.write_text("\n".join(str(p) for p in paths))
    out = subprocess.run(
        [sys.executable, "-m", "bench.seed_loop", server.url, server.api_key, str(list_file)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def start_server(**flags: Any) -> ProcessServerHandle:
    # access lines at info would cost the server CPU on this 2-core machine; the hosted API's
    # logging is not ours to pay for
    return start_server_process(engine="digest", log_level="warning", max_upload_bytes="100MiB", **flags)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """moto's S3 in a separate process on 127.0.0.1 (ThreadedMotoServer)."""

    def __init__(self) -> None:
        self.port = free_port()
        code = (
            "import time; from moto.server import ThreadedMotoServer; "
            f"s = ThreadedMotoServer(ip_address='127.0.0.1', port={self.port}, verbose=False); s.start(); "
            "time.sleep(10**9)"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": self.url}}

    @property
    def conn_env(self) -> dict[str, str]:
        return {
            "AIRFLOW_CONN_BENCH_S3": json.dumps({"conn_type": "generic", "extra": self.options}),
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- scenarios ---------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.work = Path(tempfile.mkdtemp(prefix="linkai-bench-", dir=args.tmp))
        self.servers: dict[int, ProcessServerHandle] = {}
        self.rows: dict[str, Row] = {}
        self.profiles = RESULTS / "profiles"

    def server(self, latency_ms: int) -> ProcessServerHandle:
        if latency_ms not in self.servers:
            self.servers[latency_ms] = start_server(latency_ms=latency_ms) if latency_ms else start_server()
        server = self.servers[latency_ms]
        server.reset_stats()
        return server

    def client(self, spec: dict[str, Any], server: ProcessServerHandle, env: dict[str, str] | None = None):
        profile = None
        if self.args.profile:
            self.profiles.mkdir(parents=True, exist_ok=True)
            profile = self.profiles / f"{spec['scenario']}.speedscope.json"
        cpu0 = _cpu_seconds(server.pid)
        load = os.getloadavg()[0]
        result = run_client(spec, server, env, profile)
        result["server_cpu_s"] = _cpu_seconds(server.pid) - cpu0
        result["loadavg_1m_before"] = load
        stats = server.stats()
        result["server"] = {
            k: stats.get(k)
            for k in ("requests_total", "by_status", "max_in_flight", "duplicate_sha256", "bytes_received")
        }
        expected = result["summary"]["transcribed"]
        if result["summary"]["failed"] or result["rows_ok"] != expected:
            raise RuntimeError(f"{spec['scenario']}: not every file transcribed: {result}")
        return result

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)

    def _latency_files(self) -> tuple[Path, list[Path]]:
        folder = self.work / "latency-audio"
        if not folder.exists():
            paths = inputs.make_files(folder, 100 if self.quick else 1000, SMALL, seed=1)
        else:
            paths = sorted(folder.iterdir())
        return folder, paths

    def repeated(self, spec: dict[str, Any], server: ProcessServerHandle, env: dict[str, str] | None = None):
        """Run the client ``--repeat`` times (fresh dataset each time); the run of median wall time."""
        runs = []
        for i in range(self.args.repeat):
            server.reset_stats()
            runs.append(self.client({**spec, "destination": f"{spec['destination'].rstrip('/')}-{i}"}, server, env))
        runs.sort(key=lambda r: r["wall_s"])
        median = runs[(len(runs) - 1) // 2]
        median["all_walls_s"] = [round(r["wall_s"], 3) for r in runs]
        return median

    def latency(self, seed_loop: bool = True) -> Row:
        k, lat = 32, LATENCY_MS / 1000
        folder, paths = self._latency_files()
        server = self.server(LATENCY_MS)
        res = self.repeated(
            {
                "scenario": "latency",
                "source": str(folder),
                "destination": str(self.work / "ds-latency"),
                "max_concurrency": k,
            },
            server,
        )
        n = len(paths)
        limit = math.ceil(n / k) * lat
        row = Row.from_client("latency", n, res, limit_s=limit)
        if seed_loop and not self.args.no_seed_loop:
            server.reset_stats()
            seed = run_seed_loop(paths, server, self.work)
            if seed["ok"] != n or server.stats()["transcriptions_ok"] != n:
                raise RuntimeError(f"seed loop failed on some files: {seed}")
            row.seed_loop_s = seed["wall_s"]
            row.detail["seed_loop"] = seed
        row.target = f"<= 1.1 x limit ({1.1 * limit:.2f} s), >= 25x seed loop"
        row.met = row.wall_s <= 1.1 * limit and (row.ratio_seed is None or row.ratio_seed >= 25)
        return row

    def s3(self) -> Row:
        import s3fs

        k = 32
        folder, paths = self._latency_files()
        moto = Moto()
        try:
            fs = s3fs.S3FileSystem(**moto.options)
            fs.mkdir("bench")
            fs.put(str(folder) + "/", "bench/latency-audio/", recursive=True)
            local = self.rows.get("latency") or self.latency(seed_loop=False)
            server = self.server(LATENCY_MS)
            res = self.repeated(
                {
                    "scenario": "s3",
                    "source": "s3://bench/latency-audio/",
                    "destination": "s3://bench/ds-s3",
                    "source_conn_id": "bench_s3",
                    "destination_conn_id": "bench_s3",
                    "max_concurrency": k,
                },
                server,
                moto.conn_env,
            )
        finally:
            moto.stop()
        n = len(paths)
        row = Row.from_client("s3", n, res, limit_s=math.ceil(n / k) * LATENCY_MS / 1000)
        row.detail["local_wall_s"] = local.wall_s
        row.target = f"<= 1.2 x local disk ({1.2 * local.wall_s:.2f} s)"
        row.met = row.wall_s <= 1.2 * local.wall_s
        return row

    def cpu(self) -> Row:
        k = self.args.cpu_concurrency
        n = 1000 if self.quick else 5000
        folder = self.work / "cpu-audio"
        inputs.make_files(folder, n, SMALL, seed=2)
        server = self.server(0)
        res = self.client(
            {"scenario": "cpu", "source": str(folder), "destination": str(self.work / "ds-cpu"), "max_concurrency": k},
            server,
        )
        row = Row.from_client("cpu", n, res)
        row.target = ">= 300 files/s"
        row.met = row.files_per_s >= 300
        return row

    def memory(self) -> Row:
        k = 8
        n = 8 if self.quick else 40
        folder = self.work / "memory-audio"
        inputs.make_files(folder, n, BIG, seed=3)
        server = self.server(0)
        res = self.client(
            {
                "scenario": "memory",
                "source": str(folder),
                "destination": str(self.work / "ds-memory"),
                "max_concurrency": k,
            },
            server,
        )
        wall = res["wall_s"]
        row = Row.from_client("memory", n, res)
        row.detail["input_bytes"] = n * BIG
        row.detail["mb_per_s"] = n * BIG / 2**20 / wall
        row.target = "peak RSS growth <= 150 MB"
        row.met = res["rss_growth_mb"] <= 150
        return row

    def planning(self) -> Row:
        k = 32
        existing = 10_000 if self.quick else 100_000
        folder = self.work / "planning-audio"
        dest = self.work / "ds-planning"
        inputs.make_tiny_files(folder, existing)
        seeded = inputs.seed_dataset(folder, dest, rows_per_part=1000)
        inputs.make_files(folder, 100, SMALL, seed=4, prefix="new")
        server = self.server(LATENCY_MS)
        res = self.client(
            {"scenario": "planning", "source": str(folder), "destination": str(dest), "max_concurrency": k}, server
        )
        row = Row.from_client("planning", existing + 100, res)
        row.detail["existing_rows"] = seeded
        row.target = "list+plan <= 3 s, exactly 100 requests"
        row.met = row.list_plan_s <= 3.0 and row.requests == 100 and res["summary"]["transcribed"] == 100
        return row


# -- output ------------------------------------------------------------------------------------------
def _f(value: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, fmt) + suffix


def table(rows: list[Row]) -> str:
    head = [
        "scenario",
        "files",
        "wall s",
        "files/s",
        "ratio to limit",
        "x seed loop",
        "peak RSS growth",
        "list+plan s",
        "requests",
        "conns",
        "target",
        "met",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    r.scenario,
                    f"{r.files:,}",
                    f"{r.wall_s:.2f}",
                    f"{r.files_per_s:.0f}",
                    _f(r.ratio_limit, ".3f", f" ({r.limit_s:.2f} s)" if r.limit_s else ""),
                    _f(r.ratio_seed, ".1f", f"x ({r.seed_loop_s:.1f} s)" if r.seed_loop_s else ""),
                    _f(r.rss_growth_mb, ".0f", " MB"),
                    _f(r.list_plan_s, ".2f"),
                    _f(r.requests, "d"),
                    _f(r.connections, "d"),
                    r.target,
                    "yes" if r.met else "**no**",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    p.add_argument("--quick", action="store_true", help="fewer files (smoke run; not the published figures)")
    p.add_argument("--profile", action="store_true", help="record each client with py-spy into bench/results/profiles")
    p.add_argument(
        "--repeat", type=int, default=3, help="runs of the latency and s3 pipelines; the median is reported (default 3)"
    )
    p.add_argument("--no-seed-loop", action="store_true", help="skip the seed's sequential loop (saves ~200 s)")
    p.add_argument("--cpu-concurrency", type=int, default=16, help="max_concurrency of the cpu scenario")
    p.add_argument("--tmp", default=None, help="folder for the inputs (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the generated inputs")
    args = p.parse_args(argv)
    chosen = args.scenario or list(SCENARIOS)
    bench = Bench(args)
    rows: list[Row] = []
    started = time.time()
    try:
        for name in SCENARIOS:
            if name not in chosen:
                continue
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            t = time.perf_counter()
            row = getattr(bench, name)()
            bench.rows[name] = row
            rows.append(row)
            print(
                f"[bench] {name}: wall {row.wall_s:.2f} s, met={row.met} ({time.perf_counter() - t:.0f} s with setup)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        bench.close()
    md = table(rows)
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(started))
    meta = {
        "started": stamp,
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "command": " ".join(["bench/run.py", *(argv or sys.argv[1:])]),
    }
    payload = {
        "meta": meta,
        "rows": [{**asdict(r), "ratio_limit": r.ratio_limit, "ratio_seed": r.ratio_seed} for r in rows],
    }
    for name in (f"bench-{stamp}", "latest"):
        (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
        (RESULTS / f"{name}.md").write_text(f"{meta}\n\n{md}\n")
    if args.quick:
        print("(--quick: fewer files, so fixed costs weigh more; the targets are for the full size)")
        return 0
    return 0 if all(r.met for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
