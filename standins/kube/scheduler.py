"""Binding (`pods/{name}/binding`, `bindings`) and a small stand-in for kube-scheduler.

The scheduler binds a pending pod of `schedulerName: default-scheduler` to a Ready, schedulable node whose labels
satisfy its nodeSelector and required node affinity and whose NoSchedule/NoExecute taints it tolerates (fewest
pods first). It records Scheduled / FailedScheduling events and the PodScheduled condition like kube-scheduler.
No resources, ports, pod affinity, spreading or preemption.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import Any

from .errors import STALE, StatusError, conflict
from .registry import Caller, Registry
from .resources import by_kind
from .store import Change
from .timefmt import format_micro, format_time, now

log = logging.getLogger(__name__)
SCHEDULER = "default-scheduler"


def _set_condition(pod: dict[str, Any], condition: dict[str, Any]) -> None:
    conditions = pod.setdefault("status", {}).setdefault("conditions", [])
    for index, existing in enumerate(conditions):
        if existing.get("type") == condition["type"]:
            conditions[index] = condition
            return
    conditions.append(condition)


def bind(registry: Registry, namespace: str, name: str, node_name: str, uid: str | None = None) -> dict[str, Any]:
    """Set spec.nodeName once, as the binding subresource does; 409 if the pod is bound already or deleting."""
    for _attempt in range(5):
        pod = registry.current(by_kind("Pod"), namespace, name)
        where = f'pods/binding "{name}"'
        if uid and uid != pod["metadata"]["uid"]:
            raise StatusError(409, "Conflict", f"Operation cannot be fulfilled on {where}: Precondition failed: "
                              f"UID in precondition: {uid}, UID in object meta: {pod['metadata']['uid']}")
        if pod["metadata"].get("deletionTimestamp"):
            raise StatusError(409, "Conflict", f"Operation cannot be fulfilled on {where}: pod {name} is being "
                              "deleted, cannot be assigned to a host")
        if (pod.get("spec") or {}).get("nodeName"):
            raise StatusError(409, "Conflict", f"Operation cannot be fulfilled on {where}: pod {name} is already "
                              f'assigned to node "{pod["spec"]["nodeName"]}"')
        bound = copy.deepcopy(pod)
        bound["spec"]["nodeName"] = node_name
        _set_condition(bound, {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                               "lastTransitionTime": format_time(now())})
        if registry.store.replace("/pods", bound, pod["metadata"]["resourceVersion"]) is not None:
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
    raise conflict("", "pods", name, STALE)


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for toleration in tolerations:
        effect_ok = not toleration.get("effect") or toleration["effect"] == taint.get("effect")
        key_ok = toleration.get("key") == taint.get("key") or (not toleration.get("key") and
                                                              toleration.get("operator") == "Exists")
        value_ok = toleration.get("operator") == "Exists" or toleration.get("value", "") == taint.get("value", "")
        if effect_ok and key_ok and value_ok:
            return True
    return False


def _expression_holds(labels: dict[str, str], expression: dict[str, Any]) -> bool:
    key, op, values = str(expression.get("key")), expression.get("operator"), expression.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels:
        try:
            return (int(labels[key]) > int(values[0])) if op == "Gt" else (int(labels[key]) < int(values[0]))
        except (ValueError, IndexError):
            return False
    return False


def misfit(pod: dict[str, Any], node: dict[str, Any]) -> str | None:
    """Why the pod cannot go to this node (kube-scheduler's wording, shortened), or None if it can."""
    labels = node["metadata"].get("labels") or {}
    spec = pod.get("spec") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in (node.get("status") or {}).get("conditions") or [])
    if not ready:
        return "node(s) were not ready"
    if (node.get("spec") or {}).get("unschedulable"):
        return "node(s) were unschedulable"
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(key) != value for key, value in selector.items()):
        return "node(s) didn't match Pod's node affinity/selector"
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or []
    if terms and not any(all(_expression_holds(labels, e) for e in term.get("matchExpressions") or [])
                         and all(_expression_holds({"metadata.name": node["metadata"]["name"]}, e)
                                 for e in term.get("matchFields") or [])
                         for term in terms):
        return "node(s) didn't match Pod's node affinity/selector"
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(spec.get("tolerations") or [],
                                                                                 taint):
            return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
    return None


class Scheduler:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.enabled = True
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        registry.store.add_listener(self._on_change)

    def _on_change(self, change: Change) -> None:
        if change.store_key in ("/pods", "/nodes") and self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        while True:
            with contextlib.suppress(TimeoutError):  # a periodic pass retries pods left pending
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            if self.enabled:
                try:
                    self.schedule_pending()
                except Exception:  # a scheduling bug must not stop the stand-in
                    log.exception("scheduling pass failed")

    def schedule_pending(self) -> None:
        pods, _ = self.registry.store.snapshot("/pods")
        nodes, _ = self.registry.store.snapshot("/nodes")
        load: dict[str, int] = {}
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                load[node] = load.get(node, 0) + 1
        for pod in pods:
            spec = pod.get("spec") or {}
            if spec.get("nodeName") or spec.get("schedulerName") != SCHEDULER or \
                    pod["metadata"].get("deletionTimestamp"):
                continue
            reasons: dict[str, int] = {}
            fitting = []
            for node in nodes:
                why = misfit(pod, node)
                if why is None:
                    fitting.append(node["metadata"]["name"])
                else:
                    reasons[why] = reasons.get(why, 0) + 1
            if fitting:
                target = min(fitting, key=lambda name: (load.get(name, 0), name))
                self._bind(pod, target)
                load[target] = load.get(target, 0) + 1
            else:
                detail = ", ".join(f"{count} {why}" for why, count in sorted(reasons.items()))
                self._unschedulable(pod, f"0/{len(nodes)} nodes are available: {detail}." if nodes
                                    else "no nodes available to schedule pods")

    def _bind(self, pod: dict[str, Any], node: str) -> None:
        meta = pod["metadata"]
        try:
            bind(self.registry, meta["namespace"], meta["name"], node, meta["uid"])
        except StatusError:
            return  # taken or deleted meanwhile; the next pass sees the new state
        self._event(pod, "Normal", "Scheduled", "Binding",
                    f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}")

    def _unschedulable(self, pod: dict[str, Any], message: str) -> None:
        current = next((c for c in (pod.get("status") or {}).get("conditions") or []
                        if c.get("type") == "PodScheduled"), None)
        if current and current.get("message") == message:
            return
        updated = copy.deepcopy(pod)
        _set_condition(updated, {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": message, "lastProbeTime": None,
                                 "lastTransitionTime": format_time(now())})
        if self.registry.store.replace("/pods", updated, pod["metadata"]["resourceVersion"]) is not None:
            self._event(pod, "Warning", "FailedScheduling", "Scheduling", message)

    def _event(self, pod: dict[str, Any], kind: str, reason: str, action: str, note: str) -> None:
        meta = pod["metadata"]
        event = {"metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                 "eventTime": format_micro(now()), "reportingController": SCHEDULER,
                 "reportingInstance": f"{SCHEDULER}-standin", "action": action, "reason": reason, "type": kind,
                 "note": note, "regarding": {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
                                             "uid": meta["uid"], "apiVersion": "v1",
                                             "resourceVersion": meta["resourceVersion"]}}
        try:
            self.registry.create(by_kind("Event", "events.k8s.io"), meta["namespace"], event, Caller(SCHEDULER))
        except StatusError:
            log.debug("could not record event %s for %s", reason, meta["name"])
