"""Benchmark (not a test) of issue 13: how much later than SLURM's own start and end Kubernetes sees a pod's.

Side by side in one run, on an idle dev cluster, one job or pod at a time:

- `raw`: SLURM's own times, the reference. The job the cli backend would make for the pod (`build_job`, host
  runtime), submitted as the backend does (`runuser -u USER -- sbatch ...`, see bench/submit_throughput.py),
  observed by polling `squeue` every `--squeue-period` (20 ms): sbatch → RUNNING, sbatch → COMPLETED, and for
  a long job `scancel` → job gone (a finished state).
- `mode2`: the Kubernetes stand-in (in this process) → `slurmlink vk` → `slurmlink api` (cli backend) → SLURM.
- `mode1`: the same, but the API's `rest` backend → `slurmlink proxy` → slurmrestd (as bench/status_rpcs.py;
  Check-in is standins/checkin.py, pods name a Secret holding the user's token).

For the modes, a listener on the stand-in's store notes when each pod was created (the apply), first Running,
first Ready, first Succeeded/Failed and when its object went away; a thread polls `squeue` every
`--job-watch-period` (100 ms) for the pods' jobs, so each pod also has its own job's SLURM times. Deletion:
a long pod, once Running, is deleted (`DELETE` on the stand-in, as `kubectl delete pod` does): delete → job
gone and delete → pod object gone.

The vk and the API run with their shipped defaults (the keys are left out of their configuration) unless
`--vk-status-interval` or `--api-poll-interval` says otherwise, so the numbers show the code's behaviour as
shipped. The issue's targets are printed beside them.

    .venv/bin/python bench/start_latency.py                   # as root; about 10 minutes on 2 cores
    .venv/bin/python bench/start_latency.py --pods 7          # about 8 minutes
    .venv/bin/python bench/start_latency.py --pods 3 --modes raw,mode2 --delete-pods 1   # a quick try

Results go to bench/results/start_latency.json (git-ignored). See bench/README.md. Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.services and the stand-ins (standins/) are not installed

from bench.services import (  # noqa: E402
    BenchError,
    Service,
    add_cluster_options,
    api_config,
    api_service,
    cluster_of,
    free_port,
    node_kubeconfig,
    proxy_config,
    proxy_service,
    sticky_job_root,
    vk_config,
    vk_service,
    wait_until,
)
from bench.submit_throughput import JITTER_S, Slurm  # noqa: E402
from bench.submit_throughput import NAMESPACE as RAW_NAMESPACE  # noqa: E402
from bench.timeline import PodTimes, Timeline  # noqa: E402
from bench.vk_scale import NODE, TOLERATION, held_jobs, node_ready, percentiles  # noqa: E402
from slurmlink.api.config import ApiConfig  # noqa: E402
from slurmlink.core.states import FINISHED_STATES  # noqa: E402
from slurmlink.devcluster import DevCluster  # noqa: E402
from slurmlink.identity.pod_token import ACCESS_TOKEN_KEY  # noqa: E402
from slurmlink.vk.config import VkConfig  # noqa: E402
from slurmlink.wire.names import TOKEN_SECRET_ANNOTATION  # noqa: E402
from standins.checkin import CheckinStandin  # noqa: E402
from standins.kube import KubeStandin  # noqa: E402

RESULTS = REPO / "bench" / "results" / "start_latency.json"
MODES = ("raw", "mode2", "mode1")
NAMESPACE = "default"
PREFIX = "lat-"
STARTED_STATES = frozenset({"RUNNING", "COMPLETING", *FINISHED_STATES})  # a job seen past its start
MAX_HELD = 9500  # MaxJobCount is 10,000 on the dev cluster; a full slurmctld makes sbatch sleep and retry
LONG_SLEEP = 600  # seconds: the pods and jobs that are deleted; they never end by themselves
VO = "vo.example.org"  # the Check-in stand-in's users are members of it by default
TOKEN_SECRET = "checkin-token"  # noqa: S105 - a Secret's name
# The targets (issue 13, "Must show"): apply → Running p50 within 0.5 s of SLURM's own start
# (sbatch → RUNNING p50) and at most 1.5 s absolute.
TARGET_OVER_SLURM_S = 0.5
TARGET_ABSOLUTE_S = 1.5


# --- what is observed ------------------------------------------------------------------------------------------

@dataclass
class JobTimes:
    """What squeue showed of one job, in wall-clock seconds."""

    job_id: str = ""
    running: float | None = None  # first seen RUNNING or later
    finished: float | None = None  # first seen in a finished state
    state: str = ""


@dataclass
class JobWatch:
    """A thread polling squeue every `period` for the jobs of the pods being measured (by job name), one
    squeue for all of them; a job is dropped from the poll once it is seen finished."""

    slurm: Slurm
    period: float
    jobs: dict[str, JobTimes] = field(default_factory=dict)  # job name -> times
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def watch(self, uid: str) -> JobTimes:
        with self.lock:
            return self.jobs.setdefault(f"slurmlink-{uid}", JobTimes())

    def run(self) -> None:
        while not self.stopping.wait(self.period):
            with self.lock:
                names = [name for name, times in self.jobs.items() if times.finished is None]
            if not names:
                continue
            try:
                out = self.slurm.run(["squeue", "-h", "-a", "-t", "all", "-n", ",".join(names), "-o", "%j|%i|%T"])
            except (BenchError, subprocess.SubprocessError) as exc:  # one failed poll: the next one may see it
                print(f"  job watch: {exc}", file=sys.stderr)
                continue
            now = time.time()
            with self.lock:
                for line in out.splitlines():
                    name, job_id, state = line.split("|", 2)
                    note_state(self.jobs[name], job_id, state, now)

    @contextlib.contextmanager
    def running(self) -> Iterator[JobWatch]:
        """Polling while inside; on the way out, the jobs not seen finished (a run cut short) are cancelled."""
        thread = threading.Thread(target=self.run, name="job-watch", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stopping.set()
            thread.join(30)
            if leftovers := [name for name, times in self.jobs.items() if times.finished is None]:
                subprocess.run(["scancel", "-n", ",".join(leftovers)], env=self.slurm.env, capture_output=True,
                               timeout=60)


def note_state(times: JobTimes, job_id: str, state: str, now: float) -> None:
    times.job_id, times.state = job_id, state
    if times.running is None and state in STARTED_STATES:
        times.running = now
    if times.finished is None and state in FINISHED_STATES:
        times.finished = now


# --- the reference: raw sbatch ---------------------------------------------------------------------------------

def bench_pod(name: str, seconds: float, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod for the vk's node that sleeps `seconds` (no resources: the backend's defaults)."""
    container = {"name": "main", "image": "docker.io/library/debian:bookworm", "command": ["sleep", f"{seconds:g}"]}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": NODE},
                     "tolerations": [TOLERATION], "terminationGracePeriodSeconds": 5,
                     "automountServiceAccountToken": False, "containers": [container]}}


def raw_phase(slurm: Slurm, args: argparse.Namespace, rng: random.Random) -> dict[str, list[float]]:
    """sbatch → RUNNING and → COMPLETED of `--pods` jobs, then scancel → gone of `--delete-pods` long ones."""
    samples: dict[str, list[float]] = {"submit_to_running": [], "submit_to_completed": [], "cancel_to_gone": []}

    def submit(seconds: float) -> tuple[float, str]:
        pod = bench_pod("raw", seconds)
        # in submit_throughput's namespace: its job comment is how Slurm.drain() tells the bench's jobs
        pod["metadata"] |= {"namespace": RAW_NAMESPACE, "uid": str(uuid.uuid4())}
        job = slurm.raw_job(pod)  # built before the clock starts, as submit_throughput.py does
        time.sleep(rng.uniform(0, JITTER_S))  # not in lock-step with slurmctld's scheduling pass
        start = time.time()
        return start, slurm.submit(job)

    def until(job_id: str, states: frozenset[str], timeout: float) -> float:
        """When squeue first answered one of `states` for the job."""
        def seen() -> float | None:
            state, now = slurm.state(job_id), time.time()
            return now if state in states else None
        when = wait_until(seen, timeout, f"job {job_id} to be {'/'.join(sorted(states))}", args.squeue_period)
        assert when is not None  # wait_until returns only something truthy
        return when

    for i in range(args.pods):
        start, job_id = submit(args.lengths[i])
        samples["submit_to_running"].append(until(job_id, STARTED_STATES, 60) - start)
        samples["submit_to_completed"].append(until(job_id, FINISHED_STATES, 60 + args.lengths[i]) - start)
        print(f"  raw {i + 1}/{args.pods}: RUNNING {samples['submit_to_running'][-1]:.2f} s, COMPLETED "
              f"{samples['submit_to_completed'][-1]:.2f} s", file=sys.stderr)
    for _ in range(args.delete_pods):
        _, job_id = submit(LONG_SLEEP)
        until(job_id, STARTED_STATES, 60)
        time.sleep(rng.uniform(0, JITTER_S))
        start = time.time()
        slurm.run(["scancel", job_id])
        samples["cancel_to_gone"].append(until(job_id, FINISHED_STATES, 60) - start)
    return samples


# --- the modes: stand-in → vk → API → SLURM --------------------------------------------------------------------

@dataclass
class Stack:
    standin: KubeStandin
    vk: Service
    api: Service
    timeline: Timeline
    annotations: dict[str, str]  # what each pod carries (mode 1: the Secret with the user's token)

    def check_alive(self) -> None:
        self.vk.check_alive()
        self.api.check_alive()


def api_settings(cluster: DevCluster, user: str, args: argparse.Namespace, work: Path,
                 **overrides: Any) -> dict[str, Any]:
    """bench.services.api_config, but poll_interval left to the shipped default unless a flag sets it."""
    config = api_config(cluster, user, args.api_poll_interval or 0.0, free_port(),
                        state_dir=str(work / "api-state"), **overrides)
    if args.api_poll_interval is None:
        del config["poll_interval"]
    return config


@contextlib.contextmanager
def pod_stack(mode: str, cluster: DevCluster, user: str, args: argparse.Namespace, work: Path) -> Iterator[Stack]:
    """Every process of one mode, started; all stopped (by PID) on exit."""
    work.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        secrets: list[dict[str, Any]] = []
        annotations: dict[str, str] = {}
        if mode == "mode2":
            api = stack.enter_context(api_service(api_settings(cluster, user, args, work), work))
        else:
            checkin = stack.enter_context(CheckinStandin())
            subject, service = checkin.new_subject(), checkin.new_subject()
            users_file = work / "users.txt"
            users_file.write_text(f"{checkin.issuer} {subject} {user}\n")
            job_root = sticky_job_root(cluster)
            proxy = stack.enter_context(proxy_service(proxy_config(
                cluster, checkin.issuer, users_file, free_port(), VO, files={"job_root": str(job_root)},
                signals={"slurm_conf": str(cluster.conf_path),
                         "scancel": str(cluster.bin_dir / "scancel") if cluster.bin_dir else "scancel"},
                service_identities=[{"issuer": checkin.issuer, "subject": service, "account": cluster.users[2]}],
                state_dir=str(work / "proxy-state")), work, ready_path="/metrics"))  # /healthz needs slurmrestd too
            token_file = work / "service.token"
            token_file.write_text(checkin.mint(service, lifetime=7200))
            token_file.chmod(0o600)
            api = stack.enter_context(api_service(api_settings(
                cluster, user, args, work, backend="rest", job_root=str(job_root),
                rest={"url": proxy.url, "service_token_file": str(token_file)}), work))
            token = checkin.mint(subject, lifetime=7200)
            secrets.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": TOKEN_SECRET},
                            "type": "Opaque", "data": {ACCESS_TOKEN_KEY: base64.b64encode(token.encode()).decode()}})
            annotations[TOKEN_SECRET_ANNOTATION] = TOKEN_SECRET
        standin = stack.enter_context(KubeStandin(work / "standin"))
        timeline = Timeline(PREFIX)
        standin.store.add_listener(timeline.on_change)
        overrides: dict[str, Any] = {"status_interval": args.vk_status_interval} if args.vk_status_interval else {}
        if not args.feed:  # the vk's periodic /status rounds alone, as before issue 13's change feed
            overrides["api"] = {"url": api.url, "changes": False}
        kubeconfig = node_kubeconfig(standin, work / "node.kubeconfig", NODE)
        vk = stack.enter_context(vk_service(vk_config(standin, NODE, kubeconfig, api.url, **overrides), work,
                                            standin.kubelet_client_cert))
        wait_until(lambda: node_ready(standin), 60, "the node to be Ready", 0.2)
        for secret in secrets:
            standin.create("secrets", secret, NAMESPACE)
        yield Stack(standin, vk, api, timeline, annotations)


def pod_phase(stack: Stack, watch: JobWatch, label: str, args: argparse.Namespace,
              rng: random.Random) -> dict[str, list[float]]:
    """`--pods` pods one after another (each Succeeded before the next), then `--delete-pods` long pods, each
    deleted once Running and gone before the next."""
    keys = ("apply_to_running", "apply_to_ready", "apply_to_succeeded", "apply_to_job_running",
            "apply_to_job_completed", "running_after_job_running", "succeeded_after_job_completed",
            "delete_to_job_gone", "delete_to_pod_gone")
    samples: dict[str, list[float]] = {key: [] for key in keys}
    seen_running = 0
    with stack.standin.client() as kube:
        def apply(name: str, seconds: float) -> tuple[PodTimes, JobTimes]:
            # Each pod is applied right after the previous one was reported done, i.e. right after a status
            # round: a pause shorter than the round's period would lock every sample onto the same phase.
            time.sleep(rng.uniform(0, args.pause))
            response = kube.post(f"/api/v1/namespaces/{NAMESPACE}/pods",
                                 json=bench_pod(name, seconds, stack.annotations))
            if response.status_code != 201:
                raise BenchError(f"create {name}: {response.status_code} {response.text[:300]}")
            pod = stack.timeline.get(name)
            assert pod is not None  # the listener ran before the POST answered
            return pod, watch.watch(pod.uid)

        def until(what: str, check: Callable[[], object], timeout: float) -> None:
            def alive_and(check: Callable[[], object] = check) -> object:
                stack.check_alive()  # a service that died is the news, not the timeout
                return check()
            wait_until(alive_and, timeout, what, 0.05)

        for i in range(args.pods):
            name = f"{PREFIX}{label}-{i:03d}"
            pod, job = apply(name, args.lengths[i])
            until(f"pod {name} to finish", lambda: pod.finished, 120 + args.lengths[i])  # noqa: B023
            until(f"the job of {name} to be seen finished", lambda: job.finished, 30)  # noqa: B023
            seen_running += pod.running is not None
            assert pod.started is not None and pod.finished is not None
            samples["apply_to_running"].append(pod.started - pod.created)
            samples["apply_to_succeeded"].append(pod.finished - pod.created)
            if pod.ready is not None:
                samples["apply_to_ready"].append(pod.ready - pod.created)
            if job.running is not None:
                samples["apply_to_job_running"].append(job.running - pod.created)
                samples["running_after_job_running"].append(pod.started - job.running)
            if job.finished is not None:
                samples["apply_to_job_completed"].append(job.finished - pod.created)
                samples["succeeded_after_job_completed"].append(pod.finished - job.finished)
            print(f"  {label} {i + 1}/{args.pods}: {pod.phase}, Running {pod.started - pod.created:.2f} s "
                  f"(job RUNNING {(job.running or 0) - pod.created:.2f} s), Succeeded "
                  f"{pod.finished - pod.created:.2f} s", file=sys.stderr)
        for i in range(args.delete_pods):
            name = f"{PREFIX}{label}-del-{i:03d}"
            pod, job = apply(name, LONG_SLEEP)
            until(f"pod {name} to be Running", lambda: pod.running, 120)  # noqa: B023
            until(f"the job of {name} to be seen running", lambda: job.running, 30)  # noqa: B023
            time.sleep(rng.uniform(0, args.pause))
            start = time.time()
            response = kube.delete(f"/api/v1/namespaces/{NAMESPACE}/pods/{name}")
            if response.status_code not in (200, 202):
                raise BenchError(f"delete {name}: {response.status_code} {response.text[:300]}")
            until(f"the job of {name} to end", lambda: job.finished, 120)  # noqa: B023
            until(f"pod {name} to go away", lambda: pod.gone, 120)  # noqa: B023
            assert job.finished is not None and pod.gone is not None
            samples["delete_to_job_gone"].append(job.finished - start)
            samples["delete_to_pod_gone"].append(pod.gone - start)
            print(f"  {label} delete {i + 1}/{args.delete_pods}: job gone {job.finished - start:.2f} s, pod "
                  f"gone {pod.gone - start:.2f} s", file=sys.stderr)
    samples["seen_running"] = [float(seen_running)]
    return samples


# --- the run ---------------------------------------------------------------------------------------------------

def run(cluster: DevCluster, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    user = cluster.users[0]
    slurm = Slurm(cluster, user)
    held = held_jobs(cluster)
    jobs = args.rounds * len(args.modes) * (args.pods + args.delete_pods)
    if held + jobs > MAX_HELD:
        raise SystemExit(f"slurmctld holds {held} jobs; {jobs} more would pass {MAX_HELD} (MaxJobCount is 10,000 "
                         "and MinJobAge 900 s): wait for old jobs to age out, or use fewer --pods")
    rng = random.Random(args.seed)  # noqa: S311 - the same pauses in every run
    # pods: a random pause over a whole status round (and at least slurmctld's 1 s scheduling pass)
    args.pause = max(JITTER_S, args.vk_status_interval or VkConfig.model_fields["status_interval"].default)
    samples: dict[str, dict[str, list[float]]] = {mode: {} for mode in args.modes}
    loads: list[dict[str, Any]] = []  # the machine's load average around each phase (others may share it)
    for round_ in range(args.rounds):
        shift = round_ % len(args.modes)  # each round starts with another mode: a drift falls on all of them
        for mode in args.modes[shift:] + args.modes[:shift]:
            print(f"round {round_ + 1}/{args.rounds}: {mode} (load {loadavg()})", file=sys.stderr)
            load_before = loadavg()
            if mode == "raw":
                got = raw_phase(slurm, args, rng)
            else:
                with pod_stack(mode, cluster, user, args, work / f"{mode}-{round_}") as stack, \
                        JobWatch(slurm, args.job_watch_period).running() as watch:
                    got = pod_phase(stack, watch, f"{mode}-{round_}", args, rng)
            for key, values in got.items():
                samples[mode].setdefault(key, []).extend(values)
            loads.append({"mode": mode, "round": round_ + 1, "start": load_before, "end": loadavg()})
            slurm.drain()
    api_fields, vk_fields = ApiConfig.model_fields, VkConfig.model_fields
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "pods": args.pods,
        "delete_pods": args.delete_pods, "rounds": args.rounds, "sleep_seconds": args.sleep,
        "sleep_spread_seconds": args.sleep_spread, "job_seconds": [round(x, 3) for x in args.lengths],
        "modes": list(args.modes), "jobs_held_at_start": held, "seed": args.seed,
        "loadavg_by_phase": loads, "work": str(work),
        "cluster": {"state_dir": str(cluster.state_dir), "slurm": cluster.slurm},
        "settings": {"api_poll_interval": args.api_poll_interval or api_fields["poll_interval"].default,
                     "vk_status_interval": args.vk_status_interval or vk_fields["status_interval"].default,
                     "change_feed": args.feed,
                     "shipped_defaults": args.api_poll_interval is None and args.vk_status_interval is None
                     and args.feed,
                     "squeue_period": args.squeue_period, "job_watch_period": args.job_watch_period,
                     "random_pause_seconds": {"raw": JITTER_S, "pods": args.pause}},
        "latency_seconds": {mode: {key: percentiles(values) for key, values in by_key.items()
                                   if key != "seen_running"} for mode, by_key in samples.items()},
        "seen_running": {mode: int(sum(by_key.get("seen_running", []))) for mode, by_key in samples.items()
                         if mode != "raw"},
        "samples_seconds": {mode: {key: [round(v, 3) for v in values] for key, values in by_key.items()}
                            for mode, by_key in samples.items()},
        "versus_slurm": versus(samples),
    }


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg has them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def versus(samples: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Each mode's p50/p95 against SLURM's own (raw): ratio and difference, and the issue's targets."""
    raw = samples.get("raw")
    if not raw:
        return {}
    pairs = {"apply_to_running": "submit_to_running", "apply_to_succeeded": "submit_to_completed",
             "delete_to_job_gone": "cancel_to_gone", "delete_to_pod_gone": "cancel_to_gone"}
    out: dict[str, Any] = {}
    for mode, by_key in samples.items():
        if mode == "raw":
            continue
        out[mode] = {}
        for ours, theirs in pairs.items():
            mine, ref = percentiles(by_key.get(ours, [])), percentiles(raw.get(theirs, []))
            row: dict[str, Any] = {"reference": theirs}
            for q in ("p50", "p95"):
                a, b = mine[q], ref[q]
                if a is not None and b is not None:
                    row[f"{q}_ratio"] = round(a / b, 2) if b else None
                    row[f"{q}_over_slurm"] = round(a - b, 2)
            out[mode][ours] = row
        over = out[mode]["apply_to_running"].get("p50_over_slurm")
        p50 = percentiles(by_key.get("apply_to_running", []))["p50"]
        out[mode]["targets"] = {
            "apply_to_running_p50_over_slurm": {"target": TARGET_OVER_SLURM_S, "here": over,
                                                "met": over is not None and over <= TARGET_OVER_SLURM_S},
            "apply_to_running_p50": {"target": TARGET_ABSOLUTE_S, "here": p50,
                                     "met": p50 is not None and p50 <= TARGET_ABSOLUTE_S}}
    return out


ROWS = (  # (mode, key, label, reference key in raw)
    ("raw", "submit_to_running", "sbatch → RUNNING (SLURM's own start)", None),
    ("raw", "submit_to_completed", "sbatch → COMPLETED", None),
    ("raw", "cancel_to_gone", "scancel → job gone", None),
    ("*", "apply_to_running", "apply → Running", "submit_to_running"),
    ("*", "apply_to_ready", "apply → Ready", "submit_to_running"),
    ("*", "apply_to_succeeded", "apply → Succeeded", "submit_to_completed"),
    ("*", "apply_to_job_running", "  apply → its job RUNNING (squeue)", "submit_to_running"),
    ("*", "running_after_job_running", "  Running reported after job RUNNING", None),
    ("*", "apply_to_job_completed", "  apply → its job COMPLETED (squeue)", "submit_to_completed"),
    ("*", "succeeded_after_job_completed", "  Succeeded reported after job COMPLETED", None),
    ("*", "delete_to_job_gone", "delete → job gone", "cancel_to_gone"),
    ("*", "delete_to_pod_gone", "delete → pod object gone", "cancel_to_gone"),
)


def print_table(report: dict[str, Any]) -> None:
    lat = report["latency_seconds"]
    s = report["settings"]
    print(f"{report['pods']} pods and {report['delete_pods']} deletions per mode and round, {report['rounds']} "
          f"round(s); jobs sleep {report['sleep_seconds']:g} s + 0-{report['sleep_spread_seconds']:g} s; API "
          f"poll_interval {s['api_poll_interval']:g} s, vk status_interval {s['vk_status_interval']:g} s, change "
          f"feed {'on' if s['change_feed'] else 'off'} "
          f"({'shipped defaults' if s['shipped_defaults'] else 'set'}"
          f"); {report['jobs_held_at_start']} jobs held at start")
    print(f"{'mode':6} {'':44} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'n':>3}   vs SLURM (p50: ratio, over)")
    for mode in report["modes"]:
        for row_mode, key, label, ref in ROWS:
            if row_mode not in (mode, "*") or (row_mode == "*" and mode == "raw") or key not in lat[mode]:
                continue
            q = lat[mode][key]
            cell = "" if q["p50"] is None else f"{q['p50']:>7.2f} {q['p95']:>7.2f} {q['max']:>7.2f}"
            extra = ""
            ref_q = lat.get("raw", {}).get(ref or "", {})
            if ref and q["p50"] is not None and ref_q.get("p50"):
                extra = f"   {q['p50'] / ref_q['p50']:.1f}x, {q['p50'] - ref_q['p50']:+.2f} s"
            print(f"{mode:6} {label:44} {cell:>23} {q['n']:>3}{extra}")
        if mode != "raw":
            print(f"{mode:6} {'  pods seen Running (not straight Succeeded)':44} "
                  f"{report['seen_running'][mode]:>23} of {report['pods'] * report['rounds']}")
    for mode, rows in report["versus_slurm"].items():
        targets = rows["targets"]
        over, absolute = targets["apply_to_running_p50_over_slurm"], targets["apply_to_running_p50"]
        print(f"target {mode}: apply → Running p50 within {over['target']:g} s of SLURM's start: here "
              f"{seconds(over['here'], '+')} ({'met' if over['met'] else 'not met'}); at most "
              f"{absolute['target']:g} s: here {seconds(absolute['here'])} ({'met' if absolute['met'] else 'not met'})")


def seconds(value: float | None, sign: str = "") -> str:
    return "-" if value is None else f"{value:{sign}.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=20, help="pods (and raw jobs) per mode and round")
    parser.add_argument("--delete-pods", type=int, help="long pods deleted per mode and round (default: --pods)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of all modes, each starting with another")
    parser.add_argument("--modes", default=",".join(MODES), help="which of raw,mode2,mode1, in this order")
    parser.add_argument("--sleep", type=float, default=8.0, help="seconds each job sleeps (long enough that the "
                        "shipped 5 s status rounds see most pods Running)")
    parser.add_argument("--sleep-spread", type=float, default=2.0, help="each job sleeps --sleep plus a random "
                        "0 to this many seconds (the same lengths in every mode), so that its end does not fall at a "
                        "fixed phase of the polls that started it")
    parser.add_argument("--api-poll-interval", type=float, help="the API's poll_interval (default: shipped)")
    parser.add_argument("--vk-status-interval", type=float, help="the vk's status_interval (default: shipped)")
    parser.add_argument("--feed", choices=("on", "off"), default="on", help="the vk's change feed (`api.changes`; "
                        "on: the shipped default; off: only the periodic /status rounds, as before issue 13)")
    parser.add_argument("--squeue-period", type=float, default=0.02, help="raw: squeue polled this often")
    parser.add_argument("--job-watch-period", type=float, default=0.1, help="modes: the pods' jobs polled this often")
    parser.add_argument("--seed", type=int, default=1, help="of the random 0-1 s pauses before each submission")
    add_cluster_options(parser)
    args = parser.parse_args()
    args.modes = tuple(m for m in args.modes.split(",") if m)
    args.feed = args.feed == "on"
    if unknown := set(args.modes) - set(MODES):
        parser.error(f"unknown modes {sorted(unknown)}; known: {','.join(MODES)}")
    if args.delete_pods is None:
        args.delete_pods = args.pods
    lengths = random.Random(args.seed + 1)  # noqa: S311 - the same job lengths in every run and mode
    args.lengths = [round(args.sleep + lengths.uniform(0, args.sleep_spread), 2) for _ in range(args.pods)]
    cluster = cluster_of(args)
    was_down = not any(cluster.status().values())
    cluster.up()
    work = Path(tempfile.mkdtemp(prefix="slurmlink-start-latency-"))
    try:
        report = run(cluster, args, work)
    finally:
        with contextlib.suppress(BenchError, subprocess.SubprocessError):
            Slurm(cluster, cluster.users[0]).drain()
        if was_down:
            cluster.down()
    report["dev_cluster"] = "stopped again (it was down)" if was_down else "left up (it was up)"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print("load average by phase: " + "; ".join(f"{x['mode']} {x['start']} → {x['end']}"
                                                 for x in report["loadavg_by_phase"]))
    print(f"\nresults: {RESULTS}; logs: {work}; dev cluster {report['dev_cluster']}")


if __name__ == "__main__":
    main()
