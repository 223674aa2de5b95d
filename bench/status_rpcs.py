"""Benchmark (not a test): what keeping 200 pods' status costs SLURM, per status interval, in mode 1 and mode 2.

For each mode, `--pods` pods that sleep for longer than the run are sent to a `slurmlink api` (mode 2: `cli`
backend; mode 1: `rest` backend through `slurmlink proxy`, with a service identity, to the dev cluster's
slurmrestd). Once every pod is known, the run waits `--intervals` poll intervals and reports, per interval:

- slurmctld's RPCs, by message type, from `sdiag` (counted before and after: only this bench talks to the
  dev cluster meanwhile, apart from slurmd's own RPCs, which are reported separately);
- in mode 1, the requests that reached the proxy, by route and HTTP status (200 vs 304 for the job list);
- the API's polls and SLURM commands (mode 2), from its /metrics.

    .venv/bin/python bench/status_rpcs.py            # as root; about 2 minutes
    .venv/bin/python bench/status_rpcs.py --pods 50 --intervals 5
    .venv/bin/python bench/status_rpcs.py --slurm 24.11   # the 24.11 dev cluster (docs/dev-cluster.md)

Results go to bench/results/status_rpcs.json (git-ignored). Check-in is the stand-in in standins/checkin.py.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
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
    free_port,
    proxy_config,
    proxy_service,
    sticky_job_root,
    wait_until,
)
from slurmlink.devcluster import DevCluster  # noqa: E402
from slurmlink.devcluster.cluster import REST_VERSIONS_OF, default_cluster  # noqa: E402
from slurmlink.wire.interlink import parse_statuses  # noqa: E402
from slurmlink.wire.names import TOKEN_SECRET_ANNOTATION  # noqa: E402
from standins.checkin import CheckinStandin  # noqa: E402

RESULTS = REPO / "bench" / "results" / "status_rpcs.json"
_RPC = re.compile(r"^\s+([A-Z_]+)\s+\(\s*\d+\)\s+count:(\d+)")
VO = "vo.example.org"  # the stand-in's users are members of it by default
TOKEN_SECRET = "checkin-token"  # noqa: S105 - a Secret's name
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


def rpc_counts(cluster: DevCluster) -> dict[str, int]:
    """slurmctld's RPC counts by message type (sdiag's first table)."""
    out = subprocess.run(["sdiag"], env={**os.environ, **cluster.env}, capture_output=True, text=True,
                         check=True, timeout=30).stdout
    section = out.split("Remote Procedure Call statistics by message type", 1)[1].split("by user", 1)[0]
    return {m.group(1): int(m.group(2)) for line in section.splitlines() if (m := _RPC.match(line))}


def proxy_counts(url: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("slurmlink_proxy_requests_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = f"{labels.get('route')} -> {labels.get('status')}"
            counts[key] = counts.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def api_counts(api: Service) -> dict[str, float]:
    return {"polls": api.metric("slurmlink_api_poll_seconds_count"),
            "slurm_commands": api.metric("slurmlink_slurm_commands_total")}


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


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


def measure(cluster: DevCluster, api: Service, client: Client, pods: list[dict[str, Any]], intervals: int,
            interval: float, proxy_url: str | None) -> dict[str, Any]:
    for pod in pods:
        response = client.create(pod)
        if response.status_code != 200:
            raise SystemExit(f"/create failed: {response.status_code} {response.text[:300]}")
    wait_until(lambda: all(client.has_job(p) for p in pods[-5:]), 120, "the last pods to have jobs", 0.2)
    time.sleep(2 * interval)  # the submit burst is over
    rpc0, api0 = rpc_counts(cluster), api_counts(api)
    proxy0 = proxy_counts(proxy_url) if proxy_url else {}
    started = time.monotonic()
    while time.monotonic() - started < intervals * interval:
        client.http.request("GET", "/status", content=json.dumps(pods))  # what a virtual kubelet does
        time.sleep(interval)
    elapsed = time.monotonic() - started
    rpcs = delta(rpc_counts(cluster), rpc0)
    node = {k: v for k, v in rpcs.items() if k in NODE_RPCS}
    asked = {k: v for k, v in rpcs.items() if k not in NODE_RPCS}
    polls = delta(api_counts(api), api0).get("polls", 0)
    per = elapsed / interval
    return {
        "pods": len(pods), "intervals": round(per, 1), "polls": polls,
        "rpcs_per_interval": round(sum(asked.values()) / per, 2),
        "rpcs_by_type": asked, "node_rpcs": node,
        "proxy_requests": delta(proxy_counts(proxy_url), proxy0) if proxy_url else None,
        "api": delta(api_counts(api), api0),
    }


def cancel_all(cluster: DevCluster, users: list[str]) -> None:
    for user in users:
        subprocess.run(["scancel", "-u", user], env={**os.environ, **cluster.env}, capture_output=True, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--intervals", type=int, default=10)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--slurm", default="22.05", choices=sorted(REST_VERSIONS_OF),
                        help="the release's default dev cluster (started if down)")
    args = parser.parse_args()
    cluster = default_cluster(args.slurm)
    cluster.up()
    user = cluster.users[0]
    work = Path(tempfile.mkdtemp(prefix="slurmlink-status-rpcs-"))
    report: dict[str, Any] = {"when": datetime.now(UTC).isoformat(), "poll_interval": args.poll_interval,
                              "slurm": args.slurm}
    seconds = int(args.intervals * args.poll_interval * 3 + 120)

    (work / "mode2").mkdir()
    api = api_service(api_config(cluster, user, args.poll_interval, free_port()), work / "mode2")
    try:
        report["mode2"] = measure(cluster, api, Client(api.url), sleeping_pods(args.pods, seconds),
                                  args.intervals, args.poll_interval, None)
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
                        rest={"url": proxy.url, "service_token_file": str(token_file)})
    api = api_service(config, work / "mode1")
    try:
        client = Client(api.url, checkin.mint(subject, lifetime=7200))
        report["mode1"] = measure(cluster, api, client, sleeping_pods(args.pods, seconds), args.intervals,
                                  args.poll_interval, proxy.url)
    finally:
        api.stop()
        proxy.stop()
        checkin.stop()
        cancel_all(cluster, [user])

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"{'mode':6} {'pods':>5} {'intervals':>9} {'polls':>6} {'SLURM RPCs/interval':>20}  by type")
    for mode in ("mode2", "mode1"):
        r = report[mode]
        print(f"{mode:6} {r['pods']:>5} {r['intervals']:>9} {r['polls']:>6} {r['rpcs_per_interval']:>20}  "
              f"{r['rpcs_by_type']}")
    print("mode1 proxy requests:", report["mode1"]["proxy_requests"])
    print(f"results: {RESULTS}; logs: {work}")


if __name__ == "__main__":
    main()
