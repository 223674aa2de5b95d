"""Keep the Node registered and its status true: ping the interLink API, follow it with Ready within one
ping interval, publish capacity, re-register at once if someone deletes the node (the node watch or the
lease renewal tells, see nodewatch.py and lease.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.types import PatchType

from slurmlink.vk import metrics, nodespec
from slurmlink.vk.config import VkConfig
from slurmlink.vk.kube import Node, raw, status_code
from slurmlink.vk.times import k8s_time
from slurmlink.wire.client import ApiCallError, InterlinkClient

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class NodeKeeper:
    def __init__(self, config: VkConfig, kube: AsyncClient, api: InterlinkClient, kubelet_port: int) -> None:
        self.config = config
        self.kube = kube
        self.api = api
        self.kubelet_port = kubelet_port
        self.capacity: dict[str, str] = config.node.capacity.model_dump()
        self.health = nodespec.Health(False, "not pinged yet")
        self.uid = ""
        self.registered = asyncio.Event()
        self._conditions: list[Obj] = []
        self.extra_conditions: dict[str, tuple[str, str, str]] = {}  # set by other parts; sent with the next ping
        self._last_sent: tuple[Any, ...] | None = None
        self._last_sent_at = 0.0
        self.version = ""  # kubeletVersion, settled at the first registration
        self._wake = asyncio.Event()  # the node is gone: register again now, not at the next ping
        self.on_registered: list[Callable[[], None]] = []  # told after each (re-)registration, e.g. the lease

    @property
    def name(self) -> str:
        return self.config.node.name

    async def ping(self) -> None:
        """One ping: updates health and capacity (never to a zero or garbage value)."""
        try:
            async with asyncio.timeout(min(self.config.api.timeout_seconds, max(self.config.ping_interval, 2.0))):
                ping, raw = await self.api.ping()
        except (ApiCallError, TimeoutError) as exc:
            self.health = nodespec.Health(False, str(exc) or "timed out")
            metrics.API_REACHABLE.set(0)
            return
        verdict = nodespec.judge_capacity(ping, raw, self.capacity)
        for problem in verdict.problems:
            log.warning("node capacity: %s", problem)
        self.capacity = verdict.capacity
        self.health = nodespec.Health(True, "", tuple(verdict.problems))
        metrics.API_REACHABLE.set(1)

    def _status(self) -> Obj:
        self._conditions = nodespec.conditions(self.health, self._conditions, k8s_time(), self.extra_conditions)
        return nodespec.node_status(self.config, self.capacity, self._conditions, self.kubelet_port, self.version)

    async def _settle_version(self) -> None:
        """kubeletVersion follows the cluster: read once, from the apiserver's /version."""
        if self.version:
            return
        git_version = None
        if not self.config.node.kubelet_version:
            try:
                git_version = str((await raw(self.kube, "GET", "/version")).get("gitVersion") or "")
            except Exception as exc:  # the version is a courtesy: never hold up the registration for it
                log.warning("cannot read the apiserver's /version (%s); kubeletVersion falls back to %s", exc,
                            nodespec.FALLBACK_CLUSTER_VERSION)
        self.version = nodespec.kubelet_version(self.config.node.kubelet_version, git_version)

    def set_condition(self, kind: str, status: str, reason: str, message: str) -> None:
        self.extra_conditions[kind] = (status, reason, message)

    def lost(self, why: str) -> None:
        """Our Node is gone (deleted, or replaced by another uid): register it again at once."""
        if not self.registered.is_set():
            return
        log.warning("%s; registering it again", why)
        self.registered.clear()
        self.uid = ""
        self._wake.set()

    async def check(self) -> None:
        """Is our Node still there, with our uid? (The lease renewal asks, in case the watch missed it.)"""
        if not self.registered.is_set():
            return
        try:
            node = await self.kube.get(Node, self.name)
        except ApiError as exc:
            if status_code(exc) == 404:
                self.lost(f"node {self.name} was deleted")
                return
            raise
        uid = str(dict(node)["metadata"].get("uid", ""))
        if self.uid and uid != self.uid:
            self.lost(f"node {self.name} now has uid {uid}, not ours ({self.uid})")

    async def register(self, ping: bool = True) -> None:
        """Create the node (with its taints, labels and status), or adopt the existing one; then send its
        status. Registering again after a deletion does not wait for a ping: the last health still holds."""
        if ping:
            await self.ping()
        await self._settle_version()
        status = self._status()
        try:
            node = await self.kube.create(Node.from_dict(nodespec.node_body(self.config, status)))
            log.info("registered node %s", self.name)
        except ApiError as exc:
            if status_code(exc) != 409:
                raise
            # Ours from an earlier run: labels may be refreshed, taints may not (NodeRestriction).
            node = await self.kube.patch(Node, self.name, {"metadata": {"labels": nodespec.labels(self.config)}},
                                         patch_type=PatchType.MERGE)
            self._conditions = list(((node.get("status") or {}).get("conditions")) or [])
            log.info("adopted existing node %s", self.name)
        self.uid = str(node["metadata"]["uid"])
        await self._send(force=True)
        self.registered.set()
        for told in self.on_registered:
            told()

    async def _send(self, force: bool = False) -> None:
        status = self._status()
        # Compare without heartbeat stamps: a change is sent at once, sameness only every node_status_interval.
        fingerprint = (tuple((c["type"], c["status"], c["reason"], c["message"]) for c in status["conditions"]),
                       tuple(sorted(status["capacity"].items())))
        due = time.monotonic() - self._last_sent_at >= self.config.node_status_interval
        if not force and fingerprint == self._last_sent and not due:
            return
        try:
            await self.kube.patch(Node.Status, self.name, {"status": status}, patch_type=PatchType.STRATEGIC)
        except ApiError as exc:
            if status_code(exc) == 404:
                log.warning("node %s was deleted; registering it again", self.name)
                self.registered.clear()
                await self.register(ping=False)
                return
            raise
        self._last_sent, self._last_sent_at = fingerprint, time.monotonic()

    async def run(self) -> None:
        delay = 1.0
        first = True
        while True:
            try:
                if not self.registered.is_set():
                    await self.register(ping=first)
                    first = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.ping_interval)
                if self._wake.is_set():
                    self._wake.clear()
                    continue  # lost: register again before anything else
                await self.ping()
                await self._send()
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the apiserver is away: keep trying, never die
                log.warning("node status of %s: %s", self.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
