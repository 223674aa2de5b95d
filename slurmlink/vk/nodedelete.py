"""`slurmlink vk-node-delete`: remove the vk's Node object, e.g. from the Helm chart's post-delete hook.

A DELETE on the node named in the vk's configuration, with the vk's own Kubernetes client, so that the only
right it needs is `delete` on that one node. A vk that is still running registers a deleted node again at once
(docs/vk.md, "Node deleted"); one that is only stopping may still do so, hence `repeat_for`: keep deleting for
that long (at least the vk pod's termination grace period). The Lease goes with the Node (the garbage collector
follows its owner reference); pods still bound to it are force-deleted by Kubernetes' pod garbage collector.
"""

from __future__ import annotations

import asyncio
import time

from lightkube import ApiError, AsyncClient

from slurmlink.vk.config import VkConfig
from slurmlink.vk.kube import Node, make_client, status_code

REPEAT_EVERY = 2.0  # seconds between deletions while repeating


async def _delete(kube: AsyncClient, name: str) -> bool:
    try:
        await kube.delete(Node, name)
    except ApiError as exc:
        if status_code(exc) == 404:
            return False
        raise
    return True


async def delete_node(config: VkConfig, repeat_for: float = 0.0) -> int:
    """How many times the Node was deleted: 0 when there was none of that name (nothing to do is no error),
    more than 1 when a vk that was still stopping registered it again."""
    kube = make_client(config.kube)
    deadline = time.monotonic() + repeat_for
    try:
        deleted = int(await _delete(kube, config.node.name))
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(REPEAT_EVERY, left))
            deleted += int(await _delete(kube, config.node.name))
    finally:
        await kube.close()
    return deleted
