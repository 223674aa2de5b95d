"""Submission throughput and latency of `slurmlink api` against raw `sbatch`, measured in the same run.

Usage (as root, from the repository): .venv/bin/python bench/submit_throughput.py [--pods 500] [--concurrency 8]

Raw baseline: for each pod the BatchJob that `build_job` makes, its workdir made like the cli backend makes
it (under job_root, owned by the user, 0700, a copy of the script) and then `runuser -u USER -- sbatch
<the backend's own argv>` with the script on stdin. Raw jobs are named `rawsbatch-<uid>` (as long as
`slurmlink-<uid>`) so that the API never adopts them. The API runs only during its own phases, so the
baseline pays nothing for its background polls. See bench/README.md. Not a test: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import platform
import pwd
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.services: the benches' own helpers

import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.services import (  # noqa: E402
    BenchError,
    Service,
    add_cluster_options,
    api_config,
    cluster_of,
    free_port,
    wait_until,
)
from slurmlink.core.states import FINISHED_STATES  # noqa: E402
from slurmlink.devcluster import DevCluster  # noqa: E402
from slurmlink.slurm.commands import sbatch  # noqa: E402
from slurmlink.translate.job import BatchJob  # noqa: E402
from slurmlink.translate.script import build_job  # noqa: E402
from slurmlink.translate.site import SiteConfig  # noqa: E402
from slurmlink.wire.names import FLAGS_ANNOTATION  # noqa: E402

NAMESPACE = "slbench"  # bench jobs have the comment "slbench/<pod name>": how they are told from others
RAW_PREFIX = "rawsbatch-"
ACTIVE_STATES = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED"
STARTED_STATES = {"RUNNING", "COMPLETING", "COMPLETED"}
PATH = "/usr/local/bin:/usr/bin:/bin"  # the cli backend's defaults
RUNUSER = "/usr/sbin/runuser"
TICK = 0.02  # latency polling period, both ways
# slurmctld starts jobs on a once-a-second background pass: submissions one after another lock onto its phase
# (a steady 0.4 s or 0.9 s, depending on the loop's own period), so each waits a random 0-1 s first.
JITTER_S = 1.0
DEFERRED_FLAGS = "--begin=now+1day"
T = TypeVar("T")


def make_pod(deferred: bool = False) -> dict[str, Any]:
    """`deferred`: the job is to begin a day later (`--begin`, an sbatch option pods may ask for), so it stays
    pending while the bench runs; raw and the API submit it with the same argv."""
    uid = str(uuid.uuid4())
    flags = {"annotations": {FLAGS_ANNOTATION: DEFERRED_FLAGS}} if deferred else {}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"b-{uid[:8]}", "namespace": NAMESPACE, "uid": uid, **flags},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}


class Slurm:
    """SLURM commands against the dev cluster, in the clean environment the cli backend gives them."""

    def __init__(self, cluster: DevCluster, user: str) -> None:
        self.cluster, self.user, self.account = cluster, user, pwd.getpwnam(user)
        self.env = {"PATH": PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", **cluster.env}
        self.sbatch = shutil.which("sbatch", path=PATH) or "sbatch"

    def run(self, argv: list[str], stdin: str | None = None, timeout: float = 60) -> str:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=self.env, timeout=timeout)
        if proc.returncode != 0:
            raise BenchError(f"`{' '.join(argv[:4])} ...` failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def raw_job(self, pod: dict[str, Any]) -> BatchJob:
        workdir = f"{self.cluster.job_root}/{NAMESPACE}-{pod['metadata']['uid']}"
        job = build_job(pod, workdir=workdir, site=SiteConfig(runtime="host"))
        return dataclasses.replace(job, name=RAW_PREFIX + pod["metadata"]["uid"])

    def submit(self, job: BatchJob) -> str:
        """What the cli backend does for one pod, minus the API: the workdir, then sbatch as the user."""
        os.mkdir(job.workdir, 0o700)
        os.chown(job.workdir, self.account.pw_uid, self.account.pw_gid)
        os.chmod(job.workdir, 0o700)
        fd = os.open(f"{job.workdir}/job.sh", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchown(fd, self.account.pw_uid, self.account.pw_gid)
            fh.write(job.script)
        out = self.run([RUNUSER, "-u", self.user, "--", *sbatch.argv(job, self.sbatch)], stdin=job.script)
        return out.strip().split(";")[0]

    def state(self, job_id: str) -> str:
        # `-t all`: without it, `squeue -j` hides a job that already COMPLETED.
        return self.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"]).strip()

    def held(self) -> int:
        """Jobs slurmctld holds, finished ones included: what every API poll's squeue reads."""
        return len(self.run(["squeue", "-h", "-a", "-t", "all", "-o", "%i"]).split())

    def active(self, bench_only: bool) -> list[str]:
        out = self.run(["squeue", "-h", "-a", "-t", ACTIVE_STATES, "-o", "%i|%u|%k"])
        rows = [line.split("|", 2) for line in out.splitlines() if line]
        return [r[0] for r in rows if not bench_only or (r[1] == self.user and r[2].startswith(NAMESPACE + "/"))]

    def drain(self, timeout: float = 120) -> None:
        """Cancel the bench's jobs still in the queue (scancel as root) and wait until none is active."""
        ids = self.active(bench_only=True)
        for i in range(0, len(ids), 200):
            subprocess.run(["scancel", *ids[i:i + 200]], env=self.env, capture_output=True, timeout=60)
        wait_until(lambda: not self.active(bench_only=True), timeout, "the bench's jobs to leave the queue", 0.2)


class Api(Service):
    """One `slurmlink api` process on loopback (a context manager: stopped by its PID on exit)."""

    def __init__(self, cluster: DevCluster, user: str, poll_interval: float | None, tmp: Path) -> None:
        """`poll_interval` None: the shipped default."""
        config = api_config(cluster, user, poll_interval or 0.0, free_port())
        if poll_interval is None:
            del config["poll_interval"]
        super().__init__("api", config, tmp, port=config["listen"]["port"])

    def counters(self) -> dict[str, float]:
        """SLURM commands the API ran and its submit results, from /metrics: {"sbatch": 500.0, ...}."""
        self.check_alive()
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(httpx.get(f"{self.url}/metrics", timeout=10).text):
            for sample in family.samples:
                if sample.name == "slurmlink_slurm_commands_total":
                    found[sample.labels["command"]] = sample.value
                elif sample.name == "slurmlink_api_submits_total":
                    found[f"submits_{sample.labels['result']}"] = sample.value
        return found

    def create(self, client: httpx.Client, pod: dict[str, Any]) -> str:
        r = client.post("/create", content=create_body(pod))
        if r.status_code != 200 or not r.json().get("PodJID"):
            self.check_alive()
            raise BenchError(f"/create failed: {r.status_code} {r.text.strip()[:300]}")
        return str(r.json()["PodJID"])


def create_body(pod: dict[str, Any]) -> str:
    return json.dumps({"pod": pod, "configmaps": [], "secrets": [], "projectedvolumesmaps": [], "jobscriptURL": ""})


async def api_throughput(api: Api, pods: list[dict[str, Any]], concurrency: int,
                         window: Callable[[], None], client: str = "httpx") -> tuple[float, list[str]]:
    """`window()` is called right before the first submission and right after the last: the client's set-up
    (about 15 ms of CPU: httpx loads the CA bundle even for http://) is outside it, as in a long-running vk.
    `client` "lean": LeanClient instead of httpx (see bench/README.md)."""
    if client == "lean":
        return await lean_throughput(api, pods, concurrency, window)
    todo, errors = list(pods), []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api.url, timeout=120, limits=limits) as http:
        async def worker() -> None:
            while todo:
                try:
                    r = await http.post("/create", content=create_body(todo.pop()))
                except httpx.HTTPError as exc:
                    api.check_alive()
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200 or not r.json().get("PodJID"):
                    errors.append(f"{r.status_code}: {r.text.strip()[:200]}")
        window()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        window()
        return seconds, errors


class LeanClient:
    """One kept-alive HTTP/1.1 connection that POSTs JSON and reads answers with a Content-Length (what
    uvicorn sends for these): the least a client can do per request, to see the API's share apart from
    httpx's. A vk runs in Kubernetes, not on the SLURM host, so its client does not share the API's cores."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host.encode()

    @classmethod
    async def connect(cls, url: str) -> LeanClient:
        parsed = httpx.URL(url)
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        return cls(reader, writer, f"{parsed.host}:{parsed.port}")

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host, len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        fields = dict(line.split(b":", 1) for line in lines[1:] if b":" in line)
        length = int(next(v for k, v in fields.items() if k.strip().lower() == b"content-length"))
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def lean_throughput(api: Api, pods: list[dict[str, Any]], concurrency: int,
                          window: Callable[[], None]) -> tuple[float, list[str]]:
    todo, errors = list(pods), []
    clients = [await LeanClient.connect(api.url) for _ in range(concurrency)]

    async def worker(client: LeanClient) -> None:
        while todo:
            try:
                status, body = await client.post("/create", create_body(todo.pop()).encode())
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                api.check_alive()
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            if status != 200 or not json.loads(body).get("PodJID"):
                errors.append(f"{status}: {body.decode(errors='replace').strip()[:200]}")
    try:
        window()
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        seconds = time.perf_counter() - start
        window()
    finally:
        for client in clients:
            client.close()
    return seconds, errors


def raw_throughput(slurm: Slurm, jobs: list[BatchJob], concurrency: int,
                   window: Callable[[], None]) -> tuple[float, list[str]]:
    def one(job: BatchJob) -> str:
        try:
            slurm.submit(job)
            return ""
        except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
    with ThreadPoolExecutor(concurrency) as pool:
        window()
        start = time.perf_counter()
        errors = [e for e in pool.map(one, jobs) if e]
        seconds = time.perf_counter() - start
        window()
        return seconds, errors


def latency_samples(slurm: Slurm, n: int, submit: Callable[[dict[str, Any]], str],
                    started: Callable[[dict[str, Any], str], bool]) -> list[float]:
    """n pods one after another: seconds from submission until `started`; each job ends before the next."""
    samples, rng = [], random.Random(1)  # noqa: S311 - the same pauses in every run
    for _ in range(n):
        pod = make_pod()
        time.sleep(rng.uniform(0, JITTER_S))
        start = time.perf_counter()
        job_id = submit(pod)
        wait_until(functools.partial(started, pod, job_id), 60, f"job {job_id} to be seen running", TICK)
        samples.append(time.perf_counter() - start)
        wait_until(lambda: slurm.state(job_id) in FINISHED_STATES, 60, f"job {job_id} to end")  # noqa: B023
    return samples


def api_started(client: httpx.Client, pod: dict[str, Any], job_id: str) -> bool:
    response = client.request("GET", "/status", content=json.dumps([pod]))
    response.raise_for_status()
    [status] = response.json()
    return any("running" in c["state"] or "terminated" in c["state"] for c in status["containers"])


def percentiles(samples: list[float]) -> dict[str, Any]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(q[49] * 1000, 1), "p95_ms": round(q[94] * 1000, 1), "n": len(samples),
            "samples_ms": [round(x * 1000, 1) for x in samples]}


def cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz  # idle and iowait are not busy


def process_cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system, all threads) one process used so far, from /proc/<pid>/stat; with
    `children`, also those of its children that it has waited for (runuser and the sbatch under it, squeue)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return used / os.sysconf("SC_CLK_TCK")


def own_cpu_parts(cluster: DevCluster, api: Service | None) -> dict[str, float]:
    """CPU seconds used so far by what a phase runs, and nothing else on the machine, by part: this process
    ("bench") and its waited-for children ("bench children": raw's runuser and sbatch), the API and its commands,
    and the cluster's daemons with their children (slurmctld; slurmd and the job steps it waits for; munged,
    slurmrestd). The machine is shared: unlike /proc/stat, this does not count other work that happens to run."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    parts = {"bench": me.ru_utime + me.ru_stime, "bench children": kids.ru_utime + kids.ru_stime}
    pids = {name: pid for name, pid in cluster.status().items() if pid is not None}
    if api is not None:
        pids["api"] = api.proc.pid
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            parts[name] = process_cpu_seconds(pid)
            parts[f"{name} children"] = process_cpu_seconds(pid, children=True) - parts[name]
    return parts


def marker(marks: list[tuple[tuple[float, float], dict[str, float]]], cluster: DevCluster,
           api: Service | None) -> Callable[[], None]:
    """What a phase calls at the start and at the end of its CPU window: the machine's and its own CPU so far."""
    return lambda: marks.append((cpu_seconds(), own_cpu_parts(cluster, api)))


def counted(api: Api, work: Callable[[], T]) -> tuple[T, dict[str, float]]:
    """`work()`, and how much the API's /metrics counters grew meanwhile."""
    before = api.counters()
    result = work()
    return result, {k: v - before.get(k, 0.0) for k, v in api.counters().items()}


def preflight(slurm: Slurm, planned: int) -> dict[str, Any]:
    config = slurm.run(["scontrol", "show", "config"]).splitlines()
    max_jobs = int(next(line.split("=")[1] for line in config if line.startswith("MaxJobCount")))
    held = slurm.held()
    if held + planned > max_jobs:
        raise BenchError(f"slurmctld holds {held} jobs (finished ones stay for MinJobAge, a day on the dev cluster, "
                         f"restarts or not); {planned} more would pass MaxJobCount={max_jobs}: wait, or fewer --pods")
    return {"jobs_held_by_slurmctld": held, "max_job_count": max_jobs}


def throughput(cluster: DevCluster, slurm: Slurm, order: list[str], n: int, concurrency: int,
               poll_interval: float | None, tmp: Path, client: str = "httpx", run_jobs: bool = False) -> dict[str, Any]:
    phases: list[dict[str, Any]] = []
    for i, kind in enumerate(order, 1):
        pods = [make_pod(deferred=not run_jobs) for _ in range(n)]
        extra: dict[str, Any] = {"jobs_held_at_start": slurm.held(), "loadavg_at_start": os.getloadavg()}
        marks: list[tuple[tuple[float, float], dict[str, float]]] = []  # (machine, own parts) at start and end
        if kind == "raw":
            t0 = time.perf_counter()
            jobs = [slurm.raw_job(p) for p in pods]  # translation is not timed for raw: reported per pod
            extra["build_job_ms_per_pod"] = round((time.perf_counter() - t0) * 1000 / n, 3)
            seconds, errors = raw_throughput(slurm, jobs, concurrency, marker(marks, cluster, None))
        else:
            with Api(cluster, slurm.user, poll_interval, tmp) as api:  # its start-up (adopting jobs) is not counted
                # The /metrics reads (and their httpx clients) are outside the CPU window, like the client's set-up.
                (seconds, errors), extra["api_counters"] = counted(api, lambda: asyncio.run(api_throughput(
                    api, pods, concurrency, marker(marks, cluster, api), client)))  # noqa: B023
                extra["api_process_cpu_ms_per_job"] = round(1000 * (marks[1][1]["api"] - marks[0][1]["api"]) / n, 2)
        (cpu0, parts0), (cpu1, parts1) = marks
        extra["own_cpu_ms_per_job_by_part"] = {name: round(1000 * (parts1[name] - parts0.get(name, 0.0)) / n, 2)
                                               for name in parts1}
        own0, own1 = sum(parts0.values()), sum(parts1.values())
        busy, total = (end - start for end, start in zip(cpu1, cpu0, strict=True))
        ok = n - len(errors)
        # The jobs themselves (slurmd, and the steps and scripts it waits for) run in both modes alike, but only
        # those that happen to run before the phase ends are in its count: a slower phase holds more of them.
        jobs_ran = sum(parts1[name] - parts0.get(name, 0.0) for name in parts1 if name.startswith("slurmd"))
        extra |= {"machine_cpu_busy_pct": round(100 * busy / total, 1), "cpu_ms_per_job": round(1000 * busy / n, 1),
                  "own_cpu_ms_per_job": round(1000 * (own1 - own0) / n, 2),
                  "own_cpu_ms_per_job_without_slurmd": round(1000 * (own1 - own0 - jobs_ran) / n, 2)}
        if not ok:
            raise BenchError(f"every submission of phase {i} ({kind}) failed, e.g. {errors[0]}")
        phases.append({"phase": i, "kind": kind, "jobs": ok, "errors": len(errors), "first_errors": errors[:3],
                       "seconds": round(seconds, 3), "jobs_per_s": round(ok / seconds, 1), **extra})
        print(f"  phase {i} {kind:3}: {ok} jobs in {seconds:.2f}s = {ok / seconds:.1f} jobs/s, "
              f"{extra['cpu_ms_per_job']} CPU ms/job on the machine, {extra['own_cpu_ms_per_job']} its own"
              + (f" ({extra['api_process_cpu_ms_per_job']} in the API)" if kind == "api" else "")
              + f", load {extra['loadavg_at_start'][0]:.2f} at start\n    its own by part (ms/job): "
              + ", ".join(f"{k} {v}" for k, v in extra["own_cpu_ms_per_job_by_part"].items() if v >= 0.05)
              + (f", {len(errors)} errors, e.g. {errors[0]}" if errors else ""), flush=True)
        slurm.drain()
    result: dict[str, Any] = {"phases": phases}
    for kind in sorted(set(order)):
        mine = [p for p in phases if p["kind"] == kind]
        result[f"{kind}_jobs_per_s"] = round(sum(p["jobs"] for p in mine) / sum(p["seconds"] for p in mine), 1)
        for key in ("own_cpu_ms_per_job", "own_cpu_ms_per_job_without_slurmd"):
            result[f"{kind}_{key}"] = round(sum(p[key] * p["jobs"] for p in mine) / sum(p["jobs"] for p in mine), 2)
    if {"raw", "api"} <= set(order):
        result["ratio_api_over_raw"] = round(result["api_jobs_per_s"] / result["raw_jobs_per_s"], 3)
        # Throughput on a saturated machine is the inverse of the CPU per job: this ratio is that of the CPU the
        # bench's own processes used, which other work on a shared machine moves much less than jobs/s.
        result["ratio_raw_over_api_own_cpu"] = round(result["raw_own_cpu_ms_per_job"]
                                                     / result["api_own_cpu_ms_per_job"], 3)
        result["ratio_raw_over_api_own_cpu_without_slurmd"] = round(
            result["raw_own_cpu_ms_per_job_without_slurmd"] / result["api_own_cpu_ms_per_job_without_slurmd"], 3)
    return result


def latency(cluster: DevCluster, slurm: Slurm, n: int, intervals: list[float], tmp: Path) -> dict[str, Any]:
    raw = percentiles(latency_samples(slurm, n, lambda pod: slurm.submit(slurm.raw_job(pod)),
                                      lambda pod, job_id: slurm.state(job_id) in STARTED_STATES))
    result: dict[str, Any] = {"raw": raw}
    for interval in intervals:
        with Api(cluster, slurm.user, interval, tmp) as api, httpx.Client(base_url=api.url, timeout=60) as client:
            samples, counters = counted(api, lambda: latency_samples(  # noqa: B023
                slurm, n, functools.partial(api.create, client), functools.partial(api_started, client)))
        result[f"api_poll_{interval:g}s"] = {**percentiles(samples), "api_counters": counters}
    for stats in list(result.values())[1:]:
        stats |= {f"ratio_{p}": round(stats[f"{p}_ms"] / raw[f"{p}_ms"], 2) for p in ("p50", "p95")}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, default=500, help="pods per throughput phase")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-pods", type=int, default=40)
    parser.add_argument("--order", default="raw,api,api,raw", help="throughput phases, in order")
    parser.add_argument("--api-poll-interval", type=float, default=0.5,
                        help="the API's poll_interval in the throughput phases; 0: the shipped default")
    parser.add_argument("--latency-poll-intervals", default="0.5,0.2", help="API poll_interval of each latency run")
    parser.add_argument("--client", choices=("httpx", "lean"), default="httpx",
                        help="the api phases' HTTP client: httpx (as the vk), or a minimal one (bench/README.md)")
    parser.add_argument("--run-jobs", action="store_true",
                        help="the throughput phases' jobs run as soon as SLURM starts them (default: they begin a "
                             "day later, see bench/README.md)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "submit_throughput.json")
    add_cluster_options(parser)
    args = parser.parse_args()
    order = args.order.split(",")
    intervals = [float(x) for x in args.latency_poll_intervals.split(",") if x]
    wall = time.perf_counter()
    cluster = cluster_of(args)
    cluster.up()
    slurm = Slurm(cluster, cluster.users[0])
    planned = args.pods * len(order) + args.latency_pods * (1 + len(intervals))
    report: dict[str, Any] = {
        "machine": {"nproc": os.cpu_count(), "slurm": slurm.run(["sbatch", "--version"]).strip(),
                    "python": platform.python_version(), "kernel": platform.release(),
                    "loadavg_at_start": os.getloadavg(), "cluster_cpus": cluster.cpus, **preflight(slurm, planned)},
        "parameters": {"pods": args.pods, "concurrency": args.concurrency, "latency_pods": args.latency_pods,
                       "order": order, "throughput_api_poll_interval": args.api_poll_interval or "default",
                       "latency_poll_intervals": intervals, "client": args.client,
                       "throughput_jobs": "run" if args.run_jobs else f"deferred ({DEFERRED_FLAGS})",
                       "latency_tick_s": TICK, "user": slurm.user}}
    tmp = Path(tempfile.mkdtemp(prefix="slurmlink-bench-"))
    try:
        slurm.drain()
        report["throughput"] = throughput(cluster, slurm, order, args.pods, args.concurrency,
                                          args.api_poll_interval or None, tmp, args.client, args.run_jobs)
        report["foreign_active_jobs_before_latency"] = len(slurm.active(bench_only=False))
        report["latency"] = latency(cluster, slurm, args.latency_pods, intervals, tmp)
    finally:
        slurm.drain()
        for workdir in cluster.job_root.glob(f"{NAMESPACE}-*"):  # the bench's own pod directories only
            shutil.rmtree(workdir, ignore_errors=True)
    report |= {"wall_seconds": round(time.perf_counter() - wall, 1), "api_logs": str(tmp)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nJSON: {args.json}   API logs: {tmp}   (the dev cluster is left up)")


def print_table(report: dict[str, Any]) -> None:
    m, p, t = report["machine"], report["parameters"], report["throughput"]
    print(f"\n{m['slurm']}, {m['nproc']} cores, load {m['loadavg_at_start'][0]:.2f} at start; {p['pods']} pods "
          f"per phase ({','.join(p['order'])}), concurrency {p['concurrency']}, API poll_interval "
          f"{p['throughput_api_poll_interval']}")
    print(f"{'throughput (submissions)':<40}{'jobs/s':>10}")
    rows = [("raw sbatch (runuser)", "raw_jobs_per_s"), ("slurmlink api /create", "api_jobs_per_s"),
            ("ratio api/raw", "ratio_api_over_raw"), ("own CPU ms/job raw", "raw_own_cpu_ms_per_job"),
            ("own CPU ms/job api", "api_own_cpu_ms_per_job"), ("ratio raw/api own CPU", "ratio_raw_over_api_own_cpu"),
            ("  the same without slurmd (the jobs)", "ratio_raw_over_api_own_cpu_without_slurmd")]
    for label, key in rows:
        if key in t:
            print(f"  {label:<38}{t[key]:>10.3g}" if key.startswith("ratio") else f"  {label:<38}{t[key]:>10.1f}")
    print(f"{'latency to running':<40}{'p50 ms':>10}{'p95 ms':>10}{'x raw p50':>11}{'x raw p95':>11}")
    for name, s in report["latency"].items():
        label = "raw sbatch -> squeue" if name == "raw" else f"api /create -> /status (poll {name[9:]})"
        ratios = f"{s['ratio_p50']:>11.2f}{s['ratio_p95']:>11.2f}" if "ratio_p50" in s else ""
        print(f"  {label:<38}{s['p50_ms']:>10.1f}{s['p95_ms']:>10.1f}{ratios}")
    print(f"wall time {report['wall_seconds']:.1f}s")


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        sys.exit(f"bench failed: {exc}")
