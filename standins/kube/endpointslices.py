"""kube-controller-manager's EndpointSlice controller, on the points slurmlink's tests use: for each Service
with a selector, EndpointSlices (discovery.k8s.io/v1) listing the matching pods that have an address.

As the real one (pkg/controller/endpointslice and its reconciler): a pod is listed when it matches the
selector in the Service's namespace, has status.podIP and is not Succeeded or Failed; its endpoint's
`conditions.serving` is the pod's Ready condition, `terminating` whether it has a deletionTimestamp, and
`ready` is `serving` and not `terminating`, or true whatever they say when `publishNotReadyAddresses`; an
ExternalName Service gets no slices (as for one without a selector); each port of the Service becomes a
port of the slice, its number the pod's `targetPort` (a number, or the name of a containerPort of the pod,
resolved per pod: pods whose names resolve to other numbers go into another slice; a name a pod does not
declare leaves that port out of the pod's slice; a Service that nothing backs has one empty slice). Slices
are named `<service>-<5 random characters>`, labelled `kubernetes.io/service-name` and
`endpointslice.kubernetes.io/managed-by`, owned by the Service (the garbage collector removes them with it),
addressType IPv4. Kept in step on every store change.

Not done: Endpoints (core/v1, the legacy object), IPv6 and dual-stack slices, topology hints, zones,
`maxEndpointsPerSlice` (one slice per port mapping, however many endpoints), mirroring of custom Endpoints.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import logging
from typing import Any

from .controllers import Controller
from .registry import Caller
from .resources import by_kind

log = logging.getLogger(__name__)
CONTROLLER = Caller("system:serviceaccount:kube-system:endpointslice-controller")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
SLICES = "discovery.k8s.io/endpointslices"
Obj = dict[str, Any]


def _selects(selector: dict[str, str], pod: Obj) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return all(labels.get(key) == value for key, value in selector.items())


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def target_port(service_port: Obj, pod: Obj) -> int | None:
    """The port number `targetPort` means on this pod (FindPort): a number as it is, a name looked up among
    the pod's containerPorts of the same protocol; None if the pod does not declare the name."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol") or "TCP"
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            if declared.get("name") == target and (declared.get("protocol") or "TCP") == protocol:
                return int(declared["containerPort"])
    return None


def _endpoint(pod: Obj, publish_not_ready: bool) -> Obj:
    meta = pod["metadata"]
    serving = _ready(pod)
    terminating = bool(meta.get("deletionTimestamp"))
    # the real controller's podToEndpoint: publishNotReadyAddresses makes it ready, even while terminating
    ready = publish_not_ready or (serving and not terminating)
    endpoint: Obj = {"addresses": [pod["status"]["podIP"]],
                     "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                     "targetRef": {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
                                   "uid": meta["uid"]}}
    if (pod.get("spec") or {}).get("nodeName"):
        endpoint["nodeName"] = pod["spec"]["nodeName"]
    return endpoint


def desired_slices(service: Obj, pods: list[Obj]) -> dict[tuple[tuple[str, int], ...], Obj]:
    """The slices the Service should have, by their port mapping: {((name, number), ...): slice body}."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple[tuple[str, int], ...], list[Obj]] = {}
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        status = pod.get("status") or {}
        if not status.get("podIP") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(status["podIP"]).version != 4:
                continue  # IPv4 slices only (see above)
        mapping = []
        for port in spec.get("ports") or []:
            number = target_port(port, pod)
            if number is not None:
                mapping.append((str(port.get("name") or ""), number))
        groups.setdefault(tuple(mapping), []).append(_endpoint(pod, publish_not_ready))
    if not groups:
        groups[()] = []  # a Service nothing backs keeps one empty slice (the real one's placeholder)
    meta = service["metadata"]
    protocols = {str(p.get("name") or ""): p.get("protocol") or "TCP" for p in spec.get("ports") or []}
    return {mapping: {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"generateName": f"{meta['name']}-", "namespace": meta["namespace"],
                     "labels": {SERVICE_NAME_LABEL: meta["name"], MANAGED_BY_LABEL: MANAGED_BY},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": meta["name"],
                                          "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": name, "port": number, "protocol": protocols.get(name, "TCP")} for name, number in mapping],
    } for mapping, endpoints in groups.items()}


def _mapping(slice_: Obj) -> tuple[tuple[str, int], ...]:
    return tuple((str(p.get("name") or ""), int(p.get("port") or 0)) for p in slice_.get("ports") or [])


class EndpointSliceController(Controller):
    name = "EndpointSlice"

    def sync(self) -> None:
        store = self.registry.store
        services, _ = store.snapshot("/services")
        pods, _ = store.snapshot("/pods")
        slices, _ = store.snapshot(SLICES)
        for service in services:
            spec = service.get("spec") or {}
            selector = spec.get("selector")
            if not selector or spec.get("type") == "ExternalName":
                continue  # its slices are someone else's to write; an ExternalName Service gets none
            meta = service["metadata"]
            chosen = [p for p in pods if p["metadata"]["namespace"] == meta["namespace"] and _selects(selector, p)]
            owned = [s for s in slices if s["metadata"]["namespace"] == meta["namespace"]
                     and (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == meta["name"]
                     and (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY]
            self._reconcile(meta["namespace"], desired_slices(service, chosen), owned)

    def _reconcile(self, namespace: str, wanted: dict[tuple[tuple[str, int], ...], Obj], owned: list[Obj]) -> None:
        rtype = by_kind("EndpointSlice", "discovery.k8s.io")
        by_mapping = {_mapping(s): s for s in owned}
        for mapping, body in wanted.items():
            existing = by_mapping.pop(mapping, None)
            if existing is None:
                self.registry.create(rtype, namespace, body, CONTROLLER)
            elif (existing.get("endpoints") or []) != body["endpoints"] or \
                    existing.get("ports") != body["ports"]:
                updated = copy.deepcopy(existing)
                updated["endpoints"], updated["ports"] = body["endpoints"], body["ports"]
                self.registry.store.replace(SLICES, updated, existing["metadata"]["resourceVersion"])
        for stale in by_mapping.values():
            self.registry.store.remove(SLICES, namespace, stale["metadata"]["name"],
                                       stale["metadata"]["resourceVersion"])
