"""The two VOs of the site-policy tests (both modes): alpha on the dev cluster's default partition with a
per-user cap and a longest time (its managers may use both partitions), beta on its second partition with a
default memory per CPU."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from slurmlink.devcluster import DevCluster
from slurmlink.slurm.commands.jobcount import ACTIVE_STATES
from tests.harness.waiting import wait_until

ALPHA, BETA = "vo.alpha.example.org", "vo.beta.example.org"


def entitlements(*vos: str, role: str = "member") -> list[str]:
    return [f"urn:mace:egi.eu:group:{vo}:role={r}#aai.egi.eu" for vo in vos for r in dict.fromkeys(("member", role))]


def policy_config(cluster: DevCluster) -> dict[str, Any]:
    return {"vos": [
        {"vo": ALPHA, "role": "manager", "account": "alpha",
         "partitions": [cluster.partition, cluster.second_partition]},
        {"vo": ALPHA, "account": "alpha", "partitions": [cluster.partition], "default_time_minutes": 30,
         "max_time_minutes": 60, "max_jobs_per_user": 2},
        {"vo": BETA, "account": "beta", "partitions": [cluster.second_partition], "default_mem_per_cpu_mb": 256},
    ]}


def clear_accounts(cluster: DevCluster) -> None:
    """Cancel the jobs of the two VOs' accounts and wait until SLURM counts none: the caps count every job of
    the account, those other test modules left included."""
    env = {**os.environ, **cluster.env}
    subprocess.run(["scancel", "--account=alpha,beta"], env=env, check=False, timeout=30)

    def none_left() -> bool:
        out = subprocess.run(["squeue", "-h", "-a", "--account=alpha,beta", f"--states={ACTIVE_STATES}", "-o", "%i"],
                             env=env, capture_output=True, text=True, check=True, timeout=30).stdout
        return not out.strip()

    wait_until(none_left, 60, "no queued or running jobs under accounts alpha and beta")


def memory_per_cpu(cluster: DevCluster, job_id: str) -> str:
    """The job's MinMemoryCPU as scontrol shows it ("" when it has a total instead)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], env={**os.environ, **cluster.env},
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return next((w.partition("=")[2] for w in out.split() if w.startswith("MinMemoryCPU=")), "")
