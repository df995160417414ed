"""Benchmark harness for the LinkAI transcription pipeline (issues 6, 10, 12, 13).

    .venv/bin/python bench/run.py                      # every scenario, full size (~15 min)
    .venv/bin/python bench/run.py --quick              # smoke run, fewer files
    .venv/bin/python bench/run.py --scenario latency   # one scenario (repeatable)
    .venv/bin/python bench/run.py --profile            # also py-spy the client of each scenario

Starts linkai-server (digest engine) as a child process, generates the inputs in a temp folder,
runs each scenario's task in a client subprocess (``bench/client.py``: hook + ``Batch`` with
``BatchOptions``, as the operator and ``linkai-transcribe`` wire them, journal on), samples that
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
import statistics
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
SCENARIOS = (
    "latency",
    "s3",
    "cpu",
    "memory",
    "planning",
    "efficiency",
    "limited",
    "shards_limited",
    "long",
    "long_memory",
    "listing",
    "sharded",
    "ui",
)
DEFAULT_SCENARIOS = (
    "latency",
    "s3",
    "cpu",
    "memory",
    "planning",
    "efficiency",
    "limited",
    "shards_limited",
    "long",
    "long_memory",
    "listing",
    "sharded",
    "ui",
)
STATS = (
    "requests_total",
    "by_status",
    "max_in_flight",
    "duplicate_sha256",
    "bytes_received",
    "transcriptions_ok",
    "busy_seconds",
    "first_request_at",
    "last_answer_at",
    "rejected_in_flight",
    "max_admitted",
    "audio_seconds_ok",
    "audio_latency_seconds",
)
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
    figure: str = ""  # the scenario's own figure (efficiency, 429 share, speed-up, ...)
    loadavg: float | None = None  # 1-minute load average before the (median) run
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
            loadavg=res.get("loadavg_1m_before"),
            detail=res,
        )

    @property
    def ratio_limit(self) -> float | None:
        return self.wall_s / self.limit_s if self.limit_s else None

    @property
    def ratio_seed(self) -> float | None:
        return self.seed_loop_s / self.wall_s if self.seed_loop_s else None


# -- processes ---------------------------------------------------------------------------------------
def _env(extra: dict[str, str] | None = None, root: Path = ROOT) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
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
    spec: dict[str, Any],
    server: ProcessServerHandle,
    env: dict[str, str] | None = None,
    profile: Path | None = None,
    gil: bool = False,
    root: Path = ROOT,
) -> dict[str, Any]:
    """``bench/client.py`` of the tree at ``root`` (another checkout: the A/B baseline) in a subprocess."""
    conn = json.dumps({"conn_type": "linkai", "host": server.url, "password": server.api_key})
    cmd = [sys.executable, "-X", "faulthandler", "-m", "bench.client", json.dumps(spec)]
    if profile is not None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        # --gil: only the thread holding the GIL, as collapsed stacks (one line per stack, a count):
        # where the client's serial time goes. Otherwise every thread, idle included, for speedscope.
        mode = ["--gil", "--format", "raw"] if gil else ["--format", "speedscope", "--threads", "--idle"]
        cmd = [py_spy, "record", *mode, "--rate", "250", "-o", str(profile), "--", *cmd]
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=_env({"AIRFLOW_CONN_LINKAI_BENCH": conn, **(env or {})}, root),
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
    flags.setdefault("max_upload_bytes", "100MiB")
    return start_server_process(engine="digest", log_level="warning", **flags)


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
        self.servers: dict[tuple, ProcessServerHandle] = {}
        self.rows: dict[str, Row] = {}
        self.profiles = RESULTS / "profiles"

    def server(self, latency_ms: int = 0, **flags: Any) -> ProcessServerHandle:
        if latency_ms:
            flags["latency_ms"] = latency_ms
        key = tuple(sorted(flags.items()))
        if key not in self.servers:
            self.servers[key] = start_server(**flags)
        server = self.servers[key]
        server.reset_stats()
        return server

    def client(
        self,
        spec: dict[str, Any],
        server: ProcessServerHandle,
        env: dict[str, str] | None = None,
        *,
        allow_failed: bool = False,
        root: Path = ROOT,
    ):
        profile = None
        if self.args.profile or self.args.profile_gil:
            self.profiles.mkdir(parents=True, exist_ok=True)
            tag = "-".join(str(x) for x in (spec["scenario"], spec.get("adaptive", True) and "adaptive" or "fixed"))
            ext = "gil.txt" if self.args.profile_gil else "speedscope.json"
            profile = self.profiles / f"{tag}-{time.strftime('%H%M%S')}.{ext}"
        cpu0 = _cpu_seconds(server.pid)
        load = os.getloadavg()[0]
        result = run_client(spec, server, env, profile, gil=self.args.profile_gil, root=root)
        if profile is not None:
            result["profile"] = str(profile)
        result["server_cpu_s"] = _cpu_seconds(server.pid) - cpu0
        result["loadavg_1m_before"] = load
        stats = server.stats()
        result["server"] = {k: stats.get(k) for k in STATS}
        expected = result["summary"]["transcribed"]
        if result["rows_ok"] != expected or (not allow_failed and result["summary"]["failed"]):
            raise RuntimeError(f"{spec['scenario']}: not every file transcribed: {result}")
        if root == ROOT and (
            result["summary"].get("parts_written") not in (0, 1)
            or result["part_files"] > 1 + spec.get("parts_before", 0)
        ):
            raise RuntimeError(f"{spec['scenario']}: expected one part per run: {result}")
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
        if self.args.baseline_tree:
            # A/B in one run: the same scenario with the client of another checkout (e.g. the engine
            # before the rebuild: `git worktree add /tmp/old <commit>`), runs interleaved with ours.
            base_runs, our_runs = [], []
            for i in range(self.args.repeat):
                for tag, root, runs in (
                    ("ours", ROOT, our_runs),
                    ("baseline", Path(self.args.baseline_tree), base_runs),
                ):
                    server.reset_stats()
                    spec = {
                        "scenario": "latency",
                        "source": str(folder),
                        "destination": str(self.work / f"ds-latency-ab-{tag}-{i}"),
                        "max_concurrency": k,
                    }
                    res_ = self.client(spec, server, root=root)
                    runs.append(
                        {
                            "wall_s": res_["wall_s"],
                            "pipeline_s": res_["pipeline_s"],
                            "busy_s": res_["server"]["busy_seconds"],
                            "loadavg": res_["loadavg_1m_before"],
                        }
                    )
            ratios = sorted(o["wall_s"] / b["wall_s"] for o, b in zip(our_runs, base_runs, strict=True))
            busy_ratios = sorted(o["busy_s"] / b["busy_s"] for o, b in zip(our_runs, base_runs, strict=True))
            row.detail["ab"] = {
                "baseline_tree": self.args.baseline_tree,
                "ours": our_runs,
                "baseline": base_runs,
                "wall_ratio_ours_over_baseline": ratios,
                "busy_ratio_ours_over_baseline": busy_ratios,
            }
            row.figure = (
                f"ours/baseline wall {statistics.median(ratios):.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f}), "
                f"server busy {statistics.median(busy_ratios):.3f}"
            )
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
                # random bytes are not speech: send each 50 MiB file whole, as before splitting existed
                "max_upload_bytes": 100 * 2**20,
                "max_chunk_seconds": 1e9,
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
            {
                "scenario": "planning",
                "source": str(folder),
                "destination": str(dest),
                "max_concurrency": k,
                "parts_before": 100,
            },
            server,
        )
        row = Row.from_client("planning", existing + 100, res)
        row.detail["existing_rows"] = seeded
        row.target = "list+plan <= 3 s, exactly 100 requests"
        row.met = row.list_plan_s <= 3.0 and row.requests == 100 and res["summary"]["transcribed"] == 100
        return row

    # -- issue 13 part 3: the pipeline's own overhead per round, seen from the server ----------------
    def bare(self, folder: Path, k: int, server: ProcessServerHandle) -> dict[str, Any]:
        """The bare asyncio reference client (bench/bare_client.py) over ``folder``."""
        load = os.getloadavg()[0]
        out = subprocess.run(
            [sys.executable, "-m", "bench.bare_client", server.url, server.api_key, str(folder), str(k)],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        res = json.loads(out.stdout.strip().splitlines()[-1])
        stats = server.stats()
        res["server"] = {key: stats.get(key) for key in STATS}
        res["loadavg_1m_before"] = load
        return res

    def efficiency(self) -> Row:
        """1,024 files, K=32, latency 200 and 100 ms: ideal ⌈N/K⌉·L over the server's busy_seconds
        (first request in to last answer out). Ours (Batch, journal on) and the bare asyncio client
        run in turn, ``--repeat`` times each, against the same server."""
        k, n = 32, 256 if self.quick else 1024
        folder = self.work / "efficiency-audio"
        if not folder.exists():
            inputs.make_files(folder, n, SMALL, seed=5)
        per_latency: dict[int, dict[str, Any]] = {}
        for latency_ms in (200, 100):
            ideal = math.ceil(n / k) * latency_ms / 1000
            ours, fixed, bare, baseline = [], [], [], []
            modes: list[tuple[str, bool, list[dict[str, Any]], Path]] = [
                ("ours", True, ours, ROOT),
                ("fixed", False, fixed, ROOT),
            ]
            if self.args.baseline_tree:  # A/B: the other checkout's client, adaptive, interleaved
                modes.append(("baseline", True, baseline, Path(self.args.baseline_tree)))
            for i in range(self.args.repeat):
                for tag, adaptive, runs, root in modes:
                    server = self.server(latency_ms)
                    res = self.client(
                        {
                            "scenario": "efficiency",
                            "source": str(folder),
                            "destination": str(self.work / f"ds-efficiency-{latency_ms}-{tag}-{i}"),
                            "max_concurrency": k,
                            "adaptive": adaptive,
                        },
                        server,
                        root=root,
                    )
                    res["efficiency"] = ideal / res["server"]["busy_seconds"]
                    runs.append(res)
                server = self.server(latency_ms)
                ref = self.bare(folder, k, server)
                if ref["ok"] != n:
                    raise RuntimeError(f"bare client failed on some files: {ref}")
                ref["efficiency"] = ideal / ref["server"]["busy_seconds"]
                bare.append(ref)
            per_latency[latency_ms] = {
                "ideal_s": ideal,
                "ours": [round(r["efficiency"], 4) for r in ours],
                "fixed": [round(r["efficiency"], 4) for r in fixed],  # adaptive=False: no slow start
                "bare": [round(r["efficiency"], 4) for r in bare],
                "baseline": [round(r["efficiency"], 4) for r in baseline],
                "ours_busy_s": [round(r["server"]["busy_seconds"], 3) for r in ours],
                "bare_busy_s": [round(r["server"]["busy_seconds"], 3) for r in bare],
                "loadavg": [round(r["loadavg_1m_before"], 2) for r in ours + fixed + bare],
                "runs": ours,
                "fixed_runs": fixed,
                "bare_runs": bare,
            }
        med = {lat: statistics.median(v["ours"]) for lat, v in per_latency.items()}
        bmed = {lat: statistics.median(v["bare"]) for lat, v in per_latency.items()}
        fmed = {lat: statistics.median(v["fixed"]) for lat, v in per_latency.items()}
        runs = per_latency[200]["runs"]
        res = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
        row = Row.from_client("efficiency", n, res, limit_s=per_latency[200]["ideal_s"])
        row.detail = {"per_latency_ms": per_latency, "median": med, "fixed_median": fmed, "bare_median": bmed}
        row.figure = "; ".join(
            f"{lat} ms: {med[lat]:.3f} (fixed level {fmed[lat]:.3f}, bare asyncio {bmed[lat]:.3f}"
            + (
                f", baseline tree {statistics.median(per_latency[lat]['baseline']):.3f})"
                if per_latency[lat]["baseline"]
                else ")"
            )
            for lat in (200, 100)
        )
        row.target = ">= 0.95 at 200 ms, >= 0.9 at 100 ms (median)"
        row.met = med[200] >= 0.95 and med[100] >= 0.9
        return row

    # -- issue 12: an unknown concurrency limit -----------------------------------------------------
    def limited(self) -> Row:
        """240 files, server --max-in-flight 6 --latency-ms 500 --retry-after 1, max_concurrency 32:
        adaptive and fixed (adaptive=False) in turn, counts from the server."""
        k, limit, n = 32, 6, 60 if self.quick else 240
        folder = self.work / "limited-audio"
        if not folder.exists():
            inputs.make_files(folder, n, SMALL, seed=6)
        ideal = math.ceil(n / limit) * 0.5
        runs: dict[str, list[dict[str, Any]]] = {"adaptive": [], "fixed": []}
        trees = {"adaptive": ROOT, "fixed": ROOT}
        if self.args.baseline_tree:  # A/B: the other checkout's adaptive client, interleaved
            runs["baseline"], trees["baseline"] = [], Path(self.args.baseline_tree)
        for i in range(self.args.limited_repeat):
            for mode in runs:
                server = self.server(500, max_in_flight=limit, retry_after=1)
                res = self.client(
                    {
                        "scenario": "limited",
                        "source": str(folder),
                        "destination": str(self.work / f"ds-limited-{mode}-{i}"),
                        "max_concurrency": k,
                        "adaptive": mode != "fixed",
                    },
                    server,
                    allow_failed=mode == "fixed",
                    root=trees[mode],
                )
                st = res["server"]
                res["rate_limited_server"] = st["by_status"].get("429", 0)
                res["share_429"] = res["rate_limited_server"] / st["requests_total"]
                runs[mode].append(res)
        out: dict[str, Any] = {}
        for mode, rs in runs.items():
            rs.sort(key=lambda r: r["wall_s"])
            out[mode] = {
                "ok": [r["summary"]["transcribed"] for r in rs],
                "failed": [r["summary"]["failed"] for r in rs],
                "requests": [r["server"]["requests_total"] for r in rs],
                "429": [r["rate_limited_server"] for r in rs],
                "share_429": [round(r["share_429"], 4) for r in rs],
                "wall_s": [round(r["wall_s"], 2) for r in rs],
                "pipeline_s": [round(r["pipeline_s"], 2) for r in rs],
                "busy_s": [round(r["server"]["busy_seconds"], 2) for r in rs],
                "max_admitted": [r["server"]["max_admitted"] for r in rs],
                "client_requests": [r["summary"].get("requests") for r in rs],
                "client_rate_limited": [r["summary"].get("rate_limited") for r in rs],
                "level_end": [r["summary"].get("concurrency") for r in rs],
                "level_min": [r["summary"].get("concurrency_min") for r in rs],
                "loadavg": [round(r["loadavg_1m_before"], 2) for r in rs],
            }
        a = runs["adaptive"][(len(runs["adaptive"]) - 1) // 2]
        row = Row.from_client("limited", n, a, limit_s=ideal)
        row.detail = {"modes": out, "runs": runs, "limit_s": ideal}
        ad, fx = out["adaptive"], out["fixed"]
        row.figure = (
            f"adaptive: ok {min(ad['ok'])}/{n}, 429 {max(ad['share_429']):.1%} of requests (worst), "
            f"wall {statistics.median(ad['wall_s']):.2f} s; fixed: ok {min(fx['ok'])}-{max(fx['ok'])}, "
            f"failed {min(fx['failed'])}-{max(fx['failed'])}, 429 {statistics.median(fx['share_429']):.1%}, "
            f"wall {statistics.median(fx['wall_s']):.2f} s"
        )
        if "baseline" in out:
            bl = out["baseline"]
            row.figure += (
                f"; baseline tree: ok {min(bl['ok'])}/{n}, 429 {max(bl['share_429']):.1%} (worst), "
                f"wall {statistics.median(bl['wall_s']):.2f} s"
            )
        row.target = f"adaptive: all ok, <= 10 % 429, wall <= 1.3 x {ideal:.0f} s"
        row.met = (
            all(x == n for x in ad["ok"])
            and max(ad["share_429"]) <= 0.10
            and statistics.median(ad["wall_s"]) <= 1.3 * ideal
        )
        return row

    # -- issue 16 item 5: shards share the API's limit ------------------------------------------------
    def shards_limited(self) -> Row:
        """4 shard processes (one folder each, max_concurrency 4 as in the sharded DAG) at once against
        a server that admits 3 requests at once (--latency-ms 500 --retry-after 1). With
        --baseline-tree, the other checkout's clients run the same, interleaved."""
        shards, k, limit, per = 4, 4, 3, 25 if self.quick else 100
        n = shards * per
        base = self.work / "shards-limited-audio"
        if not base.exists():
            for i in range(shards):
                inputs.make_files(base / f"shard-{i}", per, SMALL, seed=60 + i)
        ideal = math.ceil(n / limit) * 0.5
        trees = [("ours", ROOT)]
        if self.args.baseline_tree:
            trees.append(("baseline", Path(self.args.baseline_tree)))
        runs: dict[str, list[dict[str, Any]]] = {tag: [] for tag, _ in trees}
        for i in range(self.args.limited_repeat):
            for tag, root in trees:
                server = self.server(500, max_in_flight=limit, retry_after=1)
                results: list[dict[str, Any] | BaseException] = [{}] * shards
                t0 = time.perf_counter()

                def one(j: int, root: Path = root, tag: str = tag, i: int = i, server=server, results=results) -> None:
                    spec = {
                        "scenario": "shards_limited",
                        "source": str(base / f"shard-{j}"),
                        "destination": str(self.work / f"ds-shards-limited-{tag}-{i}" / f"shard-{j}"),
                        "max_concurrency": k,
                        "initial_concurrency": 1,  # as the operator starts a shard (older trees ignore it)
                    }
                    try:
                        results[j] = self.client(spec, server, allow_failed=True, root=root)
                    except BaseException as exc:  # noqa: BLE001 - reported below
                        results[j] = exc

                threads = [threading.Thread(target=one, args=(j,)) for j in range(shards)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                wall = time.perf_counter() - t0
                errors = [r for r in results if isinstance(r, BaseException)]
                if errors:
                    raise RuntimeError(f"shards_limited: a shard failed: {errors[0]}")
                st = server.stats()
                done = [r for r in results if isinstance(r, dict)]
                rejected = st["by_status"].get("429", 0)
                runs[tag].append(
                    {
                        "wall_s": wall,
                        "shard_walls_s": [round(r["wall_s"], 2) for r in done],
                        "requests": st["requests_total"],
                        "429": rejected,
                        "share_429": rejected / st["requests_total"],
                        "ok": st["transcriptions_ok"],
                        "failed": sum(r["summary"]["failed"] for r in done),
                        "max_admitted": st["max_admitted"],
                        "levels_end": [r["summary"].get("concurrency") for r in done],
                        "levels_min": [r["summary"].get("concurrency_min") for r in done],
                        "loadavg": round(done[0]["loadavg_1m_before"], 2),
                    }
                )
        out = {
            tag: {
                "share_429": [round(r["share_429"], 4) for r in rs],
                "ok": [r["ok"] for r in rs],
                "failed": [r["failed"] for r in rs],
                "wall_s": [round(r["wall_s"], 2) for r in rs],
                "wall_over_ideal": [round(r["wall_s"] / ideal, 3) for r in rs],
            }
            for tag, rs in runs.items()
        }
        ours = runs["ours"]
        med = sorted(ours, key=lambda r: r["wall_s"])[(len(ours) - 1) // 2]
        row = Row("shards_limited", n, med["wall_s"], n / med["wall_s"], limit_s=ideal, requests=med["requests"])
        row.loadavg = med["loadavg"]
        row.detail = {"modes": out, "runs": runs, "limit_s": ideal, "shards": shards, "max_concurrency": k}
        o = out["ours"]
        row.figure = (
            f"ours: ok {min(o['ok'])}/{n}, 429 {max(o['share_429']):.1%} of requests (worst), "
            f"wall {statistics.median(o['wall_s']):.1f} s = {statistics.median(o['wall_over_ideal']):.2f} x ideal"
        )
        if "baseline" in out:
            b = out["baseline"]
            row.figure += (
                f"; baseline: ok {min(b['ok'])}-{max(b['ok'])}/{n}, 429 {statistics.median(b['share_429']):.1%}, "
                f"wall {statistics.median(b['wall_s']):.1f} s"
            )
        row.target = "every file ok, <= 10 % 429 (worst run)"
        row.met = all(x == n for x in o["ok"]) and max(o["share_429"]) <= 0.10
        return row

    # -- issue 16 items 2 and 4: listing at scale, what a shard pays -----------------------------------
    def listing(self) -> Row:
        """100,000 objects on moto (put into its backend directly), each mode in a fresh process:
        the old ``fs.find``, ``list_audio`` (one task), one of 16 shards by hash, the manifest's
        writing (one listing for all 16) and one shard's read of it."""
        n, shards = (10_000 if self.quick else 100_000), 16
        port = free_port()
        moto = subprocess.Popen(
            [sys.executable, "-m", "bench.moto_populated", str(port), str(n)],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert moto.stdout is not None
            if moto.stdout.readline().strip() != "ready":
                raise RuntimeError("moto did not start")
            endpoint = f"http://127.0.0.1:{port}"
            manifest = "s3://bench/transcripts/_linkai/manifests/bench.manifest"
            res: dict[str, dict[str, Any]] = {}
            for mode in ("find", "list_audio", "hash_shard", "manifest_write", "manifest_read"):
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.listing_client",
                        mode,
                        endpoint,
                        "bench/calls",
                        str(shards),
                        manifest,
                    ],
                    cwd=ROOT,
                    env=_env(),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
                res[mode]["loadavg_1m"] = os.getloadavg()[0]
        finally:
            moto.terminate()
            moto.wait(10)
        big = 100_000 if self.quick else 1_000_000  # the manifest writer alone at a million-file night
        out = subprocess.run(
            [sys.executable, "-m", "bench.listing_client", "manifest_synthetic", str(big), "-", str(shards)]
            + [str(self.work / "synthetic.manifest")],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        res["manifest_synthetic"] = json.loads(out.stdout.strip().splitlines()[-1])
        la = res["list_audio"]
        per_file = la["rss_growth_mb"] * 2**20 / n
        slices = la["hash_slices"]
        mean = n / shards
        spread = max(abs(c - mean) / mean for c in slices)
        row = Row("listing", n, la["seconds"], n / la["seconds"], rss_growth_mb=la["rss_growth_mb"])
        row.detail = {"modes": res, "bytes_per_file": per_file, "hash_spread": spread}
        w, r, h = res["manifest_write"], res["manifest_read"], res["hash_shard"]
        row.figure = (
            f"list_audio {per_file:.0f} B/file (find: {res['find']['rss_growth_mb'] * 2**20 / n:.0f}), "
            f"{la['calls'].get('ListObjectsV2', 0)} LIST, cpu {la['cpu_s']:.1f} s; per shard by hash: "
            f"{h['calls'].get('ListObjectsV2', 0)} LIST, {h['seconds']:.1f} s; manifest: write {w['seconds']:.1f} s "
            f"({w['bytes'] / 1e6:.1f} MB), a shard's read {r['seconds'] * 1000:.0f} ms, "
            f"{r['calls'].get('GetObject', 0)} GET, 0 LIST; hash slices within {spread:.1%}; manifest writer "
            f"at {big:,} entries: +{res['manifest_synthetic']['rss_growth_mb']:.0f} MB, "
            f"{res['manifest_synthetic']['seconds']:.1f} s, {res['manifest_synthetic']['bytes'] / 1e6:.1f} MB"
        )
        row.target = "<= ~1 KB per listed file; hash slices within +-10 %"
        row.met = per_file <= 1100 and spread <= 0.10
        return row

    def sharded(self) -> Row:
        """The example sharded DAG through dag.test() (bench/sharded_dag.py, its own Airflow home):
        20,000 files, 16 shards, digest engine. XCom bytes from the metadata DB; requests from the server."""
        n, shards = (2_000 if self.quick else 20_000), 16
        folder = self.work / "sharded-audio"
        if not folder.exists():
            inputs.make_files(folder, n, 2_000, seed=16)
        server = self.server(0)
        out = subprocess.run(
            [sys.executable, "-m", "bench.sharded_dag", str(folder), str(self.work / "sharded-home"), str(shards)],
            cwd=ROOT,
            env=_env(
                {
                    "AIRFLOW_CONN_LINKAI_DEFAULT": json.dumps(
                        {"conn_type": "linkai", "host": server.url, "password": server.api_key}
                    )
                }
            ),
            capture_output=True,
            text=True,
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith('{"bench"')]
        if not lines:
            raise RuntimeError(f"sharded DAG bench failed ({out.returncode}):\n{out.stderr[-3000:]}")
        res = json.loads(lines[-1])
        stats = server.stats()
        res["server"] = {k: stats.get(k) for k in STATS}
        row = Row("sharded", n, res["wall_s"], n / res["wall_s"], requests=stats["requests_total"])
        row.loadavg = res.get("loadavg_1m_before")
        row.detail = res
        row.figure = (
            f"XCom {res['xcom_bytes']:,} bytes ({res['xcom_rows']} rows), {stats['requests_total']:,} requests, "
            f"list_shards {res['task_s'].get('list_shards', 0):.1f} s, manifest {res['manifest_bytes']:,} bytes, "
            f"state {res['state']}"
        )
        row.target = "XCom <= 16 KB, one request per file, run succeeds"
        row.met = res["xcom_bytes"] <= 16 * 1024 and stats["requests_total"] == n and res["state"] == "success"
        return row

    # -- issue 10: long recordings --------------------------------------------------------------------
    def _recordings(self) -> dict[str, Path]:
        """A 40-minute WAV and a 60-minute MP3 of espeak-ng sentences with pauses (bench/split_cpu.py's
        recipe), and a 30-second WAV, each alone in its folder. Built once (about a minute) into
        ``<tmp>/linkai-bench-recordings-*`` and kept there for later runs (delete it to rebuild)."""
        base = Path(self.args.tmp or tempfile.gettempdir())
        folder = base / ("linkai-bench-recordings-quick" if self.quick else "linkai-bench-recordings-v1")
        if not folder.exists():
            from bench.split_cpu import build_inputs

            building = folder.with_name(folder.name + f".building-{os.getpid()}")
            building.mkdir(parents=True)
            minutes = 6.0 if self.quick else 60.0
            built = build_inputs(building, minutes)
            names = {
                "short": built["short (30 s) WAV"],
                "wav40": built[f"{minutes * 2 / 3:g} min WAV"],
                "mp3_60": built[f"{minutes:g} min MP3"],
            }
            for name, path in names.items():
                (building / name).mkdir()
                path.rename(building / name / path.name)
            for leftover in building.glob("*.*"):
                leftover.unlink()
            building.rename(folder)
        return {name: next((folder / name).iterdir()) for name in ("short", "wav40", "mp3_60")}

    def long(self) -> Row:
        """One 40-minute WAV, server latency proportional to audio: sent whole vs split at
        max_chunk_seconds 600/300/120 (pieces in parallel). Whole runs first and last."""
        rec = self._recordings()["wav40"]
        per_s = self.args.audio_latency
        size = rec.stat().st_size
        # the default piece format (Ogg Opus) and FLAC, ten times cheaper to encode (bench/split_cpu.py)
        cases = [
            ("whole", None, None),
            ("600", 600.0, None),
            ("300", 300.0, None),
            ("120", 120.0, None),
            ("600 flac", 600.0, "flac"),
            ("300 flac", 300.0, "flac"),
            ("whole", None, None),
        ]
        results: dict[str, list[dict[str, Any]]] = {}
        for i, (name, chunk, fmt) in enumerate(cases):
            server = self.server(latency_ms_per_audio_second=per_s, max_upload_bytes="1GiB")
            spec: dict[str, Any] = {
                "scenario": "long",
                "source": str(rec.parent),
                "destination": str(self.work / f"ds-long-{name.replace(' ', '-')}-{i}"),
                "max_concurrency": 32,
            }
            if chunk is None:
                spec.update(max_upload_bytes=size + 2**20, max_chunk_seconds=1e9)
            else:
                spec.update(max_chunk_seconds=chunk)
            if fmt is not None:
                spec["piece_format"] = fmt
            res = self.client(spec, server)
            res["pieces"] = res["server"]["requests_total"]
            results.setdefault(name, []).append(res)
        whole = statistics.median(r["wall_s"] for r in results["whole"])
        table_ = {
            name: {
                "wall_s": [round(r["wall_s"], 2) for r in rs],
                "requests": rs[0]["server"]["requests_total"],
                "speedup_vs_whole": round(whole / statistics.median(r["wall_s"] for r in rs), 2),
                "client_cpu_s": [round(r["cpu_s"], 2) for r in rs],
                "audio_latency_s": rs[0]["server"]["audio_latency_seconds"],
                "busy_s": [round(r["server"]["busy_seconds"], 2) for r in rs],
                "loadavg": [round(r["loadavg_1m_before"], 2) for r in rs],
            }
            for name, rs in results.items()
        }
        res600 = results["600"][0]
        row = Row.from_client("long", 1, res600)
        row.detail = {"cases": table_, "latency_ms_per_audio_second": per_s, "file_bytes": size, "runs": results}
        row.figure = f"whole {whole:.1f} s; " + ", ".join(
            f"{name}: {table_[name]['speedup_vs_whole']:.2f}x" for name in table_ if name != "whole"
        )
        row.target = ">= 2x faster than whole (default piece format)"
        row.met = all(table_[name]["speedup_vs_whole"] >= 2 for name in ("600", "300", "120"))
        return row

    def long_memory(self) -> Row:
        """Peak RSS (VmHWM) of a run over the 40-min WAV and over the 60-min MP3 against a run over
        one 30-s file, each in a fresh process, default options (25 MiB, 600 s pieces)."""
        recs = self._recordings()
        res: dict[str, dict[str, Any]] = {}
        for name in ("short", "wav40", "mp3_60", "short"):
            server = self.server()
            r = self.client(
                {
                    "scenario": "long_memory",
                    "source": str(recs[name].parent),
                    "destination": str(self.work / f"ds-longmem-{name}-{len(res)}"),
                    "max_concurrency": 8,
                },
                server,
            )
            key = name if name not in res else name + "_again"
            res[key] = r
        base = min(res["short"]["hwm_mb"], res["short_again"]["hwm_mb"])
        over = {name: res[name]["hwm_mb"] - base for name in ("wav40", "mp3_60")}
        row = Row.from_client("long_memory", 2, res["wav40"])
        row.detail = {
            "hwm_mb": {name: round(r["hwm_mb"], 1) for name, r in res.items()},
            "over_short_mb": {k: round(v, 1) for k, v in over.items()},
            "requests": {name: r["server"]["requests_total"] for name, r in res.items()},
            "runs": res,
        }
        row.figure = (
            f"short run peak {base:.0f} MB; 40-min WAV +{over['wav40']:.0f} MB, 60-min MP3 +{over['mp3_60']:.0f} MB"
        )
        row.target = "<= 300 MB above the short run"
        row.met = max(over.values()) <= 300
        return row

    def ui(self) -> Row:
        """The Transcripts page over HTTP to a real api-server: bench/ui.py (its docstring says what)."""
        from bench import ui

        rows = 50_000 if self.quick else 1_000_000
        res = ui.run(self.work / "ui", rows=rows, repeat=5)
        print(ui.report(res), file=sys.stderr)
        search = res["search_median_worst_s"]
        row = Row("ui", rows, search, rows / search, limit_s=ui.TARGET_SEARCH_S, detail=res)
        row.loadavg = res["loadavg_1m_before"]
        row.figure = (
            f"search median {search:.2f} s (worst phrase; max {res['search_max_s']:.2f} s), days "
            f"{res['days_median_s']:.2f} s, page {res['page_bytes_total'] / 1024:.0f} KiB, first request "
            f"{res['first_request_s']:.0f} s, RSS {res['rss_warm_mb']:.0f} MiB"
        )
        row.target = "search <= 1 s over 1M rows, days <= 1 s, page <= 300 KB"
        row.met = all(res["met"].values())
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
        "load 1m",
        "figure",
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
                    _f(r.loadavg, ".2f"),
                    r.figure or "-",
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
    p.add_argument(
        "--profile-gil",
        action="store_true",
        help="record each client with py-spy --gil (collapsed stacks; see bench/gil_profile.py)",
    )
    p.add_argument("--no-seed-loop", action="store_true", help="skip the seed's sequential loop (saves ~200 s)")
    p.add_argument(
        "--baseline-tree",
        default=None,
        help="latency, efficiency, limited, shards_limited: also run the bench client of this checkout "
        "(e.g. main: `git worktree add --detach /tmp/main main`), interleaved, and report both",
    )
    p.add_argument("--limited-repeat", type=int, default=2, help="runs of each mode in the limited scenario")
    p.add_argument(
        "--audio-latency", type=float, default=25.0, help="long: server ms of latency per second of audio (default 25)"
    )
    p.add_argument("--cpu-concurrency", type=int, default=16, help="max_concurrency of the cpu scenario")
    p.add_argument("--tmp", default=None, help="folder for the inputs (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the generated inputs")
    args = p.parse_args(argv)
    chosen = args.scenario or list(DEFAULT_SCENARIOS)
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
