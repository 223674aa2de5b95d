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
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.services and the kube-apiserver stand-in (standins/) are not installed

from bench.services import KUBECTL, add_cluster_options, cluster_of, pod_on, running_pod, step_argv  # noqa: E402

RESULTS = REPO / "bench" / "results" / "exec_latency.json"
NODE = "bench-exec-node"
POD = "exec-bench"


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
    with running_pod(cluster, NODE, pod_on(NODE, POD, ["sleep", "3600"])) as pod:
        prefixes = {"direct": (step_argv(pod.job), pod.slurm_env),
                    "kubectl": ([str(KUBECTL), "exec", "-i", POD, "--"], pod.kube_env)}
        order = ["direct", "kubectl", "kubectl", "direct"]
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in prefixes}
        for name in order:
            runs[name].append(phase(*prefixes[name], args.execs, args.megabytes))
            print(f"{name:>8}: {runs[name][-1]}", flush=True)
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
