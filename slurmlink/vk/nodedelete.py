"""`slurmlink vk-node-delete`: remove the vk's Node object, e.g. from a Helm pre-delete hook.

One DELETE on the node named in the vk's configuration, with the vk's own Kubernetes client, so that the only
right it needs is `delete` on that one node. Its Lease goes with it (the garbage collector follows the Lease's
owner reference); pods still bound to the node are force-deleted by Kubernetes' pod garbage collector.
"""

from __future__ import annotations

from lightkube import ApiError

from slurmlink.vk.config import VkConfig
from slurmlink.vk.kube import Node, make_client, status_code


async def delete_node(config: VkConfig) -> bool:
    """Delete the Node; False when there was none of that name (nothing to do is no error)."""
    kube = make_client(config.kube)
    try:
        await kube.delete(Node, config.node.name)
    except ApiError as exc:
        if status_code(exc) == 404:
            return False
        raise
    finally:
        await kube.close()
    return True
