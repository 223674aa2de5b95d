"""A watch on the vk's own Node (fieldSelector metadata.name, the only Node a node identity may watch): when
someone deletes it (`kubectl delete node`), or replaces it with another uid, the NodeKeeper hears at once.

The Lease renewal checks the Node too (lease.py), so a watch that cannot run (refused, broken) costs at most
one lease interval."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from lightkube import AsyncClient
from lightkube.types import OnErrorAction, OnErrorResult

from slurmlink.vk.kube import Node

log = logging.getLogger(__name__)


def _raise(exc: Exception, count: int) -> OnErrorResult:
    return OnErrorResult(OnErrorAction.RAISE)  # we decide when to try again


class NodeWatcher:
    def __init__(self, kube: AsyncClient, node: str, server_timeout: int, current_uid: Callable[[], str],
                 on_lost: Callable[[str], None]) -> None:
        self.kube, self.node, self.server_timeout = kube, node, server_timeout
        self.current_uid, self.on_lost = current_uid, on_lost

    def _judge(self, kind: str, uid: str) -> None:
        """A Node event: ours deleted, or a Node of our name that is not ours (deleted and made again)."""
        mine = self.current_uid()
        if not mine:
            return  # not registered yet (or being registered again): nothing to lose
        if kind == "DELETED" and uid == mine:
            self.on_lost(f"node {self.node} was deleted")
        elif kind in ("ADDED", "MODIFIED") and uid != mine:
            self.on_lost(f"node {self.node} now has uid {uid}, not ours ({mine})")

    async def run(self) -> None:
        delay = 1.0
        while True:
            try:
                # No resourceVersion: each (re)start begins with the current Node as ADDED, so a deletion in a
                # gap shows as a uid we do not know, or as the node missing (the lease's check then sees it).
                async with asyncio.timeout(self.server_timeout + 30):
                    async for kind, obj in self.kube.watch(Node, fields={"metadata.name": self.node},
                                                           server_timeout=self.server_timeout, on_error=_raise):
                        self._judge(kind, str(dict(obj)["metadata"].get("uid", "")))
                        delay = 1.0
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # refused or broken: the lease renewal still checks the node
                log.info("node watch of %s: %s; retrying in %.0fs", self.node, exc or type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
