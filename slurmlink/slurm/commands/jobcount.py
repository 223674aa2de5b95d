"""squeue counting the queued and running jobs under one account, per user: what a VO's job caps count
(slurmlink.sitepolicy). Every job of the account counts, slurmlink's or not: the cap is the allocation's."""

from __future__ import annotations

from collections import Counter

ACTIVE_STATES = "PENDING,RUNNING,SUSPENDED,CONFIGURING,REQUEUED,RESIZING"


def argv(account: str, squeue: str = "squeue") -> list[str]:
    # -a: hidden partitions too; %u: the job's user, one line per job
    return [squeue, "-h", "-a", f"--account={account}", f"--states={ACTIVE_STATES}", "-o", "%u"]


def parse(output: str) -> Counter[str]:
    """Jobs per user."""
    return Counter(line.strip() for line in output.splitlines() if line.strip())
