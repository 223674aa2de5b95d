"""When each step of a bench's pods was stored in the Kubernetes stand-in, to the millisecond (vk_scale.py and
start_latency.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from standins.kube.store import Change

DONE = ("Succeeded", "Failed")
JOB_CONDITION = "slurmlink.io/SlurmJob"


@dataclass
class PodTimes:
    """Wall-clock seconds (time.time()) at which the stand-in stored each step of one pod."""

    uid: str
    created: float
    bound: float | None = None
    submitted: float | None = None  # the vk's `Submitted` event (after /create answered)
    job_condition: float | None = None  # the SLURM job condition first in the pod's status
    running: float | None = None  # first phase Running
    ready: float | None = None  # first condition Ready=True
    started: float | None = None  # first phase Running, Succeeded or Failed (a short job may skip Running)
    finished: float | None = None  # first phase Succeeded or Failed
    gone: float | None = None  # the object deleted from the store
    phase: str = "Pending"


class Timeline:
    """A listener on the stand-in's store for the pods named `prefix`*: it runs in the server's thread on every
    write, so it stays cheap."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.pods: dict[str, PodTimes] = {}
        self.lock = threading.Lock()

    def on_change(self, change: Change) -> None:
        if change.store_key == "events" and change.type == "ADDED":
            self._on_event(change.obj)
        if change.store_key != "/pods":
            return
        meta = change.obj.get("metadata") or {}
        if not str(meta.get("name", "")).startswith(self.prefix):
            return
        now = time.time()
        status = change.obj.get("status") or {}
        phase = status.get("phase") or "Pending"
        conditions = status.get("conditions") or []
        with self.lock:
            pod = self.pods.setdefault(meta["name"], PodTimes(uid=meta["uid"], created=now))
            if change.type == "DELETED":
                pod.gone = pod.gone or now
                return
            if pod.bound is None and (change.obj.get("spec") or {}).get("nodeName"):
                pod.bound = now
            if pod.job_condition is None and any(c.get("type") == JOB_CONDITION for c in conditions):
                pod.job_condition = now
            if pod.running is None and phase == "Running":
                pod.running = now
            if pod.ready is None and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
                pod.ready = now
            if pod.started is None and phase in ("Running", *DONE):
                pod.started = now
            if pod.finished is None and phase in DONE:
                pod.finished = now
            pod.phase = phase

    def _on_event(self, event: dict[str, Any]) -> None:
        """The vk's `Submitted` event: it is sent as soon as /create answered with the job id."""
        about = event.get("involvedObject") or event.get("regarding") or {}
        if event.get("reason") == "Submitted" and str(about.get("name", "")).startswith(self.prefix):
            with self.lock:
                pod = self.pods.get(about["name"])
                if pod is not None and pod.submitted is None:
                    pod.submitted = time.time()

    def get(self, name: str) -> PodTimes | None:
        with self.lock:
            return self.pods.get(name)

    def counts(self) -> dict[str, int]:
        with self.lock:
            pods = list(self.pods.values())
        return {"created": len(pods), "submitted": sum(p.submitted is not None for p in pods),
                "started": sum(p.started is not None for p in pods),
                "running_now": sum(p.phase == "Running" for p in pods),
                "finished": sum(p.finished is not None for p in pods)}
