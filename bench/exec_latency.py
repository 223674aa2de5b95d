"""Benchmark (not a test) of issue 15, item 1: what `kubectl exec` into a running pod costs, against starting
the same job step directly.

The chain: the Kubernetes stand-in (in this process) → `slurmlink vk` → `slurmlink api` (mode 2, host runtime)
→ the dev cluster; kubectl talks WebSocket to the stand-in, which speaks SPDY/3.1 to the vk. The baseline is
what the API itself starts, run by hand: `runuser -u <user> -- srun --overlap --jobid=<job> ... -- <command>`.

- latency: `--execs` (20) runs of `true`, each a new kubectl (and a new step), p50 and p95;
- throughput: `--megabytes` (20) MB through stdin (`wc -c` counts them) and through stdout (`head -c`).

The phases run in ABBA order (direct, kubectl, kubectl, direct) and are averaged.

    .venv/bin/python bench/exec_latency.py                 # about 2 minutes on 2 cores
    .venv/bin/python bench/exec_latency.py --execs 5 --megabytes 5 \\
        --state-dir /var/lib/slurmlink/test-cluster-NAME --ports R,C,D   # a cluster of one's own

Results go to bench/results/exec_latency.json (git-ignored). See bench/README.md. Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.services and the kube-apiserver stand-in (standins/) are not installed

from bench.services import (  # noqa: E402
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
from standins.kube import KubeStandin  # noqa: E402

RESULTS = REPO / "bench" / "results" / "exec_latency.json"
KUBECTL = Path(sys.executable).parent / "kubectl"
NODE = "bench-exec-node"
USER = "sltest1"
POD = "exec-bench"


def _pod() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "namespace": "default"},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": NODE}, "restartPolicy": "Never",
                     "tolerations": [{"key": "virtual-node.interlink/no-schedule", "operator": "Exists",
                                      "effect": "NoSchedule"}],
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "main", "image": "debian", "command": ["sleep", "3600"]}]}}


def _timed(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[float, bytes]:
    start = time.perf_counter()
    result = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=300, check=True)
    return time.perf_counter() - start, result.stdout


def phase(prefix: list[str], env: dict[str, str], execs: int, megabytes: int) -> dict[str, float]:
    times = sorted(_timed([*prefix, "true"], env)[0] for _ in range(execs))
    size = megabytes * 1024 * 1024
    seconds, counted = _timed([*prefix, "wc", "-c"], env, b"\0" * size)
    assert int(counted) == size, counted
    out_seconds, out = _timed([*prefix, "head", "-c", str(size), "/dev/zero"], env)
    assert len(out) == size
    return {"p50_ms": statistics.median(times) * 1000, "p95_ms": times[int(0.95 * (len(times) - 1))] * 1000,
            "stdin_mb_per_s": megabytes / seconds, "stdout_mb_per_s": megabytes / out_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--execs", type=int, default=20)
    parser.add_argument("--megabytes", type=int, default=20)
    add_cluster_options(parser)
    args = parser.parse_args()
    cluster = cluster_of(args)
    cluster.up()
    with (tempfile.TemporaryDirectory(prefix="slbench-exec-") as tmp,
          KubeStandin(Path(tmp) / "standin") as standin):
        work = Path(tmp)
        for part in ("api", "vk"):
            (work / part).mkdir()
        api = api_service(api_config(cluster, USER, 0.5, free_port()), work / "api")
        kubeconfig = node_kubeconfig(standin, work / "node.kubeconfig", NODE)
        vk = vk_service(vk_config(standin, NODE, kubeconfig, api.url), work / "vk", standin.kubelet_client_cert)
        with api, vk:
            kube_env = {**os.environ, "KUBECONFIG": str(standin.kubeconfig), "KUBECACHEDIR": str(work / "cache")}
            subprocess.run([str(KUBECTL), "apply", "-f", "-"], input=json.dumps(_pod()).encode(), env=kube_env,
                           check=True, capture_output=True)
            def running() -> dict[str, Any]:
                found = standin.get("pods", POD, "default") or {}
                return found if (found.get("status") or {}).get("phase") == "Running" else {}

            uid = wait_until(running, 120, "the pod to run")["metadata"]["uid"]
            job = subprocess.run(["squeue", "--noheader", "--format=%i", "--name", f"slurmlink-{uid}"],
                                 capture_output=True, text=True, env=cluster.env, check=True).stdout.split()[0]
            direct = ["runuser", "-u", USER, "--", "srun", "--overlap", f"--jobid={job}", "--nodes=1",
                      "--ntasks=1", "--mem=0", "--quiet", "--"]
            prefixes = {"direct": (direct, {**os.environ, **cluster.env}),
                        "kubectl": ([str(KUBECTL), "exec", "-i", POD, "--"], kube_env)}
            order = ["direct", "kubectl", "kubectl", "direct"]
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in prefixes}
            for name in order:
                runs[name].append(phase(*prefixes[name], args.execs, args.megabytes))
                print(f"{name:>8}: {runs[name][-1]}", flush=True)
            subprocess.run([str(KUBECTL), "delete", "pod", POD, "--wait=false"], env=kube_env, capture_output=True)
    report = {name: {key: statistics.mean(run[key] for run in phases) for key in phases[0]}
              for name, phases in runs.items()}
    print(f"\n{'path':>8} {'p50 ms':>8} {'p95 ms':>8} {'in MB/s':>8} {'out MB/s':>8}")
    for name, numbers in report.items():
        print(f"{name:>8} {numbers['p50_ms']:8.0f} {numbers['p95_ms']:8.0f} {numbers['stdin_mb_per_s']:8.1f} "
              f"{numbers['stdout_mb_per_s']:8.1f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"execs": args.execs, "megabytes": args.megabytes, "order": order,
                                   "runs": runs, "mean": report, "load": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
