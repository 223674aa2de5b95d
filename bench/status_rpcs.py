"""Benchmark (not a test): what keeping 200 pods' status costs SLURM, per status interval, in mode 1 and mode 2.

For each mode, `--pods` pods that sleep for longer than the run are sent to a `slurmlink api` (mode 2: `cli`
backend; mode 1: `rest` backend through `slurmlink proxy`, with a service identity, to the dev cluster's
slurmrestd). Once every pod is known, the run waits `--intervals` poll intervals and reports, per interval:

- slurmctld's RPCs, by message type and by user, from `sdiag` (counted before and after; the bench runs sdiag
  as a user of its own, so the by-user count of the API's status queries is not blurred by the bench, by
  slurmd's own RPCs or by other traffic on the cluster);
- in mode 1, the requests that reached the proxy, by route and HTTP status (200 vs 304 for the job list);
- the API's polls and SLURM commands (mode 2), from its /metrics.

    .venv/bin/python bench/status_rpcs.py            # as root; about 2 minutes
    .venv/bin/python bench/status_rpcs.py --pods 50 --intervals 5
    .venv/bin/python bench/status_rpcs.py --slurm 24.11   # the 24.11 dev cluster (docs/dev-cluster.md)

Before that, the submissions themselves are the burst: from the first /create until the API's polls are back
to one per interval (its hurried polls, `poll_interval_fast` and backing off, while jobs wait to start), the
same counts are taken, so the report also says what a burst of `--pods` submissions costs SLURM.

Results go to bench/results/status_rpcs.json (git-ignored). Check-in is the stand-in in standins/checkin.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pwd
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.services and the Check-in stand-in (standins/) are not installed

import httpx  # noqa: E402

from bench.services import (  # noqa: E402
    Service,
    api_config,
    api_service,
    cluster_of,
    free_port,
    proxy_config,
    proxy_service,
    sticky_job_root,
    wait_until,
)
from slurmlink.api.config import ApiConfig  # noqa: E402
from slurmlink.devcluster import DevCluster  # noqa: E402
from slurmlink.devcluster.cluster import REST_VERSIONS_OF, default_cluster  # noqa: E402
from slurmlink.wire.interlink import parse_statuses  # noqa: E402
from slurmlink.wire.names import TOKEN_SECRET_ANNOTATION  # noqa: E402
from standins.checkin import CheckinStandin  # noqa: E402

RESULTS = REPO / "bench" / "results" / "status_rpcs.json"
_RPC = re.compile(r"^\s+([A-Za-z0-9_.-]+)\s+\(\s*\d+\)\s+count:(\d+)")  # a message type or a user
VO = "vo.example.org"  # the stand-in's users are members of it by default
TOKEN_SECRET = "checkin-token"  # noqa: S105 - a Secret's name
POLLS = "slurmlink_api_poll_seconds_count"  # the API's polls so far
BUDGET_RPCS, BUDGET_SECONDS = 2, 5.0  # issue 13: at most two SLURM RPCs per 5 s at steady state, 200 pods
NODE_RPCS = frozenset({"MESSAGE_NODE_REGISTRATION_STATUS", "REQUEST_COMPLETE_BATCH_SCRIPT", "MESSAGE_EPILOG_COMPLETE",
                       "REQUEST_STEP_COMPLETE", "REQUEST_COMPLETE_PROLOG"})


class Client:
    """Sends pods to the API as a vk does; with `token`, each pod carries its user's Check-in token in a Secret,
    as users' pods do in mode 1."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.token = token

    def create(self, pod: dict[str, Any]) -> httpx.Response:
        secrets = []
        if self.token is not None:
            pod["metadata"].setdefault("annotations", {})[TOKEN_SECRET_ANNOTATION] = TOKEN_SECRET
            secrets.append({"metadata": {"name": TOKEN_SECRET, "namespace": pod["metadata"]["namespace"]},
                            "type": "Opaque",
                            "data": {"access_token": base64.b64encode(self.token.encode()).decode()}})
        body = {"pod": pod, "configmaps": None, "secrets": secrets, "projectedvolumesmaps": None, "jobscriptURL": ""}
        return self.http.post("/create", content=json.dumps(body))

    def has_job(self, pod: dict[str, Any]) -> bool:
        response = self.http.request("GET", "/status", content=json.dumps([pod]))
        response.raise_for_status()
        return bool(parse_statuses(response.json())[0].jid)


def rpc_counts(cluster: DevCluster) -> dict[str, dict[str, int]]:
    """slurmctld's RPC counts by message type and by user (sdiag's two tables), read as bench_user(): the
    bench's own REQUEST_STATS_INFO falls on a user no service uses."""
    return parse_sdiag(subprocess.run(["runuser", "-u", bench_user(cluster), "--", "sdiag"],
                                      env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True,
                                      timeout=30).stdout)


def parse_sdiag(out: str) -> dict[str, dict[str, int]]:
    """sdiag's RPC counts: {"type": {message type: count}, "user": {user: count}}."""
    by_type, rest = out.split("Remote Procedure Call statistics by message type", 1)[1].split("by user", 1)
    by_user = rest.split("Pending RPC", 1)[0]
    def table(section: str) -> dict[str, int]:
        return {m.group(1): int(m.group(2)) for line in section.splitlines() if (m := _RPC.match(line))}
    return {"type": table(by_type), "user": table(by_user)}


def bench_user(cluster: DevCluster) -> str:
    """The cluster's test user that neither the pods (users[0]) nor mode 1's service identity (users[2]) is."""
    return cluster.users[1]


def proxy_counts(url: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("slurmlink_proxy_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = f"{labels.get('route')} -> {labels.get('status')}"
            counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def polls_done(api: Service, count: float, timeout: float) -> float:
    """Wait until the API has polled `count` times (its poll count, read every 50 ms)."""
    return wait_until(lambda: (polls := api.metric(POLLS)) >= count and polls, timeout, f"poll {count:g}", 0.05)


def api_counts(api: Service) -> dict[str, float]:
    return {"polls": api.metric(POLLS), "poll_seconds": api.metric("slurmlink_api_poll_seconds_sum"),
            "slurm_commands": api.metric("slurmlink_slurm_commands_total")}


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def rpc_delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, Any]:
    """RPCs between two sdiag readings: by type (slurmd's own apart) and by user."""
    by_type = delta(after["type"], before["type"])
    return {"by_type": {k: v for k, v in by_type.items() if k not in NODE_RPCS},
            "node_rpcs": {k: v for k, v in by_type.items() if k in NODE_RPCS},
            "by_user": delta(after["user"], before["user"])}


@dataclass
class Users:
    """Whose RPCs are whose: the user the API's status queries run as (mode 2: the API's own account, here
    root; mode 1: the proxy's service identity), the pods' user (their submissions) and the bench's (sdiag)."""

    status: str
    pods: str
    bench: str


def api_rpcs(rpcs: dict[str, Any], users: Users) -> float:
    """The status queries' RPCs: those of their user; in mode 2 that user is root, as is slurmd (its RPCs,
    counted by type, are taken out)."""
    count = rpcs["by_user"].get(users.status, 0)
    if users.status == "root":
        count -= sum(rpcs["node_rpcs"].values())
    return count


def sleeping_pods(n: int, seconds: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pods = []
    for _ in range(n):
        container = {"name": "main", "image": "docker.io/library/debian:bookworm", "command": ["sleep", str(seconds)],
                     "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}}}
        uid = str(uuid.uuid4())
        pods.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"rpc-{uid[:8]}", "namespace": "default", "uid": uid,
                                  "creationTimestamp": now},
                     "spec": {"restartPolicy": "Never", "containers": [container]}})
    return pods


def polls_back_to_interval(api: Service, interval: float, since: float) -> tuple[float, list[float]]:
    """Watch the API's poll count (every 50 ms) from `since` until no poll came for 0.9 × interval: the hurried
    polls are over. Returns when the last one was seen and when each was seen (time.monotonic())."""
    count, last, seen = api.metric(POLLS), since, []
    while True:
        now = time.monotonic()
        if (polls := api.metric(POLLS)) != count:
            count, last = polls, now
            seen.append(now)
        elif now - last >= 0.9 * interval:
            return last, seen
        time.sleep(0.05)


def burst(cluster: DevCluster, api: Service, client: Client, pods: list[dict[str, Any]], interval: float,
          users: Users, proxy_url: str | None) -> dict[str, Any]:
    """Send every pod at once (one client, one after another) and count what that costs SLURM until the API's
    polls are back to one per interval."""
    rpc0, api0 = rpc_counts(cluster), api_counts(api)
    proxy0 = proxy_counts(proxy_url) if proxy_url else {}
    started = time.monotonic()
    for pod in pods:
        response = client.create(pod)
        if response.status_code != 200:
            raise SystemExit(f"/create failed: {response.status_code} {response.text[:300]}")
    sent = time.monotonic()
    last_poll, poll_times = polls_back_to_interval(api, interval, sent)
    rpcs = rpc_delta(rpc_counts(cluster), rpc0)
    polls = delta(api_counts(api), api0).get("polls", 0)
    wait_until(lambda: all(client.has_job(p) for p in pods[-5:]), 120, "the last pods to have jobs", 0.2)
    gaps = [round(b - a, 2) for a, b in zip([sent, *poll_times], poll_times, strict=False) if b >= sent]
    return {
        "pods": len(pods), "submit_seconds": round(sent - started, 2),
        "seconds": round(last_poll - started, 2),  # first /create → the last hurried poll
        "polls": polls, "poll_gaps_after_last_create": gaps,
        "status_rpcs": api_rpcs(rpcs, users), "submit_rpcs": rpcs["by_user"].get(users.pods, 0),
        "rpcs_by_type": rpcs["by_type"], "rpcs_by_user": rpcs["by_user"], "node_rpcs": rpcs["node_rpcs"],
        "proxy_requests": delta(proxy_counts(proxy_url), proxy0) if proxy_url else None,
        "api": delta(api_counts(api), api0),
    }


def measure(cluster: DevCluster, api: Service, client: Client, pods: list[dict[str, Any]], intervals: int,
            interval: float, proxy_url: str | None, users: Users) -> dict[str, Any]:
    burst_report = burst(cluster, api, client, pods, interval, users, proxy_url)
    # From just after one poll to just after the `intervals`-th poll after it: whole poll periods, so that one
    # poll more or less at the window's edges does not count as 10% more or less.
    first = polls_done(api, api.metric(POLLS) + 1, 3 * interval)
    rpc0, api0 = rpc_counts(cluster), api_counts(api)
    proxy0 = proxy_counts(proxy_url) if proxy_url else {}
    started = next_status = time.monotonic()
    while api.metric(POLLS) < first + intervals:
        if time.monotonic() >= next_status:
            client.http.request("GET", "/status", content=json.dumps(pods))  # what a virtual kubelet does
            next_status += interval
        time.sleep(0.05)
        if time.monotonic() - started > 3 * intervals * interval:
            raise SystemExit(f"the API polled fewer than {intervals} times in {3 * intervals} intervals")
    elapsed = time.monotonic() - started
    rpcs = rpc_delta(rpc_counts(cluster), rpc0)
    polls = delta(api_counts(api), api0).get("polls", 0)
    per = elapsed / interval
    steady = api_rpcs(rpcs, users) / per
    # what the burst cost over what the same time at steady state would have
    burst_report["status_rpcs_over_steady"] = round(
        burst_report["status_rpcs"] - steady * burst_report["seconds"] / interval, 1)
    return {
        "pods": len(pods), "intervals": round(per, 1), "polls": polls,
        "rpcs_per_interval": round(steady, 2), "status_user": users.status,
        # the budget (issue 13): at most BUDGET_RPCS per BUDGET_SECONDS at steady state
        "rpcs_per_budget_window": round(steady * BUDGET_SECONDS / interval, 2),
        "all_rpcs_per_interval": round(sum(rpcs["by_type"].values()) / per, 2),
        "rpcs_by_type": rpcs["by_type"], "rpcs_by_user": rpcs["by_user"], "node_rpcs": rpcs["node_rpcs"],
        "proxy_requests": delta(proxy_counts(proxy_url), proxy0) if proxy_url else None,
        "api": delta(api_counts(api), api0),
        "burst": burst_report,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def cancel_all(cluster: DevCluster, users: list[str]) -> None:
    for user in users:
        subprocess.run(["scancel", "-u", user], env={**os.environ, **cluster.env}, capture_output=True, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--intervals", type=int, default=10)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--poll-interval-fast", type=float, help="the API's poll_interval_fast (default: shipped)")
    parser.add_argument("--slurm", default="22.05", choices=sorted(REST_VERSIONS_OF),
                        help="the release's default dev cluster (started if down)")
    parser.add_argument("--state-dir", type=Path, help="another dev cluster's state directory (e.g. a test "
                        "cluster of one's own; then --ports, and --slurm is not used)")
    parser.add_argument("--ports", default="6820,6817,6818", help="its slurmrestd,slurmctld,slurmd ports")
    args = parser.parse_args()
    cluster = cluster_of(args) if args.state_dir else default_cluster(args.slurm)
    cluster.up()
    user = cluster.users[0]
    fast = {"poll_interval_fast": args.poll_interval_fast} if args.poll_interval_fast else {}
    work = Path(tempfile.mkdtemp(prefix="slurmlink-status-rpcs-"))
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(), "poll_interval": args.poll_interval,
                              "poll_interval_fast": args.poll_interval_fast or
                              ApiConfig.model_fields["poll_interval_fast"].default,
                              "slurm": cluster.slurm, "state_dir": str(cluster.state_dir),
                              "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3]}
    me = pwd.getpwuid(os.getuid()).pw_name  # the API's account: its squeue runs as it
    seconds = int(args.intervals * args.poll_interval * 3 + 120)

    (work / "mode2").mkdir()
    api = api_service(api_config(cluster, user, args.poll_interval, free_port(), **fast), work / "mode2")
    try:
        report["mode2"] = measure(cluster, api, Client(api.url), sleeping_pods(args.pods, seconds),
                                  args.intervals, args.poll_interval, None, Users(me, user, bench_user(cluster)))
    finally:
        api.stop()
        cancel_all(cluster, [user])

    checkin = CheckinStandin().start()
    subject, service = checkin.new_subject(), checkin.new_subject()
    (work / "mode1").mkdir()
    users_file = work / "mode1" / "users.txt"
    users_file.write_text(f"{checkin.issuer} {subject} {user}\n")
    job_root = sticky_job_root(cluster)
    proxy_settings = proxy_config(
        cluster, checkin.issuer, users_file, free_port(), VO, files={"job_root": str(job_root)},
        signals={"slurm_conf": str(cluster.conf_path),
                 "scancel": str(cluster.bin_dir / "scancel") if cluster.bin_dir else "scancel"},
        service_identities=[{"issuer": checkin.issuer, "subject": service, "account": cluster.users[2]}],
        state_dir=str(work / "mode1" / "proxy-state"))
    # /metrics: /healthz also needs slurmrestd
    proxy = proxy_service(proxy_settings, work / "mode1", ready_path="/metrics")
    token_file = work / "mode1" / "service.token"
    token_file.write_text(checkin.mint(service, lifetime=7200))
    config = api_config(cluster, user, args.poll_interval, free_port(), backend="rest", job_root=str(job_root),
                        rest={"url": proxy.url, "service_token_file": str(token_file)}, **fast)
    api = api_service(config, work / "mode1")
    try:
        client = Client(api.url, checkin.mint(subject, lifetime=7200))
        report["mode1"] = measure(cluster, api, client, sleeping_pods(args.pods, seconds), args.intervals,
                                  args.poll_interval, proxy.url, Users(cluster.users[2], user, bench_user(cluster)))
    finally:
        api.stop()
        proxy.stop()
        checkin.stop()
        cancel_all(cluster, [user])

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"steady state ({args.intervals} intervals of {args.poll_interval:g} s), SLURM RPCs of the status "
          "queries' user per interval:")
    print(f"{'mode':6} {'pods':>5} {'intervals':>9} {'polls':>6} {'RPCs/interval':>14} {'user':>8}  by type; by user")
    for mode in ("mode2", "mode1"):
        r = report[mode]
        print(f"{mode:6} {r['pods']:>5} {r['intervals']:>9} {r['polls']:>6} {r['rpcs_per_interval']:>14} "
              f"{r['status_user']:>8}  {r['rpcs_by_type']}; {r['rpcs_by_user']}")
    print("mode1 proxy requests:", report["mode1"]["proxy_requests"])
    for mode in ("mode2", "mode1"):
        per = report[mode]["rpcs_per_budget_window"]
        print(f"budget {mode}: at most {BUDGET_RPCS} RPCs per {BUDGET_SECONDS:g} s: here {per:g} "
              f"({'met' if per <= BUDGET_RPCS else 'not met'} at poll_interval {args.poll_interval:g} s)")
    print(f"the burst ({args.pods} /create one after another, until the polls are back to one per interval):")
    for mode in ("mode2", "mode1"):
        b = report[mode]["burst"]
        mean = b["api"].get("poll_seconds", 0) / b["polls"] if b["polls"] else 0
        print(f"{mode}: {b['seconds']} s ({b['submit_seconds']} s of submissions), {b['polls']:g} polls of "
              f"{mean:.2f} s on average, status "
              f"queries {b['status_rpcs']:g} RPCs ({b['status_rpcs_over_steady']:+g} over steady state), "
              f"submissions {b['submit_rpcs']:g} RPCs; by type {b['rpcs_by_type']}; poll gaps after the last create "
              f"{b['poll_gaps_after_last_create']}")
    print(f"load average: at start {' '.join(report['loadavg_at_start'])}, mode2 "
          f"{' '.join(report['mode2']['loadavg'])}, mode1 {' '.join(report['mode1']['loadavg'])}")
    print(f"results: {RESULTS}; logs: {work}")


if __name__ == "__main__":
    main()
