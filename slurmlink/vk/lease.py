"""The node's heartbeat: a Lease in kube-node-lease, renewed every quarter of its duration.

The Lease is owned by the Node (ownerReferences), always the Node that exists now: the garbage collector
deletes a Lease whose owner uid is gone, so after the Node is deleted and registered again the renewal moves
the owner to the new uid. Each renewal also asks the NodeKeeper to check that the Node is still there.

Bodies are raw dicts with renewTime pre-formatted by `micro_time`: a typed client would send
`isoformat()`, which loses the six fraction digits when the microsecond is 0 (the apiserver answers 400).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.types import PatchType

from slurmlink.vk import metrics
from slurmlink.vk.kube import Lease, status_code
from slurmlink.vk.times import micro_time

log = logging.getLogger(__name__)
NAMESPACE = "kube-node-lease"


def owner_references(node: str, node_uid: str) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}] if node_uid else []


def lease_body(node: str, node_uid: str, duration: int, renew: str) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node, "namespace": NAMESPACE, "ownerReferences": owner_references(node, node_uid)},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": duration, "renewTime": renew}}


async def _nothing() -> None:
    return None


class LeaseKeeper:
    def __init__(self, kube: AsyncClient, node: str, duration: int, interval: float,
                 node_uid: Callable[[], str] = lambda: "",
                 check_node: Callable[[], Awaitable[None]] = _nothing) -> None:
        self.kube, self.node, self.duration, self.interval = kube, node, duration, interval
        self.node_uid, self.check_node = node_uid, check_node
        self.kick = asyncio.Event()  # renew now (the Node was just registered again)

    async def renew(self) -> None:
        try:
            await self.check_node()
        except Exception as exc:  # the renewal matters more than the check
            log.info("checking node %s: %s", self.node, exc or type(exc).__name__)
        renew = micro_time()
        uid = self.node_uid()
        patch: dict[str, Any] = {"spec": {"holderIdentity": self.node, "leaseDurationSeconds": self.duration,
                                          "renewTime": renew}}
        if uid:  # a merge patch replaces the list: the owner is the Node of now
            patch["metadata"] = {"ownerReferences": owner_references(self.node, uid)}
        try:
            await self.kube.patch(Lease, self.node, patch, namespace=NAMESPACE, patch_type=PatchType.MERGE)
        except ApiError as exc:
            if status_code(exc) != 404:
                raise
            await self.kube.create(Lease.from_dict(lease_body(self.node, uid, self.duration, renew)))
        metrics.LEASE_RENEWALS.inc()

    async def run(self) -> None:
        while True:
            self.kick.clear()  # this renewal answers any kick until now
            try:
                await self.renew()
                wait = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # retry soon: the lease must not lapse for a passing error
                log.warning("renewing lease %s/%s: %s", NAMESPACE, self.node, exc)
                wait = min(self.interval, 2.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.kick.wait(), wait)
