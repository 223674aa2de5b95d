"""The node's heartbeat: a Lease in kube-node-lease, renewed every quarter of its duration.

Bodies are raw dicts with renewTime pre-formatted by `micro_time`: a typed client would send
`isoformat()`, which loses the six fraction digits when the microsecond is 0 (the apiserver answers 400).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.types import PatchType

from slurmlink.vk import metrics
from slurmlink.vk.kube import Lease, status_code
from slurmlink.vk.times import micro_time

log = logging.getLogger(__name__)
NAMESPACE = "kube-node-lease"


def lease_body(node: str, node_uid: str, duration: int, renew: str) -> dict[str, Any]:
    owner = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}] if node_uid else []
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": NAMESPACE, "ownerReferences": owner},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": duration, "renewTime": renew}}


class LeaseKeeper:
    def __init__(self, kube: AsyncClient, node: str, duration: int, interval: float) -> None:
        self.kube, self.node, self.duration, self.interval = kube, node, duration, interval
        self.node_uid = ""

    async def renew(self) -> None:
        renew = micro_time()
        patch = {"spec": {"holderIdentity": self.node, "leaseDurationSeconds": self.duration, "renewTime": renew}}
        try:
            await self.kube.patch(Lease, self.node, patch, namespace=NAMESPACE, patch_type=PatchType.MERGE)
        except ApiError as exc:
            if status_code(exc) != 404:
                raise
            await self.kube.create(Lease.from_dict(lease_body(self.node, self.node_uid, self.duration, renew)))
        metrics.LEASE_RENEWALS.inc()

    async def run(self) -> None:
        while True:
            try:
                await self.renew()
                wait = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # retry soon: the lease must not lapse for a passing error
                log.warning("renewing lease %s/%s: %s", NAMESPACE, self.node, exc)
                wait = min(self.interval, 2.0)
            await asyncio.sleep(wait)
