"""Server-side printing: `kubectl get` asks for a meta.k8s.io/v1 Table and prints its cells.

Columns follow the real printers for the types a kubelet deals with; other types get the real default
(Name, Created At).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .timefmt import now, parse_time

Column = tuple[str, str, int]  # name, type, priority (1 = only with -o wide)


def wants_table(accept: str) -> bool:
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def human_age(stamp: str | None) -> str:
    if not stamp:
        return "<unknown>"
    seconds = int((now() - parse_time(stamp)).total_seconds())
    if seconds < 0:
        return "<invalid>"
    if seconds < 120:
        return f"{seconds}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if days < 2:
        return f"{hours}h"
    return f"{days}d{hours % 24}h" if days < 8 and hours % 24 else f"{days}d"


def _pod_status(pod: dict[str, Any]) -> str:
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated"):
            terminated = state["terminated"]
            reason = terminated.get("reason") or (f"Signal:{terminated['signal']}" if terminated.get("signal")
                                                  else f"ExitCode:{terminated.get('exitCode', 0)}")
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_row(pod: dict[str, Any]) -> list[Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for status in statuses if status.get("ready"))
    restarts = sum(int(status.get("restartCount") or 0) for status in statuses)
    status = pod.get("status") or {}
    return [pod["metadata"]["name"], f"{ready}/{total}", _pod_status(pod), restarts,
            human_age(pod["metadata"].get("creationTimestamp")), status.get("podIP") or "<none>",
            (pod.get("spec") or {}).get("nodeName") or "<none>", status.get("nominatedNodeName") or "<none>",
            "<none>"]


def _node_row(node: dict[str, Any]) -> list[Any]:
    conditions = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
    ready = {"True": "Ready", "False": "NotReady"}.get(conditions.get("Ready", ""), "Unknown")
    if (node.get("spec") or {}).get("unschedulable"):
        ready += ",SchedulingDisabled"
    labels = node["metadata"].get("labels") or {}
    roles = sorted(key.split("/", 1)[1] for key in labels if key.startswith("node-role.kubernetes.io/"))
    if labels.get("kubernetes.io/role"):
        roles.append(labels["kubernetes.io/role"])
    addresses = {a.get("type"): a.get("address") for a in (node.get("status") or {}).get("addresses") or []}
    info = (node.get("status") or {}).get("nodeInfo") or {}
    return [node["metadata"]["name"], ready, ",".join(roles) or "<none>",
            human_age(node["metadata"].get("creationTimestamp")), info.get("kubeletVersion", ""),
            addresses.get("InternalIP", "<none>"), addresses.get("ExternalIP", "<none>"), info.get("osImage", ""),
            info.get("kernelVersion", ""), info.get("containerRuntimeVersion", "")]


def _event_row(event: dict[str, Any]) -> list[Any]:
    involved = event.get("involvedObject") or {}
    last = event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp")
    return [human_age(last), event.get("type", ""), event.get("reason", ""),
            f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}", event.get("message", "")]


def _service_row(service: dict[str, Any]) -> list[Any]:
    spec = service.get("spec") or {}
    ports = ",".join(f"{p.get('port')}/{p.get('protocol') or 'TCP'}" for p in spec.get("ports") or [])
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [service["metadata"]["name"], spec.get("type", ""), spec.get("clusterIP") or "<none>", "<none>",
            ports or "<none>", human_age(service["metadata"].get("creationTimestamp")), selector or "<none>"]


def _endpoint_slice_row(slice_: dict[str, Any]) -> list[Any]:
    ports = ",".join(str(p.get("port")) for p in slice_.get("ports") or [])
    addresses = [a for e in slice_.get("endpoints") or [] for a in e.get("addresses") or []]
    shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")
    return [slice_["metadata"]["name"], slice_.get("addressType", ""), ports or "<unset>", shown or "<unset>",
            human_age(slice_["metadata"].get("creationTimestamp"))]


_PRINTERS: dict[str, tuple[list[Column], Callable[[dict[str, Any]], list[Any]]]] = {
    "Service": ([("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0),
                 ("External-IP", "string", 0), ("Port(s)", "string", 0), ("Age", "string", 0),
                 ("Selector", "string", 1)], _service_row),
    "EndpointSlice": ([("Name", "string", 0), ("AddressType", "string", 0), ("Ports", "string", 0),
                       ("Endpoints", "string", 0), ("Age", "string", 0)], _endpoint_slice_row),
    "Pod": ([("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0),
             ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
             ("Readiness Gates", "string", 1)], _pod_row),
    "Node": ([("Name", "string", 0), ("Status", "string", 0), ("Roles", "string", 0), ("Age", "string", 0),
              ("Version", "string", 0), ("Internal-IP", "string", 1), ("External-IP", "string", 1),
              ("OS-Image", "string", 1), ("Kernel-Version", "string", 1), ("Container-Runtime", "string", 1)],
             _node_row),
    "Event": ([("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0),
               ("Object", "string", 0), ("Message", "string", 0)], _event_row),
    "Namespace": ([("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
                  lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""),
                             human_age(o["metadata"].get("creationTimestamp"))]),
    "Lease": ([("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
              lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity", ""),
                         human_age(o["metadata"].get("creationTimestamp"))]),
    "ConfigMap": ([("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
                  lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                             human_age(o["metadata"].get("creationTimestamp"))]),
    "Secret": ([("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
               lambda o: [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}),
                          human_age(o["metadata"].get("creationTimestamp"))]),
}
_DEFAULT: tuple[list[Column], Callable[[dict[str, Any]], list[Any]]] = (
    [("Name", "string", 0), ("Created At", "date", 0)],
    lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")])


def table(kind: str, objects: list[dict[str, Any]], list_meta: dict[str, Any], include_object: str
          ) -> dict[str, Any]:
    columns, row = _PRINTERS.get(kind, _DEFAULT)
    rows = []
    for obj in objects:
        shown: Any
        if include_object == "None":
            shown = None
        elif include_object == "Object":
            shown = obj
        else:  # Metadata, the default: a PartialObjectMetadata
            shown = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
        rows.append({"cells": row(obj), "object": shown})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
            "columnDefinitions": [{"name": name, "type": kind_, "format": "name" if name == "Name" else "",
                                   "description": name, "priority": priority}
                                  for name, kind_, priority in columns],
            "rows": rows}

