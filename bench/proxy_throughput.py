"""Job submission through `slurmlink proxy` against straight to slurmrestd, measured in the same run (issue 4).

Usage (as root, from the repository): .venv/bin/python bench/proxy_throughput.py [--jobs 500] [--clients 8,1]
[--json] [--slurm 24.11] [--state-dir DIR --ports REST,CTLD,SLURMD]

Both ways, `--clients` concurrent keep-alive httpx clients POST the same trivial job (`#!/bin/bash\\ntrue`) as
the same user to `/slurm/v0.0.38/job/submit` (24.11: `v0.0.42`):
- direct: to slurmrestd, with X-SLURM-USER-NAME and an HS256 token of the user minted from the cluster's key;
- proxy: to `slurmlink proxy` (its own process, uvicorn on loopback) with the user's Check-in access token as
  bearer; the Check-in stand-in (standins/checkin.py) is the issuer and a static map names the user.
- nginx (only when --order names it): a plain nginx reverse proxy (Debian's package, one worker, keep-alive
  to slurmrestd, an access log line per request) forwarding the direct mode's request as it is. It decides
  nothing: it is the floor of what an nginx data plane in front of slurmrestd would cost.
The jobs are submitted to begin a day later unless --run-jobs: what is measured is the submission, and starting
jobs (a slurmstepd and a batch script each, hundreds a second) would load the 2 cores at moments that no phase
chooses. The phases alternate (ABBA by default) and every phase starts with none of the bench's jobs left in the queue.
Each `--clients` count gets its own set of phases: 8 clients for throughput, 1 for the latency the proxy adds.
See bench/README.md. Not a test: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.services and the Check-in stand-in (standins/) are not installed

import httpx  # noqa: E402

from bench.services import BenchError, cluster_of, free_port, proxy_config, proxy_service, wait_until  # noqa: E402
from slurmlink.devcluster import DevCluster  # noqa: E402
from slurmlink.devcluster.cluster import REST_VERSIONS_OF, default_cluster  # noqa: E402
from slurmlink.slurm.rest_shapes import submit_body  # noqa: E402
from slurmlink.translate.job import BatchJob  # noqa: E402
from standins.checkin import CheckinStandin  # noqa: E402

API_VERSION = "v0.0.38"  # the dev cluster's newest: Debian 12's slurmrestd (22.05); main() sets it for --slurm
JOB_NAME = "slbench-proxy"  # every job of this bench has this name: how its jobs are told from others
VO = "vo.example.org"  # the stand-in's users are members of it by default
ACTIVE_STATES = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED"
MODES = ("direct", "proxy", "nginx")
NGINX_CONF = """daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log {tmp}/nginx-access.log;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  upstream slurmrestd {{ server {upstream}; keepalive 32; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://slurmrestd; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
"""
DEFAULT_JSON = REPO / "bench" / "results" / "proxy_throughput.json"
T = TypeVar("T")


def job_payload(held: bool) -> bytes:
    """One small submit body, the same for every request both ways; `held`: to begin in a day (not `hold: true`,
    which slurmrestd answers with an error beside the job id)."""
    job = BatchJob(name=JOB_NAME, comment="slbench/proxy", workdir="/tmp", script="#!/bin/bash\ntrue",
                   stdout="/dev/null", cpus_per_task=1, memory_mb=16, time_limit_minutes=1)
    body = submit_body(job, API_VERSION, {"PATH": "/usr/bin:/bin"})
    if held:
        # v0.0.38 parses a time as sbatch --begin does; later versions take a number
        body["job"]["begin_time"] = "now+86400" if API_VERSION == "v0.0.38" else int(time.time()) + 86400
    return json.dumps(body).encode()


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads) so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz  # idle and iowait are not busy


class CpuMeter:
    """CPU seconds that named processes (and the whole machine) spend between start() and stop()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def snapshot(self) -> dict[str, float]:
        busy, total = machine_cpu_seconds()
        return {"machine_busy": busy, "machine_total": total,
                **{name: cpu_seconds_of(pid) for name, pid in self.pids.items()}}

    def spent(self, before: dict[str, float], requests: int) -> dict[str, Any]:
        after = self.snapshot()
        delta = {k: after[k] - before[k] for k in after}
        per_request = {name: round(1000 * delta[name] / requests, 3) for name in self.pids}
        return {"cpu_ms_per_request": per_request,
                "machine_busy_pct": round(100 * delta["machine_busy"] / delta["machine_total"], 1)}


class Slurm:
    """The few SLURM commands the bench needs, run as root against the dev cluster."""

    def __init__(self, cluster: DevCluster, user: str) -> None:
        self.user = user
        self.env = {**os.environ, **cluster.env}

    def run(self, *argv: str) -> str:
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=60)
        if proc.returncode != 0:
            raise BenchError(f"`{' '.join(argv[:4])}` failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def config_value(self, key: str) -> str:
        lines = self.run("scontrol", "show", "config").splitlines()
        return next(line.split("=", 1)[1].strip() for line in lines if line.split("=", 1)[0].strip() == key)

    def held(self) -> int:
        """Jobs slurmctld holds, finished ones included (they count towards MaxJobCount until MinJobAge)."""
        return len(self.run("squeue", "-h", "-a", "-t", "all", "-o", "%i").split())

    def active(self, bench_only: bool) -> int:
        mine = ["-u", self.user, "-n", JOB_NAME] if bench_only else []
        return len(self.run("squeue", "-h", "-a", "-t", ACTIVE_STATES, *mine, "-o", "%i").split())

    def drain(self, timeout: float = 180) -> None:
        """Cancel the bench's jobs (scancel as root) and wait until none of them is in the queue."""
        self.run("scancel", "-u", self.user, "-n", JOB_NAME)
        wait_until(lambda: self.active(bench_only=True) == 0, timeout, "the bench's jobs to leave the queue", 0.2)


def submit_error(response: httpx.Response) -> str:
    """Empty when the job was accepted; otherwise what went wrong, short."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200 and isinstance(body, dict) and body.get("job_id") and not body.get("errors"):
        return ""
    return f"HTTP {response.status_code}: {response.text.strip()[:200]}"


async def submit_all(client: httpx.AsyncClient, tickets: Iterator[int], payload: bytes,
                     latencies: list[float], errors: list[str]) -> None:
    """One client: submit while tickets last, one request at a time, timing each."""
    for _ in tickets:
        start = time.perf_counter()
        try:
            response = await client.post(f"/slurm/{API_VERSION}/job/submit", content=payload)
            error = submit_error(response)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        latencies.append(time.perf_counter() - start)
        if error:
            errors.append(error)


async def timed_submissions(url: str, headers: dict[str, str], payload: bytes, jobs: int, clients: int,
                            meter: CpuMeter) -> tuple[float, list[float], list[str], dict[str, Any]]:
    """`jobs` submissions by `clients` concurrent keep-alive clients: (seconds, latencies, errors, CPU spent)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)  # one connection per client
    pool = [httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits, trust_env=False)
            for _ in range(clients)]
    try:
        ping = f"/slurm/{API_VERSION}/ping/"
        for answer in await asyncio.gather(*(c.get(ping) for c in pool)):  # connect before the clock
            if answer.status_code != 200:
                raise BenchError(f"warm-up ping to {url} answered {answer.status_code}: {answer.text[:200]}")
        tickets = iter(range(jobs))  # shared: each client takes the next ticket
        latencies: list[float] = []
        errors: list[str] = []
        cpu_before, start = meter.snapshot(), time.perf_counter()
        await asyncio.gather(*(submit_all(c, tickets, payload, latencies, errors) for c in pool))
        seconds = time.perf_counter() - start
        return seconds, latencies, errors, meter.spent(cpu_before, jobs)
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))


def percentiles_ms(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(q[49] * 1000, 2), "p95_ms": round(q[94] * 1000, 2)}


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_phases(order: list[str], jobs: int, clients: int, targets: dict[str, tuple[str, dict[str, str]]],
               slurm: Slurm, meter: CpuMeter, held: bool) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
    """Each phase: an empty queue, then its share of `jobs` submitted the phase's way, then cancel and drain."""
    modes = list(dict.fromkeys(order))
    shares = {mode: iter(split(jobs, order.count(mode))) for mode in modes}
    payload = job_payload(held)
    phases: list[dict[str, Any]] = []
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    for number, mode in enumerate(order, 1):
        n = next(shares[mode])
        url, headers = targets[mode]
        at_start = {"jobs_held_at_start": slurm.held(), "active_jobs_at_start": slurm.active(bench_only=False),
                    "loadavg_at_start": round(os.getloadavg()[0], 2)}
        seconds, samples, errors, cpu = asyncio.run(timed_submissions(url, headers, payload, n, clients, meter))
        ok = n - len(errors)
        if not ok:
            raise BenchError(f"every submission of phase {number} ({mode}) failed, e.g. {errors[0]}")
        latencies[mode] += samples
        phases.append({"phase": number, "mode": mode, "jobs": ok, "errors": len(errors), "first_errors": errors[:3],
                       "seconds": round(seconds, 3), "jobs_per_s": round(ok / seconds, 1),
                       **percentiles_ms(samples), **at_start, **cpu})
        print(f"  phase {number} {mode:6}: {ok} jobs in {seconds:.2f}s = {ok / seconds:.1f} jobs/s, "
              f"p50 {phases[-1]['p50_ms']:.1f} ms, p95 {phases[-1]['p95_ms']:.1f} ms, "
              f"load {at_start['loadavg_at_start']:.2f}"
              + (f", {len(errors)} errors, e.g. {errors[0]}" if errors else ""), flush=True)
        slurm.drain()
    return phases, latencies


def summarize(phases: list[dict[str, Any]], latencies: dict[str, list[float]]) -> dict[str, Any]:
    """Per mode over all its phases, then proxy against direct."""
    summary: dict[str, Any] = {}
    for mode, samples in latencies.items():
        mine = [p for p in phases if p["mode"] == mode]
        ok, seconds = sum(p["jobs"] for p in mine), sum(p["seconds"] for p in mine)
        cpu = {name: round(sum(p["cpu_ms_per_request"][name] * p["jobs"] for p in mine) / ok, 3)
               for name in mine[0]["cpu_ms_per_request"]}
        summary[mode] = {"jobs": ok, "errors": sum(p["errors"] for p in mine), "seconds": round(seconds, 3),
                         "jobs_per_s": round(ok / seconds, 1), **percentiles_ms(samples), "cpu_ms_per_request": cpu}
    for mode in (m for m in MODES[1:] if m in summary and "direct" in summary):
        direct, via = summary["direct"], summary[mode]
        summary[f"ratio_{mode}_over_direct"] = {k: round(via[k] / direct[k], 3)
                                                for k in ("jobs_per_s", "p50_ms", "p95_ms")}
        summary[f"added_latency_ms_{mode}"] = {k: round(via[k] - direct[k], 2) for k in ("p50_ms", "p95_ms")}
        summary[f"{mode}_cpu_ms_per_request"] = via["cpu_ms_per_request"][mode]
        summary[f"slurmrestd_cpu_ratio_{mode}_over_direct"] = round(
            via["cpu_ms_per_request"]["slurmrestd"] / max(direct["cpu_ms_per_request"]["slurmrestd"], 1e-9), 3)
    return summary


@contextmanager
def nginx_relay(cluster: DevCluster, tmp: Path, wanted: bool) -> Iterator[tuple[str, int]]:
    """(url, pid of its worker) of a plain nginx in front of slurmrestd, stopped by its PID; ("", 0) if not wanted."""
    if not wanted:
        yield "", 0
        return
    binary = shutil.which("nginx")
    if binary is None:
        raise BenchError("--order names nginx, but nginx is not installed (apt-get install nginx-light)")
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, upstream=cluster.rest_url.split("://", 1)[1]))
    with open(tmp / "nginx.out", "wb") as out:
        master = subprocess.Popen([binary, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        children = Path(f"/proc/{master.pid}/task/{master.pid}/children")
        worker = wait_until(lambda: int(children.read_text().split()[0]) if children.read_text().split() else 0,
                            30, "nginx's worker to start")
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), 30, "nginx to answer")
        yield url, worker
    finally:
        master.send_signal(signal.SIGQUIT)  # graceful: the master stops its worker
        try:
            master.wait(15)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait(10)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
        return True
    except httpx.HTTPError:
        return False


def preflight(slurm: Slurm, planned: int) -> dict[str, Any]:
    """Refuse to start if the run's jobs would push slurmctld past MaxJobCount (sbatch then sleeps and retries)."""
    max_jobs, min_age, held = int(slurm.config_value("MaxJobCount")), slurm.config_value("MinJobAge"), slurm.held()
    if held + planned > max_jobs:
        raise BenchError(f"slurmctld holds {held} jobs (finished and cancelled ones stay for MinJobAge={min_age}); "
                         f"{planned} more would pass MaxJobCount={max_jobs}: wait, or ask for fewer --jobs")
    return {"jobs_held_by_slurmctld": held, "max_job_count": max_jobs, "min_job_age": min_age}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs per mode, split over that mode's phases")
    parser.add_argument("--clients", default="8,1", help="concurrent keep-alive clients; a list runs the phases "
                        "once for each count (8: throughput; 1: the latency the proxy adds)")
    parser.add_argument("--order", default="direct,proxy,proxy,direct", help="phases, in order")
    parser.add_argument("--slurm", default="22.05", choices=sorted(REST_VERSIONS_OF),
                        help="the release's default dev cluster (docs/dev-cluster.md)")
    parser.add_argument("--state-dir", type=Path, help="another dev cluster's state directory (e.g. a test "
                        "cluster of one's own; then --ports, and --slurm is not used)")
    parser.add_argument("--ports", default="6820,6817,6818", help="its slurmrestd,slurmctld,slurmd ports")
    parser.add_argument("--run-jobs", action="store_true",
                        help="submit the jobs to run (default: to begin a day later, so that their starts, a "
                             "slurmstepd each, do not share the cores with whichever phase is on)")
    parser.add_argument("--json", type=Path, nargs="?", const=DEFAULT_JSON, default=None, metavar="PATH",
                        help=f"write the results as JSON (default path {DEFAULT_JSON.relative_to(REPO)})")
    args = parser.parse_args()
    args.order = args.order.split(",")
    try:
        args.clients = [int(count) for count in args.clients.split(",")]
    except ValueError:
        parser.error("--clients takes numbers, e.g. 8,1")
    if not set(args.order) <= set(MODES) or args.jobs < 2 * len(args.order) or min(args.clients) < 1:
        parser.error(f"--order takes {' and '.join(MODES)}; --jobs must allow 2 per phase; --clients >= 1")
    return args


def main() -> None:
    global API_VERSION
    args = parse_args()
    wall = time.perf_counter()
    cluster = cluster_of(args) if args.state_dir else default_cluster(args.slurm)
    API_VERSION = cluster.rest_versions[0]
    was_down = not any(cluster.status().values())
    cluster.up()
    try:
        report = measure(cluster, args)
    finally:
        if was_down:
            cluster.down()
    report["wall_seconds"] = round(time.perf_counter() - wall, 1)
    report["dev_cluster"] = "stopped again (it was down)" if was_down else "left up (it was up)"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nproxy log: {report['proxy_log']}   dev cluster {report['dev_cluster']}"
          + (f"   JSON: {args.json}" if args.json else ""))


def measure(cluster: DevCluster, args: argparse.Namespace) -> dict[str, Any]:
    user = cluster.users[0]
    slurm = Slurm(cluster, user)
    report: dict[str, Any] = {
        "machine": {"nproc": os.cpu_count(), "slurm": slurm.run("sbatch", "--version").strip(),
                    "python": platform.python_version(), "loadavg_at_start": os.getloadavg(),
                    "cluster_cpus": cluster.cpus,
                    **preflight(slurm, args.jobs * len(set(args.order)) * len(args.clients))},
        "parameters": {"jobs_per_mode": args.jobs, "clients": args.clients, "order": args.order, "user": user,
                       "slurm": cluster.slurm, "api_version": API_VERSION, "state_dir": str(cluster.state_dir),
                       "payload_bytes": len(job_payload(not args.run_jobs)),
                       "submitted_held": not args.run_jobs}}
    tmp = Path(tempfile.mkdtemp(prefix="slurmlink-proxy-bench-"))
    report["proxy_log"] = str(tmp / "proxy.log")
    slurm.drain()
    with CheckinStandin() as checkin:
        subject = checkin.new_subject()
        users_file = tmp / "users.txt"
        users_file.write_text(f"{checkin.issuer} {subject} {user}\n")
        with proxy_service(proxy_config(cluster, checkin.issuer, users_file, free_port(), VO), tmp) as proxy, \
                nginx_relay(cluster, tmp, "nginx" in args.order) as (nginx_url, nginx_pid):
            direct_headers = {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": cluster.token(user, lifespan=3600),
                              "Content-Type": "application/json"}
            targets = {"direct": (cluster.rest_url, direct_headers), "nginx": (nginx_url, direct_headers),
                       "proxy": (proxy.url, {"Authorization": f"Bearer {checkin.mint(subject)}",
                                             "Content-Type": "application/json"})}
            daemons = cluster.status()
            meter = CpuMeter({"proxy": proxy.pid, **({"nginx": nginx_pid} if nginx_pid else {}),
                              "slurmrestd": daemons["slurmrestd"] or 0, "slurmctld": daemons["slurmctld"] or 0,
                              "bench_clients": os.getpid()})
            report["by_clients"] = []
            try:
                for clients in args.clients:
                    print(f"{clients} client(s):", flush=True)
                    phases, latencies = run_phases(args.order, args.jobs, clients, targets, slurm, meter,
                                                   held=not args.run_jobs)
                    report["by_clients"].append({"clients": clients, "loadavg_after": os.getloadavg(),
                                                 "phases": phases, "summary": summarize(phases, latencies)})
            finally:
                slurm.drain()
            proxy.check_alive()
        report["checkin_calls"] = {e: checkin.count(e) for e in ("discovery", "certs", "userinfo")}
    return report


def print_table(report: dict[str, Any]) -> None:
    m, p = report["machine"], report["parameters"]
    print(f"\n{m['slurm']}, {m['nproc']} cores, load {m['loadavg_at_start'][0]:.2f} at start; {p['jobs_per_mode']} "
          f"jobs per mode and client count in phases {','.join(p['order'])}, user {p['user']}")
    for run in report["by_clients"]:
        print(f"\n{run['clients']} client(s), load {run['loadavg_after'][0]:.2f} after:")
        print_summary(run["summary"], run["phases"])
    print(f"wall time {report['wall_seconds']:.1f}s")


def print_summary(s: dict[str, Any], phases: list[dict[str, Any]]) -> None:
    names = list(next(s[m] for m in MODES if m in s)["cpu_ms_per_request"])
    print(f"{'':<22}{'jobs/s':>9}{'p50 ms':>9}{'p95 ms':>9}   CPU ms/request: {', '.join(names)}")
    for mode in (x for x in MODES if x in s):
        cpu = s[mode]["cpu_ms_per_request"]
        print(f"  {mode:<20}{s[mode]['jobs_per_s']:>9.1f}{s[mode]['p50_ms']:>9.1f}{s[mode]['p95_ms']:>9.1f}   "
              + ", ".join(f"{cpu[name]:.2f}" for name in names))
    for mode in (m for m in MODES[1:] if f"ratio_{m}_over_direct" in s):
        r, added = s[f"ratio_{mode}_over_direct"], s[f"added_latency_ms_{mode}"]
        print(f"  {'ratio ' + mode + '/direct':<20}{r['jobs_per_s']:>9.3f}{r['p50_ms']:>9.2f}{r['p95_ms']:>9.2f}")
        print(f"  {'added (' + mode + '-direct)':<20}{'':>9}{added['p50_ms']:>+9.1f}{added['p95_ms']:>+9.1f}   "
              f"{mode} CPU {s[f'{mode}_cpu_ms_per_request']:.2f} ms/request, slurmrestd CPU {mode}/direct "
              f"{s[f'slurmrestd_cpu_ratio_{mode}_over_direct']:.2f}")
    print(f"  errors {sum(ph['errors'] for ph in phases)}")


if __name__ == "__main__":
    try:
        main()
    except BenchError as exc:
        sys.exit(f"bench failed: {exc}")
