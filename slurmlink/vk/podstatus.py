"""Pod status from what the interLink API reports, as pure functions: phase, conditions, container statuses,
a fingerprint to patch only on change, and the Events a transition deserves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from slurmlink.translate.status import NOTES_KEY, Phase, pod_phase, rejected_statuses
from slurmlink.wire.interlink import PodStatus
from slurmlink.wire.names import JOB_CONDITION

Obj = dict[str, Any]
# A node may not write pod metadata (NodeRestriction): the job id goes into a condition of our own.
TERMINAL = ("Succeeded", "Failed")
_CONDITION_ORDER = ("PodScheduled", "Initialized", "ContainersReady", "Ready", JOB_CONDITION)


def spec_names(pod: Obj) -> tuple[list[str], list[str]]:
    spec = pod.get("spec") or {}
    return ([str(c.get("name")) for c in spec.get("initContainers") or []],
            [str(c.get("name")) for c in spec.get("containers") or []])


def matches_spec(pod: Obj, remote: PodStatus) -> bool:
    """Whether the API answered about this pod's containers (a restarted API may only know part of it)."""
    inits, apps = spec_names(pod)
    return (sorted(inits) == sorted(str(c.get("name")) for c in remote.init_containers)
            and sorted(apps) == sorted(str(c.get("name")) for c in remote.containers))


def known_to_api(remote: PodStatus | None) -> bool:
    """Whether the API has this pod (a job, or a recorded rejection); unknown pods come back empty or as
    slurmlink's "JobNotFound" placeholder."""
    if remote is None:
        return False
    if remote.jid:
        return True
    states = [c.get("state") or {} for c in remote.containers + remote.init_containers]
    if not states:
        return False
    return not all((s.get("waiting") or {}).get("reason") == "JobNotFound" for s in states)


def _condition(kind: str, status: str, previous: dict[str, Obj], now: str, reason: str = "",
               message: str = "") -> Obj:
    old = previous.get(kind) or {}
    moved = old.get("status") != status or not old.get("lastTransitionTime")
    # Conditions merge by type in the patch: an empty reason or message is sent as null, which deletes the one
    # stored (Ready turning True must not keep the ContainersNotReady it had while False).
    return {"type": kind, "status": status, "lastProbeTime": None,
            "lastTransitionTime": now if moved else old["lastTransitionTime"],
            "reason": reason or None, "message": message or None}


def _terminated_ok(status: Obj) -> bool:
    terminated = (status.get("state") or {}).get("terminated") or {}
    return bool(terminated) and terminated.get("exitCode") == 0


def conditions(pod: Obj, phase: Phase, containers: list[Obj], inits: list[Obj], job_id: str, now: str) -> list[Obj]:
    previous = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    out = [_condition("PodScheduled", "True", previous, now)]
    not_initialized = [s["name"] for s in inits if not _terminated_ok(s)]
    if not_initialized:
        out.append(_condition("Initialized", "False", previous, now, "ContainersNotInitialized",
                              f"containers with incomplete status: [{' '.join(not_initialized)}]"))
    else:
        out.append(_condition("Initialized", "True", previous, now))
    unready = [s["name"] for s in containers if not s.get("ready")]
    for kind in ("ContainersReady", "Ready"):
        if phase.phase in TERMINAL:
            out.append(_condition(kind, "False", previous, now, "PodCompleted"))
        elif unready:
            out.append(_condition(kind, "False", previous, now, "ContainersNotReady",
                                  f"containers with unready status: [{' '.join(unready)}]"))
        else:
            out.append(_condition(kind, "True", previous, now))
    if job_id:
        out.append(_condition(JOB_CONDITION, "True", previous, now, "Submitted", f"SLURM job {job_id}"))
    return out


def _normalised(statuses: list[Obj]) -> list[Obj]:
    """Container statuses with the fields the apiserver requires, whatever the API left out."""
    out = []
    for s in statuses:
        state = {k: v for k, v in (s.get("state") or {}).items() if v is not None} or {"waiting": {}}
        last = {k: v for k, v in (s.get("lastState") or {}).items() if v is not None}
        out.append({"name": str(s.get("name")), "state": state, "lastState": last, "ready": bool(s.get("ready")),
                    "restartCount": int(s.get("restartCount") or 0), "image": str(s.get("image") or ""),
                    "imageID": str(s.get("imageID") or ""), "started": bool(s.get("started")),
                    **({"containerID": s["containerID"]} if s.get("containerID") else {})})
    return out


def _with_images(pod: Obj, statuses: list[Obj], key: str) -> list[Obj]:
    images = {str(c.get("name")): str(c.get("image") or "") for c in (pod.get("spec") or {}).get(key) or []}
    for s in statuses:
        s["image"] = s["image"] or images.get(s["name"], "")
    return statuses


@dataclass(frozen=True)
class Desired:
    status: Obj
    phase: Phase


def desired(pod: Obj, containers: list[Obj], inits: list[Obj], job_id: str, host_ip: str, now: str) -> Desired:
    containers = _with_images(pod, _normalised(containers), "containers")
    inits = _with_images(pod, _normalised(inits), "initContainers")
    phase = pod_phase(containers, inits)
    current = pod.get("status") or {}
    status: Obj = {"phase": phase.phase, "conditions": conditions(pod, phase, containers, inits, job_id, now),
                   "containerStatuses": containers, "initContainerStatuses": inits,
                   "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "startTime": current.get("startTime") or now}
    if phase.phase == "Failed":
        status["reason"], status["message"] = phase.reason or "Error", phase.message or ""
    return Desired(status, phase)


def from_remote(pod: Obj, remote: PodStatus, host_ip: str, now: str) -> Desired:
    return desired(pod, remote.containers, remote.init_containers, remote.jid, host_ip, now)


def with_pod_ip(wanted: Desired, pod_ip: str) -> Desired:
    """The status with the pod's address; only pods whose ports the vk serves have one (vk `services`)."""
    return Desired({**wanted.status, "podIP": pod_ip, "podIPs": [{"ip": pod_ip}]}, wanted.phase)


def failed(pod: Obj, reason: str, message: str, host_ip: str, now: str) -> Desired:
    """A pod that never became a job (refused by the API, or its references never appeared)."""
    containers, inits = rejected_statuses(pod, reason, message)
    result = desired(pod, containers, inits, "", host_ip, now)
    result.status["reason"], result.status["message"] = reason, message
    return result


def waiting(pod: Obj, reason: str, message: str, host_ip: str, now: str) -> Desired:
    """A pod held back before submission, e.g. a ConfigMap it needs does not exist yet."""
    inits, apps = spec_names(pod)
    state = {"waiting": {"reason": reason, "message": message}}
    return desired(pod, [{"name": n, "state": state} for n in apps], [{"name": n, "state": state} for n in inits],
                   "", host_ip, now)


def stays_finished(shown_phase: str, wanted: Desired) -> bool:
    """Whether `wanted` would change the phase of a pod Kubernetes already shows finished (someone else finished
    it). The apiserver accepts that, even back to Running; a kubelet never asks for it (kubernetes.md, "Seen on a
    real kube-apiserver")."""
    return shown_phase in TERMINAL and wanted.phase.phase != shown_phase


def patch_body(status: Obj) -> Obj:
    """The pods/status strategic merge patch that makes the pod's status `status`.

    A real apiserver replaces `containerStatuses` and `initContainerStatuses` whole (they have no patch strategy),
    so `status` carries every container, each with its one current state; `conditions` merge by type (ours are
    all there); `hostIPs` and `podIPs` merge by ip, so each list is marked to replace the stored one (a node
    address changed between restarts must not linger beside the new one); a Failed pod's reason and message are
    deleted (null) when the pod is retried.
    """
    body = dict(status)
    for key in ("hostIPs", "podIPs"):
        if key in body:
            body[key] = [*body[key], {"$patch": "replace"}]
    for key in ("reason", "message"):
        body.setdefault(key, None)
    return {"status": body}


def fingerprint(status: Obj) -> str:
    """What a patch would change, without the time stamps the apiserver re-renders."""
    def condition(c: Obj) -> tuple[Any, ...]:
        return (c.get("type"), c.get("status"), c.get("reason") or "", c.get("message") or "")
    conds = sorted((condition(c) for c in status.get("conditions") or [] if c.get("type") in _CONDITION_ORDER),
                   key=lambda t: str(t[0]))
    return json.dumps({"phase": status.get("phase"), "podIP": status.get("podIP") or "",
                       "reason": status.get("reason") or "", "message": status.get("message") or "",
                       "conditions": conds,
                       "containers": _normalised(status.get("containerStatuses") or []),
                       "inits": _normalised(status.get("initContainerStatuses") or [])}, sort_keys=True)


@dataclass(frozen=True)
class EventNote:
    reason: str
    message: str
    type: str = "Normal"


def _ever_started(status: Obj) -> bool:
    for s in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        state = s.get("state") or {}
        if "running" in state or ((state.get("terminated") or {}).get("startedAt")):
            return True
    return False


def transition_events(old_phase: str, new: Desired, job_id: str) -> list[EventNote]:
    """Events for a phase change seen by the vk (old_phase is what the pod showed before the patch)."""
    job = f"SLURM job {job_id}" if job_id else "the pod"
    notes = []
    new_phase = new.phase.phase
    if old_phase in ("", "Pending") and new_phase != "Pending" and _ever_started(new.status):
        notes.append(EventNote("Started", f"{job} started"))
    if new_phase == old_phase:
        return notes
    if new_phase == "Succeeded":
        notes.append(EventNote("Finished", f"{job} finished: every container exited 0"))
    elif new_phase == "Failed":
        detail = ": ".join(p for p in (new.phase.reason, new.phase.message) if p)
        notes.append(EventNote("Failed", f"{job} failed{': ' + detail if detail else ''}", "Warning"))
    return notes


def _notes(remote: PodStatus) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = {}
    for status in remote.containers + remote.init_containers:
        notes = status.get(NOTES_KEY)
        if isinstance(notes, list):
            out[str(status.get("name"))] = [n for n in notes if isinstance(n, dict) and isinstance(n.get("seq"), int)]
    return out


def notes_seen(remote: PodStatus) -> dict[str, int]:
    """The newest note of each container: what a vk that (re)starts takes as already told."""
    return {name: max((n["seq"] for n in notes), default=0) for name, notes in _notes(remote).items()}


def container_events(remote: PodStatus, seen: dict[str, int]) -> list[EventNote]:
    """Events for the probe and hook notes the job wrote since `seen` (updated in place); notes alike in
    reason and message within one answer become one Event, like the kubelet's event aggregation."""
    events: list[EventNote] = []
    for name, notes in _notes(remote).items():
        fresh = [n for n in notes if n["seq"] > seen.get(name, 0)]
        if not fresh:
            continue
        seen[name] = max(n["seq"] for n in fresh)
        for note in fresh:
            event = EventNote(str(note.get("reason") or "Unhealthy"), str(note.get("message") or ""),
                              "Warning" if note.get("type") == "Warning" else "Normal")
            if event not in events:
                events.append(event)
    return events
