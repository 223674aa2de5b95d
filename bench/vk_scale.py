"""Benchmark (not a test) of issue 5: `--pods` (1,000) pods on one virtual node, apply → all started → all done.

The chain is the one of the vk tests, set up by bench/services.py: the Kubernetes stand-in (in this
process) → `slurmlink vk` (a process) → `slurmlink api` (a process, mode 2, host runtime) → the default dev
cluster. The pods (`sh -c "sleep 5"`, cpu 100m, memory 16Mi) are POSTed straight to the stand-in by
`--concurrency` asyncio clients, so the clock measures the system, not kubectl. A listener on the stand-in's
store notes, per pod and to the millisecond, when it was created, got its SLURM job condition, was first
reported Running and first reported Succeeded/Failed by the vk.

It reports pods/s (apply → all started, apply → all done), apply → Running latency p50/p95, the vk's peak
memory (VmHWM), the interLink API's requests by route (from its /metrics) per status interval, and, as the
baseline measured in the same run, SLURM's own schedule of the same jobs (the containers' startedAt/finishedAt,
written by the job script): how long they queued for a CPU, how many ran at once, and how late the vk reported
each start and end.

    .venv/bin/python bench/vk_scale.py                     # as root; about 8 minutes on 2 cores
    .venv/bin/python bench/vk_scale.py --pods 100          # a quick try, about 1.5 minutes

Results go to bench/results/vk_scale.json (git-ignored). See bench/README.md. Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.services and the kube-apiserver stand-in (standins/) are not installed

import httpx  # noqa: E402

from bench.services import (  # noqa: E402
    Service,
    add_cluster_options,
    api_config,
    api_service,
    cluster_of,
    free_port,
    node_kubeconfig,
    vk_config,
    vk_service,
    wait_until,
)
from bench.timeline import Timeline  # noqa: E402
from slurmlink.core.naming import pod_workdir  # noqa: E402
from slurmlink.devcluster import DevCluster  # noqa: E402
from slurmlink.translate.layout import STATUS_DIR  # noqa: E402
from slurmlink.wire.names import CHANGES_ROUTE  # noqa: E402
from standins.kube import KubeStandin  # noqa: E402

RESULTS = REPO / "bench" / "results" / "vk_scale.json"
NAMESPACE = "default"
PREFIX = "scale-"
MAX_HELD = 9500  # MaxJobCount is 10,000 on the dev cluster; a full slurmctld makes sbatch sleep and retry
ACTIVE_STATES = "PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED"
NODE = "slurmlink-test-node"
TOLERATION = {"key": "virtual-node.interlink/no-schedule", "operator": "Exists", "effect": "NoSchedule"}


class FeedWatch:
    """A second client of the API's change feed (a thread of the bench): when the API first told each pod's
    container running and terminated. It splits the vk's report lag into the API's part (SLURM's start → the
    feed) and the vk's (the feed → the patch in the stand-in)."""

    def __init__(self, api_url: str) -> None:
        self.url = f"{api_url}{CHANGES_ROUTE}"
        self.running: dict[str, float] = {}  # uid -> first told running (or terminated: it ran)
        self.terminated: dict[str, float] = {}  # uid -> first told terminated
        self.answers = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="feed-watch", daemon=True)

    def __enter__(self) -> FeedWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(15)

    def _run(self) -> None:
        cursor = ""
        with httpx.Client(timeout=httpx.Timeout(10, read=20)) as http:
            while not self.stopping.is_set():
                try:
                    answer = http.get(self.url, params={"since": cursor, "wait": "5"}).json()
                except (httpx.HTTPError, ValueError) as exc:
                    print(f"  feed watch: {exc}", file=sys.stderr)
                    self.stopping.wait(0.5)
                    continue
                now = time.time()
                self.answers += 1
                cursor = answer.get("cursor", "")
                for pod in answer.get("pods") or []:
                    states = [c.get("state") or {} for c in pod.get("containers") or []]
                    uid = pod.get("UID", "")
                    if any("running" in st or "terminated" in st for st in states):
                        self.running.setdefault(uid, now)
                    if states and all("terminated" in st for st in states):
                        self.terminated.setdefault(uid, now)


# --- measuring helpers -----------------------------------------------------------------------------------------

def slurm(cluster: DevCluster, *argv: str) -> str:
    return subprocess.run(argv, env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True,
                          timeout=120).stdout


def held_jobs(cluster: DevCluster) -> int:
    """Jobs slurmctld holds, finished ones included (`squeue -h -a -t all | wc -l`)."""
    return len(slurm(cluster, "squeue", "-h", "-a", "-t", "all", "-o", "%i").split())


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM/VmRSS in KiB and utime+stime in ticks of one process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {"vm_hwm_kib": int(fields["VmHWM"].split()[0]), "vm_rss_kib": int(fields["VmRSS"].split()[0]),
            "cpu_ticks": int(stat[11]) + int(stat[12])}


def cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz


def prometheus(text: str, name: str, *label_names: str) -> dict[str, float]:
    """Samples of one metric, summed by the given labels (joined with ' '); '' when there are none."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0])) if "{" in line else {}
            key = " ".join(labels.get(label, "") for label in label_names)
            out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in sorted(after.items()) if v - before.get(k, 0.0)}


def api_snapshot(api: Service) -> dict[str, dict[str, float]]:
    text = httpx.get(f"{api.url}/metrics", timeout=10).text
    return {"requests": prometheus(text, "slurmlink_api_requests_total", "route", "status"),
            "polls": prometheus(text, "slurmlink_api_poll_seconds_count"),
            "poll_seconds": prometheus(text, "slurmlink_api_poll_seconds_sum"),
            "submits": prometheus(text, "slurmlink_api_submits_total", "result")}


def vk_snapshot(vk: Service) -> dict[str, dict[str, float]]:
    text = vk.get("/metrics").text
    return {"api_calls": prometheus(text, "slurmlink_vk_api_calls_total", "route", "outcome"),
            "status_patches": prometheus(text, "slurmlink_vk_pod_status_patches_total"),
            "rounds": prometheus(text, "slurmlink_vk_status_round_seconds_count"),
            "round_seconds": prometheus(text, "slurmlink_vk_status_round_seconds_sum"),
            "watch_restarts": prometheus(text, "slurmlink_vk_watch_restarts_total", "why")}


def percentiles(samples: list[float]) -> dict[str, float | int | None]:
    if not samples:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(samples)

    def rank(q: float) -> float:  # nearest rank
        return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 2)
    return {"n": len(ordered), "p50": rank(0.50), "p95": rank(0.95), "max": round(ordered[-1], 2)}


def parse_time(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def container_times(pod: dict[str, Any]) -> tuple[float | None, float | None, int | None]:
    """(startedAt, finishedAt, exitCode) of the pod's one container as the vk reported them (whole seconds)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        return parse_time(terminated.get("startedAt")), parse_time(terminated.get("finishedAt")), \
            terminated.get("exitCode")
    return None, None, None


def file_times(job_root: Path, uid: str) -> tuple[float | None, float | None]:
    """When the job script wrote the container started and finished (its status files, to the microsecond):
    SLURM's own start and end of the container, finer than the status's whole seconds."""
    status = Path(pod_workdir(str(job_root), NAMESPACE, uid)) / STATUS_DIR
    def read(name: str) -> float | None:
        with contextlib.suppress(OSError, ValueError):
            return parse_time((status / name).read_text().strip())
        return None
    return read("main.started"), read("main.finished")


def overlap(spans: list[tuple[float, float]]) -> int:
    """Most spans [start, end) open at once."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


# --- the run -----------------------------------------------------------------------------------------------------

def scale_pod(index: int, sleep: float) -> dict[str, Any]:
    """A pod for the vk's node, sleeping `sleep` seconds."""
    container = {"name": "main", "image": "docker.io/library/debian:bookworm",
                 "command": ["sh", "-c", f"sleep {sleep:g}"],
                 "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{PREFIX}{index:05d}"},
            "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": NODE},
                     "tolerations": [TOLERATION], "terminationGracePeriodSeconds": 5,
                     "automountServiceAccountToken": False, "containers": [container]}}


def node_ready(standin: KubeStandin) -> bool:
    node = standin.get("nodes", NODE)
    conditions = {c["type"]: c["status"] for c in ((node or {}).get("status") or {}).get("conditions") or []}
    return conditions.get("Ready") == "True"


async def apply(standin: KubeStandin, pods: list[dict[str, Any]], concurrency: int) -> float:
    """POST every pod to the stand-in, `concurrency` at once; returns when the last answer came."""
    verify = ssl.create_default_context(cafile=str(standin.ca_path))
    headers = {"Authorization": f"Bearer {standin.admin_token}"}
    todo = iter(pods)
    async with httpx.AsyncClient(base_url=standin.url, verify=verify, headers=headers, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def worker() -> None:
            for pod in todo:
                response = await client.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=pod)
                if response.status_code != 201:
                    raise SystemExit(f"create {pod['metadata']['name']}: {response.status_code} {response.text}")
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.time()


def leftover_jobs(cluster: DevCluster, user: str, uids: set[str]) -> list[str]:
    out = slurm(cluster, "squeue", "-h", "-u", user, "-t", ACTIVE_STATES, "-o", "%A|%j")
    rows = [line.split("|", 1) for line in out.splitlines() if "|" in line]
    return [job for job, name in rows if name.removeprefix("slurmlink-") in uids]


def cancel_leftovers(cluster: DevCluster, user: str, uids: set[str]) -> int:
    jobs = leftover_jobs(cluster, user, uids)
    for i in range(0, len(jobs), 200):
        subprocess.run(["scancel", *jobs[i:i + 200]], env={**os.environ, **cluster.env}, capture_output=True,
                       timeout=60)
    return len(jobs)


def run(cluster: DevCluster, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    user = cluster.users[0]
    held = held_jobs(cluster)
    if held + args.pods > MAX_HELD:
        raise SystemExit(f"slurmctld holds {held} jobs; {args.pods} more would pass {MAX_HELD} (MaxJobCount is "
                         "10,000 and MinJobAge 900 s): wait for old jobs to age out, or use fewer --pods")
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "pods": args.pods, "sleep_seconds": args.sleep,
        "status_interval": args.interval, "api_poll_interval": args.api_poll_interval, "workers": args.workers,
        "change_feed": args.feed == "on",
        "create_concurrency": args.concurrency, "jobs_held_at_start": held, "slurm_cpus": cluster.cpus,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3], "work": str(work)}
    timeline = Timeline(PREFIX)
    api = api_service(api_config(cluster, user, args.api_poll_interval, free_port()), work)
    # the feed off: the vk's periodic /status rounds alone, as before issue 13's change feed
    feed = {} if args.feed == "on" else {"api": {"url": api.url, "changes": False}}
    vk: Service | None = None
    # A real apiserver's watch cache keeps minutes of changes; the stand-in keeps a count (500 by default), which
    # 1,000 pods would overrun in seconds and turn into relists no real cluster would cause.
    with KubeStandin(work / "standin", history_limit=max(500, 20 * args.pods)) as standin:
        standin.store.add_listener(timeline.on_change)
        try:
            vk = vk_service(vk_config(standin, NODE, node_kubeconfig(standin, work / "node.kubeconfig", NODE),
                                      api.url, workers=args.workers, status_interval=args.interval,
                                      ping_interval=5.0, lease_duration_seconds=40, missing_reference_timeout=300,
                                      watch_timeout_seconds=300, **feed), work, standin.kubelet_client_cert)
            wait_until(lambda: node_ready(standin), 30, "the node to be Ready", 0.2)
            report.update(measure(cluster, standin, api, vk, timeline, args))
        finally:
            if vk is not None:
                vk.stop()
            api.stop()
            report["jobs_cancelled_at_end"] = cancel_leftovers(cluster, user, {p.uid for p in timeline.pods.values()})
    return report


def measure(cluster: DevCluster, standin: KubeStandin, api: Service, vk: Service, timeline: Timeline,
            args: argparse.Namespace) -> dict[str, Any]:
    pods = [scale_pod(i, args.sleep) for i in range(args.pods)]
    api0, vk0 = api_snapshot(api), vk_snapshot(vk)
    proc0 = {"vk": proc_status(vk.pid), "api": proc_status(api.pid),
             "bench_and_standin": proc_status(os.getpid())}
    machine0 = cpu_seconds()
    feed = FeedWatch(api.url) if args.watch_feed else None
    with feed or contextlib.nullcontext():
        t0, applied, elapsed, peak_rss = wait_for_pods(standin, vk, timeline, pods, args)
    machine1 = cpu_seconds()
    proc1 = {"vk": proc_status(vk.pid), "api": proc_status(api.pid),
             "bench_and_standin": proc_status(os.getpid())}
    api1, vk1 = api_snapshot(api), vk_snapshot(vk)
    report = analyse(standin, timeline, args, cluster.job_root, t0, applied, elapsed, (api0, api1), (vk0, vk1),
                     (proc0, proc1), (machine0, machine1), peak_rss)
    if feed is not None:
        report["feed_watch"] = split_lag(timeline, feed, cluster.job_root)
    return report


def wait_for_pods(standin: KubeStandin, vk: Service, timeline: Timeline, pods: list[dict[str, Any]],
                  args: argparse.Namespace) -> tuple[float, float, float, int]:
    """Apply the pods and wait for all to finish: (the start, when all were applied, seconds from the start to
    the last one finished, the vk's peak RSS)."""
    t0 = time.time()
    applied = asyncio.run(apply(standin, pods, args.concurrency))
    print(f"applied {args.pods} pods in {applied - t0:.1f}s", file=sys.stderr)
    deadline = t0 + args.timeout
    last_print, peak_rss = 0.0, 0
    while True:
        counts = timeline.counts()
        peak_rss = max(peak_rss, proc_status(vk.pid)["vm_rss_kib"])
        if counts["finished"] >= args.pods:
            break
        vk.check_alive()
        if time.time() > deadline:
            raise SystemExit(f"timed out after {args.timeout:g}s: {counts}")
        if time.time() - last_print >= 15:
            last_print = time.time()
            print(f"  {last_print - t0:6.0f}s {counts}  vk RSS {peak_rss / 1024:.0f} MiB", file=sys.stderr)
        time.sleep(0.5)
    return t0, applied, time.time() - t0, peak_rss


def split_lag(timeline: Timeline, feed: FeedWatch, job_root: Path) -> dict[str, Any]:
    """The report lag of each start in two: SLURM's start (the job's file) → the API's feed, and the feed → the
    vk's patch; and the pods never patched Running, with what the feed told of them."""
    api_part, vk_part, never_running = [], [], {}
    for name, p in dict(timeline.pods).items():
        started, finished = file_times(job_root, p.uid)
        told = feed.running.get(p.uid)
        if started is not None and told is not None:
            api_part.append(told - started)
            if p.started is not None:
                vk_part.append(p.started - told)
        if p.running is None:
            never_running[name] = {
                "slurm_start": started, "slurm_end": finished, "feed_running": told,
                "feed_terminated": feed.terminated.get(p.uid), "patched_finished": p.finished,
                "feed_told_running_before_end": told is not None and finished is not None and told < finished}
    return {"answers": feed.answers, "slurm_start_to_feed": percentiles(api_part),
            "feed_to_patch": percentiles(vk_part), "never_patched_running": never_running}


def analyse(standin: KubeStandin, timeline: Timeline, args: argparse.Namespace, job_root: Path, t0: float,
            applied: float, elapsed: float, api: tuple[dict[str, Any], ...], vkm: tuple[dict[str, Any], ...],
            procs: tuple[dict[str, Any], ...], machine: tuple[tuple[float, float], ...], peak_rss: int
            ) -> dict[str, Any]:
    times = dict(timeline.pods)
    stored = {p["metadata"]["name"]: p for p in standin.store.snapshot("/pods", NAMESPACE)[0]
              if p["metadata"]["name"].startswith(PREFIX)}
    n = len(times)
    last = {step: max(getattr(p, step) or 0.0 for p in times.values())
            for step in ("created", "bound", "submitted", "job_condition", "started", "finished")}
    first_submitted = min((p.submitted for p in times.values() if p.submitted is not None), default=t0)
    phases: dict[str, int] = {}
    exits: dict[str, int] = {}
    spans, slurm_wait, vk_start_lag, vk_end_lag, durations = [], [], [], [], []
    from_files = 0
    for name, p in times.items():
        phases[p.phase] = phases.get(p.phase, 0) + 1
        started_at, finished_at, code = container_times(stored[name])
        exits[str(code)] = exits.get(str(code), 0) + 1
        precise = file_times(job_root, p.uid)
        if precise[0] is not None and precise[1] is not None:
            (started_at, finished_at), from_files = precise, from_files + 1
        if started_at is not None and finished_at is not None:
            spans.append((started_at, finished_at))  # both cut to whole seconds alike
            durations.append(finished_at - started_at)
            slurm_wait.append(started_at - p.created)
            if p.started is not None:
                vk_start_lag.append(p.started - started_at)
            if p.finished is not None:
                vk_end_lag.append(p.finished - finished_at)
    concurrency = overlap(spans)
    slurm_span = max(e for _, e in spans) - min(s for s, _ in spans) if spans else 0.0
    median_duration = sorted(durations)[len(durations) // 2] if durations else args.sleep
    floor = math.ceil(n / max(concurrency, 1)) * max(median_duration, args.sleep)
    window = last["finished"] - first_submitted
    intervals = window / args.interval
    requests = delta(api[1]["requests"], api[0]["requests"])
    by_route: dict[str, float] = {}
    for key, value in requests.items():
        route = key.split(" ")[0]
        by_route[route] = by_route.get(route, 0) + value
    vk_calls = delta(vkm[1]["api_calls"], vkm[0]["api_calls"])
    rounds = delta(vkm[1]["rounds"], vkm[0]["rounds"]).get("", 0)
    round_seconds = delta(vkm[1]["round_seconds"], vkm[0]["round_seconds"]).get("", 0)
    polls = delta(api[1]["polls"], api[0]["polls"]).get("", 0)
    poll_seconds = delta(api[1]["poll_seconds"], api[0]["poll_seconds"]).get("", 0)
    hz = os.sysconf("SC_CLK_TCK")
    cpu = {who: round((procs[1][who]["cpu_ticks"] - procs[0][who]["cpu_ticks"]) / hz, 1) for who in procs[0]}
    busy = (machine[1][0] - machine[0][0]) / max(machine[1][1] - machine[0][1], 1e-9)
    return {
        "elapsed_seconds": round(elapsed, 1),
        "apply_seconds": round(applied - t0, 2),
        "seconds_to_all": {step: round(value - t0, 1) for step, value in last.items()},
        "pods_per_second": {"apply_to_all_submitted": round(n / (last["submitted"] - t0), 2),
                            "apply_to_all_started": round(n / (last["started"] - t0), 2),
                            "apply_to_all_done": round(n / (last["finished"] - t0), 2)},
        "final_phases": phases, "exit_codes": exits,
        # the whole status of every pod that did not end Succeeded (all should: each only sleeps)
        "not_succeeded": {name: stored[name].get("status") for name, p in times.items() if p.phase != "Succeeded"},
        "seen_running": sum(p.running is not None for p in times.values()),
        "latency_seconds": {
            # from the pod's creation (stored by the stand-in) to the vk's first Running (or finished) patch
            "apply_to_running": percentiles([p.started - p.created for p in times.values() if p.started]),
            "apply_to_submitted_event": percentiles([p.submitted - p.created for p in times.values() if p.submitted]),
            "apply_to_done": percentiles([p.finished - p.created for p in times.values() if p.finished]),
            # the baseline: SLURM's own start of the job (container startedAt, whole seconds, so 0-1 s early)
            "apply_to_slurm_start": percentiles(slurm_wait),
            "vk_start_report_lag": percentiles(vk_start_lag),
            "vk_end_report_lag": percentiles(vk_end_lag),
        },
        # SLURM's times: the job's status files (µs) for this many pods, the rest the status's whole seconds
        "slurm_times_from_files": from_files,
        "slurm": {"max_concurrent_jobs": concurrency, "span_seconds": round(slurm_span, 1),
                  "mean_concurrent_jobs": round(sum(durations) / slurm_span, 1) if slurm_span else None,
                  "median_job_seconds": median_duration,
                  "floor_seconds": round(floor, 1)},
        "vk": {"peak_memory_mib": round(procs[1]["vk"]["vm_hwm_kib"] / 1024, 1),
               "peak_rss_sampled_mib": round(peak_rss / 1024, 1),
               "memory_at_start_mib": round(procs[0]["vk"]["vm_rss_kib"] / 1024, 1),
               "api_calls": vk_calls, "status_rounds": rounds,
               "mean_round_seconds": round(round_seconds / rounds, 3) if rounds else None,
               "status_patches": delta(vkm[1]["status_patches"], vkm[0]["status_patches"]).get("", 0),
               "watch_restarts": delta(vkm[1]["watch_restarts"], vkm[0]["watch_restarts"])},
        "api": {"requests": requests, "requests_by_route": by_route,
                "status_window_seconds": round(window, 1), "status_intervals": round(intervals, 1),
                "per_interval": {route: round(count / intervals, 2) for route, count in by_route.items()
                                 if route != "/metrics"},  # /metrics: the bench's own two reads
                "polls": polls, "mean_poll_seconds": round(poll_seconds / polls, 3) if polls else None,
                "submits": delta(api[1]["submits"], api[0]["submits"]),
                "peak_memory_mib": round(procs[1]["api"]["vm_hwm_kib"] / 1024, 1)},
        "cpu_seconds": cpu, "machine_busy": round(busy, 3),
        "pods_detail": {name: asdict(p) for name, p in sorted(times.items())},
    }


def print_table(r: dict[str, Any]) -> None:
    lat, s, v, a = r["latency_seconds"], r["slurm"], r["vk"], r["api"]

    def pct(key: str) -> str:
        q = lat[key]
        return f"p50 {q['p50']} s, p95 {q['p95']} s, max {q['max']} s (n={q['n']})"
    rows = [
        ("pods", f"{r['pods']} (sleep {r['sleep_seconds']:g} s; {r['jobs_held_at_start']} jobs held at start)"),
        ("final phases / exit codes", f"{r['final_phases']} / {r['exit_codes']}"),
        ("apply (POST all pods)", f"{r['apply_seconds']} s"),
        ("apply → all submitted (event)", f"{r['seconds_to_all']['submitted']} s "
                                  f"({r['pods_per_second']['apply_to_all_submitted']} pods/s)"),
        ("apply → all Running", f"{r['seconds_to_all']['started']} s ({r['pods_per_second']['apply_to_all_started']}"
                                f" pods/s; {r['seen_running']} of {r['pods']} seen Running, any others went straight"
                                " to Succeeded between two status rounds)"),
        ("apply → all Succeeded", f"{r['seconds_to_all']['finished']} s "
                                  f"({r['pods_per_second']['apply_to_all_done']} pods/s)"),
        ("  baseline: SLURM floor", f"{s['floor_seconds']} s = ceil(pods / {s['max_concurrent_jobs']} at once) × "
                                    f"{s['median_job_seconds']:g} s; SLURM's own span {s['span_seconds']} s"),
        ("effective concurrency", f"max {s['max_concurrent_jobs']}, mean {s['mean_concurrent_jobs']} jobs at once"),
        ("apply → Running latency", pct("apply_to_running")),
        ("  baseline: apply → SLURM start", pct("apply_to_slurm_start")),
        ("  vk start report lag", pct("vk_start_report_lag")),
        ("  vk end report lag", pct("vk_end_report_lag")),
        ("vk peak memory (VmHWM)", f"{v['peak_memory_mib']} MiB (RSS at start {v['memory_at_start_mib']} MiB)"),
        ("vk status rounds", f"{v['status_rounds']:g}, mean {v['mean_round_seconds']} s; "
                             f"{v['status_patches']:g} status patches; watch restarts {v['watch_restarts'] or 0}"),
        ("API requests per interval", f"{a['per_interval']} over {a['status_intervals']} intervals of "
                                      f"{r['status_interval']:g} s"),
        ("API requests", str(a["requests"])),
        ("API polls", f"{a['polls']:g}, mean {a['mean_poll_seconds']} s; peak memory {a['peak_memory_mib']} MiB"),
        ("CPU seconds", f"{r['cpu_seconds']}; machine busy {r['machine_busy']:.0%}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if feed := r.get("feed_watch"):
        print(f"{'  SLURM start → the feed':<{width}}  {feed['slurm_start_to_feed']}")
        print(f"{'  the feed → the vk patch':<{width}}  {feed['feed_to_patch']}")
        told = sum(x["feed_told_running_before_end"] for x in feed["never_patched_running"].values())
        print(f"{'  never patched Running':<{width}}  {len(feed['never_patched_running'])} pods; the feed told "
              f"{told} of them running before their end")
    for name, status in r["not_succeeded"].items():
        containers = [c.get("state") for c in (status or {}).get("containerStatuses") or []]
        print(f"not Succeeded: {name} {(status or {}).get('phase')} {json.dumps(containers)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=5.0, help="the vk's status_interval (its default: 5)")
    parser.add_argument("--api-poll-interval", type=float, default=2.0, help="the API's poll_interval (default 2)")
    parser.add_argument("--workers", type=int, default=8, help="the vk's workers (its default: 8)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients POSTing pods at once")
    parser.add_argument("--sleep", type=float, default=5.0, help="seconds each pod sleeps")
    parser.add_argument("--feed", choices=("on", "off"), default="on", help="the vk's change feed (`api.changes`; "
                        "on: the shipped default; off: the periodic /status rounds alone, as before issue 13)")
    parser.add_argument("--watch-feed", action="store_true", help="a second client of the API's change feed in "
                        "the bench: the report lag split into the API's part and the vk's (one more long poll)")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds (default: from --pods)")
    add_cluster_options(parser)
    args = parser.parse_args()
    if args.timeout is None:
        args.timeout = 300 + args.pods * args.sleep * 3 / 16  # three times the floor at 16 CPUs, plus 5 minutes
    cluster = cluster_of(args)
    was_down = not any(cluster.status().values())
    cluster.up()
    work = Path(tempfile.mkdtemp(prefix="slurmlink-vk-scale-"))
    try:
        report = run(cluster, args, work)
    finally:
        if was_down:
            cluster.down()
    report["dev_cluster"] = "stopped again (it was down)" if was_down else "left up (it was up)"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"\nresults: {RESULTS}; logs: {work}; dev cluster {report['dev_cluster']}")


if __name__ == "__main__":
    main()
