"""Refreshing the ServiceAccount tokens in running pods' projected volumes.

The tokens were fetched at `/create`. Once a pod's are due (tokentiming), a new TokenRequest per token file
(same audience and lifetime) and one call to slurmlink's own API route, which replaces the files in the job's
directory atomically. A loop of its own with a bounded number of pods in flight: a slow apiserver or API never
holds up the status rounds or the workers. Upstream interLink has no such route: then this stops, once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from slurmlink.vk.config import VkConfig
from slurmlink.vk.controller import PodController
from slurmlink.vk.state import PodState
from slurmlink.vk.tokentiming import Schedule, refresh_due, retry_delay, token_sources
from slurmlink.wire.client import ApiCallError, RouteUnsupported
from slurmlink.wire.projected import ProjectedWrite

log = logging.getLogger(__name__)
IN_FLIGHT = 8  # pods refreshed at once
WARN_AFTER = 3  # consecutive failures before a Warning event on the pod


def _runs(state: PodState) -> bool:
    """A job with a container running now: the only time its files can (and need to) be replaced."""
    if state.gone or state.finished or state.deleting or not state.submitted or state.remote is None:
        return False
    return any("running" in (s.get("state") or {}) for s in state.remote.containers + state.remote.init_containers)


class TokenRefresher:
    def __init__(self, config: VkConfig, controller: PodController) -> None:
        self.config, self.controller = config, controller
        self.schedules: dict[str, Schedule] = {}
        self.in_flight: set[str] = set()
        self.gate = asyncio.Semaphore(IN_FLIGHT)
        self.unsupported = False
        self._tasks: set[asyncio.Task[None]] = set()

    def _due(self, issued_at: float, expires: float) -> float:
        return refresh_due(issued_at, expires, self.config.projected_token_refresh_fraction,
                           self.config.projected_token_refresh_seconds)

    def _schedule(self, state: PodState, now: float) -> Schedule | None:
        """The pod's schedule: from the tokens issued at /create, or (a pod adopted after a restart, whose
        tokens' age we do not know) due now."""
        schedule = self.schedules.get(state.uid)
        issued = self.controller.resolver.issued.pop(state.uid, None)
        if issued is not None:  # tokens issued at /create (or a retried create) since we last looked
            schedule = self.schedules[state.uid] = Schedule(issued[0], issued[1], self._due(*issued))
        if schedule is None and token_sources(state.pod):
            schedule = self.schedules[state.uid] = Schedule(now, now, now)
        return schedule

    def tick(self, now: float | None = None) -> list[PodState]:
        """Pods to refresh now (and forget the schedules of pods no longer tracked)."""
        now = time.time() if now is None else now
        for uid in [u for u in self.schedules if u not in self.controller.pods]:
            del self.schedules[uid]
        due = []
        for state in list(self.controller.pods.values()):
            schedule = self._schedule(state, now)
            if schedule is not None and schedule.due <= now and state.uid not in self.in_flight and _runs(state):
                due.append(state)
        return due

    async def run(self) -> None:
        await self.controller.adopted.wait()
        interval = min(1.0, self.config.status_interval)
        while not self.unsupported:
            for state in self.tick():
                self.in_flight.add(state.uid)
                task = asyncio.create_task(self._refresh(state))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(interval)
        log.info("projected ServiceAccount tokens of running pods are not refreshed (the API cannot)")

    async def _refresh(self, state: PodState) -> None:
        try:
            async with self.gate:
                await self._refresh_now(state)
        finally:
            self.in_flight.discard(state.uid)

    async def _refresh_now(self, state: PodState) -> None:
        issued_at = time.time()
        try:
            files: list[tuple[str, str, bytes]] = []
            expires = float("inf")
            for source in token_sources(state.pod):
                token, expiry = await self.controller.resolver.issue_token(state.pod, source.audience)
                files.append((source.volume, source.path, token.encode()))
                expires = min(expires, expiry)
            if not files:
                self.schedules.pop(state.uid, None)
                return
            await self.controller.api.write_projected(ProjectedWrite(state.uid, files))
        except asyncio.CancelledError:
            raise
        except RouteUnsupported as exc:
            if not self.unsupported:
                log.warning("the interLink API cannot refresh files of running pods (%s); projected "
                            "ServiceAccount tokens keep their first lifetime (token_expiration_seconds)", exc)
            self.unsupported = True
        except Exception as exc:  # apiserver or API away, pod not running after all: later, with backoff
            await self._failed(state, exc)
        else:
            self.schedules[state.uid] = Schedule(issued_at, expires, self._due(issued_at, expires))
            log.info("pod %s/%s: projected ServiceAccount token(s) refreshed", state.namespace, state.name)

    async def _failed(self, state: PodState, exc: Exception) -> None:
        schedule = self.schedules.get(state.uid)
        if schedule is None:
            return  # forgotten meanwhile
        schedule.failures += 1
        delay = retry_delay(schedule.failures)
        schedule.due = time.time() + delay
        message = exc.message if isinstance(exc, ApiCallError) else (str(exc) or type(exc).__name__)
        log.warning("pod %s/%s: refreshing its projected token failed (%s); retrying in %.0fs", state.namespace,
                    state.name, message, delay)
        if schedule.failures >= WARN_AFTER and schedule.last_warning != message:
            schedule.last_warning = message
            await self.controller.events.emit(state.pod, "TokenRefreshFailed", f"cannot refresh the projected "
                                              f"ServiceAccount token ({schedule.failures} attempts): {message}",
                                              "Warning")
