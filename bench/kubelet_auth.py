"""Benchmark (not a test) of issue 9, item 1: what authenticating and authorising every request costs the vk's
kubelet endpoint.

The Kubernetes stand-in (in this process) and `slurmlink vk` (a process; no interLink API is needed: the vk only
logs that it cannot ping one). One keep-alive HTTPS client asks `GET /runningpods/` `--requests` times, one
after another, in each of four configurations of the endpoint:

- `always-allow`: a client certificate, `authorization.mode: AlwaysAllow` (no review at all): the baseline;
- `cert-cached`: a client certificate, SubjectAccessReview with the default caches (one review, then cached);
- `cert-uncached`: the same with `cache_authorized_ttl_seconds: 0`: one SubjectAccessReview per request;
- `token-uncached`: a bearer token, both caches at 0: a TokenReview and a SubjectAccessReview per request.

The phases run in ABBA order (each configuration twice, a new vk each time) and are averaged, so a drift of the
machine's load cancels. The stand-in runs in this process and shares its CPU with the client: the uncached
numbers include the stand-in's own cost of a review, which a real apiserver pays elsewhere.

    .venv/bin/python bench/kubelet_auth.py                  # about 1 minute on 2 cores
    .venv/bin/python bench/kubelet_auth.py --requests 200   # a quick try

Results go to bench/results/kubelet_auth.json (git-ignored). See bench/README.md. Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.services and the kube-apiserver stand-in (standins/) are not installed

import httpx  # noqa: E402

from bench.services import client_context, node_kubeconfig, vk_config, vk_service  # noqa: E402
from standins.kube import KubeStandin  # noqa: E402

RESULTS = REPO / "bench" / "results" / "kubelet_auth.json"
NODE = "slurmlink-bench-node"
TOKEN = "bench-token"  # noqa: S105 - a stand-in token
CONFIGS: dict[str, dict[str, Any]] = {
    "always-allow": {"authorization": {"mode": "AlwaysAllow"}},
    "cert-cached": {},
    "cert-uncached": {"authorization": {"cache_authorized_ttl_seconds": 0}},
    "token-uncached": {"authorization": {"cache_authorized_ttl_seconds": 0},
                       "authentication": {"webhook": {"cache_ttl_seconds": 0}}},
}


def phase(standin: KubeStandin, work: Path, name: str, requests: int) -> dict[str, float]:
    config = vk_config(standin, NODE, node_kubeconfig(standin, work / "node.kubeconfig", NODE), "http://127.0.0.1:9",
                       workers=4, status_interval=0.5, ping_interval=60.0, lease_duration_seconds=10,
                       missing_reference_timeout=6, watch_timeout_seconds=30)
    extra = CONFIGS[name]
    if "authorization" in extra:
        config["kubelet"]["authorization"] = extra["authorization"]
    config["kubelet"]["authentication"].update(extra.get("authentication", {}))
    # /metrics: /healthz waits for an interLink API there is none of
    vk = vk_service(config, work, standin.kubelet_client_cert, ready_path="/metrics")
    try:
        token = name.startswith("token")
        client_cert = None if token else standin.kubelet_client_cert
        headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
        with httpx.Client(base_url=vk.url, verify=client_context(client_cert), headers=headers,
                          timeout=10) as client:
            assert client.get("/runningpods/").status_code == 200  # the connection, and a first review
            latencies = []
            started = time.perf_counter()
            for _ in range(requests):
                before = time.perf_counter()
                answer = client.get("/runningpods/")
                latencies.append(time.perf_counter() - before)
                assert answer.status_code == 200, answer.text
            elapsed = time.perf_counter() - started
    finally:
        vk.stop()
    latencies.sort()
    return {"requests_per_second": requests / elapsed, "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    order = [*CONFIGS, *reversed(CONFIGS)]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    with (tempfile.TemporaryDirectory(prefix="slbench-kubelet-auth-") as tmp,
          KubeStandin(Path(tmp) / "standin") as standin):
        standin.add_user_token(TOKEN, "bench-reader")
        standin.grant("user:bench-reader", ("get",), ("nodes/pods",))
        for index, name in enumerate(order):
            work = Path(tmp) / f"{index}-{name}"
            work.mkdir()
            runs[name].append(phase(standin, work, name, args.requests))
            print(f"{name:>15}: {runs[name][-1]}", flush=True)
    report = {name: {key: statistics.mean(run[key] for run in phases) for key in phases[0]}
              for name, phases in runs.items()}
    print(f"\n{'configuration':>15} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for name, numbers in report.items():
        print(f"{name:>15} {numbers['requests_per_second']:8.0f} {numbers['p50_ms']:8.2f} {numbers['p95_ms']:8.2f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"requests": args.requests, "order": order, "runs": runs, "mean": report},
                                  indent=2))


if __name__ == "__main__":
    main()
