"""Job state (from SLURM) + container records (from the job's files) -> Kubernetes container statuses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from slurmlink.core.records import ContainerRecord, JobInfo
from slurmlink.core.states import WAITING_STATES
from slurmlink.core.states import is_finished as job_finished
from slurmlink.translate.podspec import app_containers, init_containers

# The job's probe and hook notes ride in each container status under this key, from the API to the vk, which
# turns them into Events and leaves the key out of what it writes to Kubernetes.
NOTES_KEY = "slurmlinkNotes"
# Why a container ended, when SLURM ended the job around it.
_STATE_REASONS = {
    "TIMEOUT": "DeadlineExceeded", "DEADLINE": "DeadlineExceeded", "OUT_OF_MEMORY": "OOMKilled",
    "CANCELLED": "Killed", "NODE_FAIL": "NodeFailure", "BOOT_FAIL": "NodeFailure", "PREEMPTED": "Preempted",
}


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_finished(job: JobInfo | None) -> bool:
    return job is not None and job_finished(job.state)


def _slurm_reason(job: JobInfo) -> str:
    return "" if job.reason in ("", "None") else job.reason


def _terminated(exit_code: int, reason: str, message: str = "", started: datetime | None = None,
                finished: datetime | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"exitCode": exit_code, "reason": reason}
    if message:
        state["message"] = message
    state["startedAt"] = rfc3339(started)
    state["finishedAt"] = rfc3339(finished)
    return {"terminated": state}


def _container_state(record: ContainerRecord | None, job: JobInfo | None) -> tuple[dict[str, Any], bool]:
    """(state, ready) of one container."""
    if job is None:
        return {"waiting": {"reason": "ContainerCreating", "message": "submitting the job to SLURM"}}, False
    finished = is_finished(job)
    if record is not None and record.exit_code is not None:
        if record.reason == "Killed" and not finished:
            # Stopped by the job's SIGTERM while SLURM's last word is that the job runs: SLURM is ending it
            # (cancel, requeue, preemption) and its next answer says which; a requeued pod must show Pending
            # again, never Failed on the way. Until then the container is stopping, not ended.
            return {"running": {"startedAt": rfc3339(record.started_at)}}, False
        reason = record.reason or ("Completed" if record.exit_code == 0 else "Error")
        if job.state == "OUT_OF_MEMORY" and record.exit_code != 0:
            reason = "OOMKilled"
        return _terminated(record.exit_code, reason, "", record.started_at, record.finished_at), False
    if record is not None and record.started_at is not None:
        if not finished:
            # a startup probe gates `started`, and readiness needs both (no probe: running is ready)
            ready = record.startup is not False and record.ready is not False
            return {"running": {"startedAt": rfc3339(record.started_at)}}, ready
        # The job ended while the container ran: SLURM killed it (time limit, cancel, node failure).
        code = 128 + job.signal if job.signal else (job.exit_code or 137)
        reason = _STATE_REASONS.get(job.state, "Error")
        message = f"SLURM job {job.job_id} ended {job.state} {_slurm_reason(job)}".strip()
        return _terminated(code, reason, message, record.started_at, job.end_time), False
    if finished:
        detail = _slurm_reason(job)
        message = f"SLURM job {job.job_id} ended {job.state}{': ' + detail if detail else ''} before this container ran"
        code = job.exit_code or 1
        return _terminated(code, _STATE_REASONS.get(job.state, "NotStarted"), message, None, job.end_time), False
    if record is not None and record.restarts and not finished:
        return {"waiting": {"reason": "CrashLoopBackOff",
                            "message": f"back-off restarting failed container {record.name}"}}, False
    if job.state in WAITING_STATES:
        detail = _slurm_reason(job) or ("Pending" if job.state == "PENDING" else "Requeued")
        return {"waiting": {"reason": detail, "message": f"SLURM job {job.job_id} is pending: {detail}"}}, False
    return {"waiting": {"reason": "PodInitializing", "message": f"SLURM job {job.job_id} is {job.state}"}}, False


def container_statuses(
    pod: Mapping[str, Any], job: JobInfo | None, records: Mapping[str, ContainerRecord]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(containers, initContainers) as Kubernetes ContainerStatus objects."""
    if job is not None and job.state in WAITING_STATES:
        records = {}  # left by a run SLURM requeued: the next run starts its containers afresh
    elif job is not None and not is_finished(job):
        # A requeued job running again: until its script clears them, the files are the earlier run's.
        records = {name: r for name, r in records.items() if not _from_earlier_run(r, job)}

    def status(container: Mapping[str, Any]) -> dict[str, Any]:
        name = str(container.get("name"))
        record = records.get(name)
        state, ready = _container_state(record, job)
        return {
            "name": name, "state": state, "lastState": _last_state(record), "ready": ready,
            "restartCount": record.restarts if record else 0, "image": str(container.get("image") or ""),
            "imageID": "", "started": "running" in state and (record is None or record.startup is not False),
            **({"containerID": f"slurm://{job.job_id}/{name}"} if job else {}),
            **({NOTES_KEY: [asdict(n) for n in record.notes]} if record and record.notes else {}),
        }

    return [status(c) for c in app_containers(pod)], [status(c) for c in init_containers(pod)]


def _from_earlier_run(record: ContainerRecord, job: JobInfo) -> bool:
    """A container that ended before the job (last) started ended in a run SLURM requeued."""
    return record.finished_at is not None and job.start_time is not None and record.finished_at < job.start_time


def _last_state(record: ContainerRecord | None) -> dict[str, Any]:
    if record is None or record.last is None:
        return {}
    last = record.last
    return _terminated(last.exit_code, "Completed" if last.exit_code == 0 else "Error", "", last.started_at,
                       last.finished_at)


def rejected_statuses(
    pod: Mapping[str, Any], reason: str, message: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Statuses of a pod that never became a job: every container terminated with the reason."""

    def status(container: Mapping[str, Any]) -> dict[str, Any]:
        return {"name": str(container.get("name")), "state": _terminated(1, reason, message),
                "lastState": {}, "ready": False, "restartCount": 0,
                "image": str(container.get("image") or ""), "imageID": "", "started": False}

    return [status(c) for c in app_containers(pod)], [status(c) for c in init_containers(pod)]


@dataclass(frozen=True)
class Phase:
    phase: str  # Pending, Running, Succeeded, Failed
    reason: str = ""
    message: str = ""


def pod_phase(containers: list[dict[str, Any]], init_containers_: list[dict[str, Any]]) -> Phase:
    """The pod's phase as the kubelet derives it from its containers' states."""
    for status in init_containers_:
        terminated = status["state"].get("terminated")
        if terminated and terminated["exitCode"] != 0:
            return Phase("Failed", terminated.get("reason", ""), terminated.get("message", ""))
        if not terminated:
            return Phase("Pending", status["state"].get("waiting", {}).get("reason", ""))
    states = [s["state"] for s in containers]
    if all("terminated" in s for s in states):
        failed = [s["terminated"] for s in states if s["terminated"]["exitCode"] != 0]
        if failed:
            reason = "DeadlineExceeded" if any(f.get("reason") == "DeadlineExceeded" for f in failed) else \
                failed[0].get("reason", "Error")
            return Phase("Failed", reason, failed[0].get("message", ""))
        return Phase("Succeeded", "Completed")
    # a container waiting to be restarted has run: the pod stays Running, as with the kubelet
    restarting = any((s.get("lastState") or {}).get("terminated") for s in containers)
    if restarting or any("running" in s or "terminated" in s for s in states):
        return Phase("Running")
    waiting: dict[str, Any] = next((s["waiting"] for s in states if "waiting" in s), {})
    return Phase("Pending", waiting.get("reason", ""), waiting.get("message", ""))
