"""Where a job keeps things in the pod's working directory: one place for the script and its readers.

    <workdir>/job.out                      the job script's own output (not a container's)
    <workdir>/pod.json                     the pod as submitted, for people debugging at the site
    <workdir>/logs/<container>.log         a container's stdout and stderr, byte for byte
    <workdir>/status/<container>.started   UTC start time (RFC 3339), written when the container starts
    <workdir>/status/<container>.exit      exit code, written atomically when it ends
    <workdir>/status/<container>.finished  UTC end time
    <workdir>/status/<container>.reason    why it ended, when not by itself (DeadlineExceeded, Killed)
    <workdir>/status/<container>.restarts  how often it was restarted (restartPolicy OnFailure)
    <workdir>/volumes/<volume>/...         the pod's volumes (configMap, secret, emptyDir, ...)
"""

from __future__ import annotations

from datetime import datetime

from slurmlink.slurm.base import ContainerRecord

JOB_OUT = "job.out"
POD_FILE = "pod.json"
LOGS_DIR = "logs"
STATUS_DIR = "status"
VOLUMES_DIR = "volumes"
STATUS_SUFFIXES = ("started", "exit", "finished", "reason", "restarts")


def log_path(workdir: str, container: str) -> str:
    return f"{workdir}/{LOGS_DIR}/{container}.log"


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def container_records(files: dict[str, str]) -> dict[str, ContainerRecord]:
    """Build records from the status directory's files ({"c1.exit": "3\\n", ...})."""
    fields: dict[str, dict[str, str]] = {}
    for filename, content in files.items():
        container, _, suffix = filename.rpartition(".")
        if container and suffix in STATUS_SUFFIXES:
            fields.setdefault(container, {})[suffix] = content
    records = {}
    for container, f in fields.items():
        records[container] = ContainerRecord(
            name=container,
            started_at=parse_time(f["started"]) if "started" in f else None,
            finished_at=parse_time(f["finished"]) if "finished" in f else None,
            exit_code=parse_int(f["exit"]) if "exit" in f else None,
            reason=f.get("reason", "").strip(),
            restarts=parse_int(f.get("restarts", "0")) or 0,
        )
    return records
