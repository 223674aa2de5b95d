"""How a pod and its SLURM job find each other, after any restart, from what SLURM alone stores.

| what | value |
|---|---|
| job name | `slurmlink-<pod uid>` |
| job comment | `<namespace>/<pod name>` (for people reading squeue; it also names the pod when a job is adopted) |
| working directory | `<job_root>/<namespace>-<pod uid>` |
"""

from __future__ import annotations

from typing import TypeGuard

# Job names carry the pod UID so that SLURM alone tells which job belongs to which pod.
JOB_NAME_PREFIX = "slurmlink-"


def job_name(uid: str) -> str:
    return JOB_NAME_PREFIX + uid


def is_job_name(name: object) -> TypeGuard[str]:
    """Whether a job name is one slurmlink gives (the job may still be someone else's: check the owner)."""
    return isinstance(name, str) and name.startswith(JOB_NAME_PREFIX)


def uid_of(name: str) -> str:
    """The pod UID in a job name of ours."""
    return name[len(JOB_NAME_PREFIX):]


def job_comment(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def pod_of(comment: str) -> tuple[str, str]:
    """(namespace, pod name) from a job comment of ours."""
    namespace, _, name = comment.partition("/")
    return namespace, name


def pod_workdir(job_root: str, namespace: str, uid: str) -> str:
    """The pod's working directory: a direct child of the job root."""
    return f"{job_root.rstrip('/')}/{namespace}-{uid}"
