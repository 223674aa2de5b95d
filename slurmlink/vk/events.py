"""Kubernetes Events about pods (core/v1, which `kubectl describe` shows); a failed write is only logged."""

from __future__ import annotations

import logging
from typing import Any

from lightkube import AsyncClient

from slurmlink.vk.kube import Event
from slurmlink.vk.times import k8s_time

log = logging.getLogger(__name__)
COMPONENT = "slurmlink-vk"


def event_body(pod: dict[str, Any], node: str, reason: str, message: str, kind: str = "Normal") -> dict[str, Any]:
    meta = pod["metadata"]
    stamp = k8s_time()
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": meta["namespace"],
                               "name": meta["name"], "uid": meta["uid"]},
            "reason": reason, "message": message[:1024], "type": kind, "count": 1,
            "source": {"component": COMPONENT, "host": node}, "reportingComponent": COMPONENT,
            "reportingInstance": node, "firstTimestamp": stamp, "lastTimestamp": stamp}


class EventRecorder:
    def __init__(self, kube: AsyncClient, node: str) -> None:
        self.kube, self.node = kube, node

    async def emit(self, pod: dict[str, Any], reason: str, message: str, kind: str = "Normal") -> None:
        try:
            await self.kube.create(Event.from_dict(event_body(pod, self.node, reason, message, kind)))
        except Exception as exc:  # an event is a courtesy: never let it block the pod
            log.warning("event %s for pod %s/%s: %s", reason, pod["metadata"]["namespace"], pod["metadata"]["name"],
                        exc)
