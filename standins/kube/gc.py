"""Two controllers of kube-controller-manager that a kubelet meets when its Node is deleted.

- The garbage collector deletes an object whose owners (ownerReferences) are all gone: none exists any more
  with the referenced kind, name and uid. So a node Lease owned by a deleted Node uid is deleted, and deleted
  again each time it is re-created with that uid (kubernetes.md, "After `kubectl delete node`").
- The pod garbage collector force-deletes (grace 0) pods bound to a node that has been missing for
  `pod_quarantine` seconds (the real one: 40 s, checked every 20 s), after marking them Failed with the
  DisruptionTarget condition, reason DeletionByPodGC. None: off.

Both act on store changes and in a periodic pass, in the stand-in's event loop like the scheduler.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from .controllers import Controller
from .errors import StatusError
from .registry import Registry
from .resources import TYPES, by_kind
from .timefmt import format_time, now

log = logging.getLogger(__name__)
POD_GC_QUARANTINE = 40.0


class GarbageCollector(Controller):
    period = 0.5
    name = "garbage collection"

    def __init__(self, registry: Registry, pod_quarantine: float | None = POD_GC_QUARANTINE) -> None:
        super().__init__(registry)
        self.pod_quarantine = pod_quarantine
        self._missing_since: dict[str, float] = {}  # node name -> when pods bound to it were first seen orphaned

    def sync(self) -> None:
        self.collect_owned()
        self.collect_orphaned_pods()

    def _owner_exists(self, namespace: str, reference: dict[str, Any]) -> bool:
        group = str(reference.get("apiVersion", "")).rpartition("/")[0]
        try:
            rtype = by_kind(str(reference.get("kind")), group)
        except StopIteration:
            return True  # a kind the stand-in does not know: leave the dependent alone
        owner = self.registry.store.get(rtype.store_key, namespace if rtype.namespaced else "",
                                        str(reference.get("name")))
        return owner is not None and owner["metadata"].get("uid") == reference.get("uid")

    def collect_owned(self) -> None:
        store = self.registry.store
        for store_key in {t.store_key for t in TYPES}:
            for obj in store.snapshot(store_key)[0]:
                meta = obj["metadata"]
                owners = meta.get("ownerReferences") or []
                if owners and not any(self._owner_exists(meta.get("namespace", ""), o) for o in owners):
                    store.remove(store_key, meta.get("namespace", ""), meta["name"], meta["resourceVersion"])

    def collect_orphaned_pods(self) -> None:
        if self.pod_quarantine is None:
            return
        store = self.registry.store
        nodes = {n["metadata"]["name"] for n in store.snapshot("/nodes")[0]}
        orphaned: dict[str, list[dict[str, Any]]] = {}
        for pod in store.snapshot("/pods")[0]:
            node = (pod.get("spec") or {}).get("nodeName")
            if node and node not in nodes:
                orphaned.setdefault(node, []).append(pod)
        clock = time.monotonic()
        self._missing_since = {n: self._missing_since.get(n, clock) for n in orphaned}
        for node, pods in orphaned.items():
            if clock - self._missing_since[node] >= self.pod_quarantine:
                for pod in pods:
                    self._delete(pod)

    def _delete(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            failed = copy.deepcopy(pod)
            status = failed.setdefault("status", {})
            status["phase"] = "Failed"
            status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"]
            status["conditions"].append({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                                         "message": "PodGC: node no longer exists", "lastProbeTime": None,
                                         "lastTransitionTime": format_time(now())})
            self.registry.store.replace("/pods", failed, meta["resourceVersion"])
        try:
            self.registry.delete(by_kind("Pod"), meta["namespace"], meta["name"], {"gracePeriodSeconds": 0})
        except StatusError as exc:
            if exc.code not in (404, 409):
                raise
