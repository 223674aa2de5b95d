"""List + watch of the pods bound to this node: resume from the last resourceVersion when a watch ends or
breaks; relist on 410 Gone, and report every pod missing from the new list as deleted (it went in the gap)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.core.exceptions import NotReadyError
from lightkube.types import OnErrorAction, OnErrorResult

from slurmlink.vk import metrics
from slurmlink.vk.kube import Pod

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def _raise(exc: Exception, count: int) -> OnErrorResult:
    return OnErrorResult(OnErrorAction.RAISE)  # we decide: resume from our revision, or relist


def is_gone(exc: BaseException) -> bool:
    """410: the revision we hold is too old (an in-stream ERROR event or the HTTP answer itself)."""
    if not isinstance(exc, httpx2.HTTPStatusError):
        return False
    if getattr(getattr(exc, "status", None), "code", None) == 410:
        return True
    response = getattr(exc, "response", None)
    return response is not None and response.status_code == 410


class PodWatcher:
    def __init__(self, kube: AsyncClient, node: str, server_timeout: int, on_pod: Callable[[Obj], None],
                 on_gone: Callable[[str], None], known: Callable[[], set[str]]) -> None:
        self.kube, self.node, self.server_timeout = kube, node, server_timeout
        self.on_pod, self.on_gone, self.known = on_pod, on_gone, known
        self.synced = asyncio.Event()  # the first list is in

    async def relist(self) -> str:
        listing = self.kube.list(Pod, namespace="*", fields={"spec.nodeName": self.node})
        seen: set[str] = set()
        async for pod in listing:
            obj = dict(pod)
            seen.add(str(obj["metadata"]["uid"]))
            self.on_pod(obj)
        for uid in self.known() - seen:
            self.on_gone(uid)
        self.synced.set()
        try:
            return listing.resourceVersion
        except NotReadyError:
            return ""  # no revision: the watch then starts with the current state

    async def run(self) -> None:
        revision: str | None = None
        delay = 0.5
        while True:
            try:
                if revision is None:
                    revision = await self.relist()
                    metrics.WATCH_RESTARTS.labels("relist").inc()
                # lightkube reopens a watch the server ended cleanly; the outer timeout also recycles one a
                # broken network left silent.
                async with asyncio.timeout(self.server_timeout + 30):
                    async for kind, obj in self.kube.watch(Pod, namespace="*", fields={"spec.nodeName": self.node},
                                                           resource_version=revision or None,
                                                           server_timeout=self.server_timeout, on_error=_raise):
                        pod = dict(obj)
                        revision = str(pod["metadata"].get("resourceVersion") or revision)
                        if kind == "DELETED":
                            self.on_gone(str(pod["metadata"]["uid"]))
                        elif kind in ("ADDED", "MODIFIED"):
                            self.on_pod(pod)
                        delay = 0.5
            except TimeoutError:
                metrics.WATCH_RESTARTS.labels("recycle").inc()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_gone(exc):
                    log.info("pod watch: revision %s is gone; relisting", revision)
                    metrics.WATCH_RESTARTS.labels("gone").inc()
                    revision = None
                    await asyncio.sleep(min(delay, 1.0))  # a server that keeps answering 410 is not hammered
                    delay = min(delay * 2, 10.0)
                    continue
                metrics.WATCH_RESTARTS.labels("error").inc()
                log.warning("pod watch broke (%s); resuming from revision %s", exc or type(exc).__name__, revision)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
