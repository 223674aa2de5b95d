"""One batched SLURM query per interval serves the status of every pod.

A poll fetches (the job list, accounting for jobs gone from it, the pods' records), lets pollchanges.py
decide what changed, and applies that to the registry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from slurmlink.api import metrics
from slurmlink.api.pollchanges import (
    Changes,
    adoption_candidates,
    decide_adoption,
    decide_changes,
    owners_to_ask,
    read_listing,
    records_to_read,
)
from slurmlink.api.registry import PodEntry, Registry
from slurmlink.core.records import JobInfo
from slurmlink.slurm.base import PodTokenVisibility, SchedulerBackend, SlurmError

log = logging.getLogger(__name__)
MIN_GAP_FRACTION = 0.25  # polls are at least this fraction of the interval apart


class StatusPoller:
    def __init__(self, registry: Registry, backend: SchedulerBackend, interval: float,
                 workdir_for: Callable[[str, str], str]) -> None:
        self.registry = registry
        self.backend = backend
        # A backend acting with the pods' own tokens may not see every user's jobs (see read_listing).
        self.visibility = backend if isinstance(backend, PodTokenVisibility) else None
        self.interval = interval
        self.workdir_for = workdir_for  # (namespace, uid) -> the pod's directory
        self._refused: set[str] = set()  # job ids named like ours that are not our pods' jobs
        self.last_success = 0.0
        self.last_error = ""
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Poll soon rather than at the next interval (after a submit or a cancel)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.poll_once()
            except SlurmError as exc:  # keep the last known states; pods must not flip on a hiccup
                self.last_error = exc.message
                log.warning("status poll failed: %s", exc.message)
            except Exception:  # a bug must not stop status updates for good
                log.exception("status poll crashed")
            # A burst of wake-ups (many creates) costs one poll per MIN_GAP_FRACTION of the interval,
            # not one per create.
            await asyncio.sleep(max(0.0, self.interval * MIN_GAP_FRACTION - (time.monotonic() - started)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval * (1 - MIN_GAP_FRACTION))
            self._wake.clear()

    async def poll_once(self) -> None:
        snapshot = time.monotonic()
        jobs = await self.backend.jobs()
        adopted = await self._adopt(jobs)
        pool = [*self.registry.entries.values(), *adopted.values()]
        blind = self.visibility.blind_to() if self.visibility is not None else frozenset()
        listing = read_listing(pool, jobs, snapshot, blind)
        # Jobs that left the controller's memory: ask accounting, once for all of them.
        finished = await self.backend.finished([e.job_id for e in listing.missing]) if listing.missing else {}
        seen = listing.with_accounting(finished)
        wanted = records_to_read(pool, seen)
        found = await self.backend.containers_of([e.directory for e in wanted])
        # Decided and applied with no await in between: a status served meanwhile sees all of it or none.
        self._apply(decide_changes(pool, seen, wanted, found, adopted, self.registry.entries, time.monotonic()),
                    pool)
        if self.visibility is not None:
            self.visibility.keep_users({e.user for e in self.registry.entries.values()})
        self.last_success, self.last_error = time.time(), ""
        metrics.POLL_SECONDS.observe(time.monotonic() - snapshot)
        metrics.PODS.set(len(self.registry.entries))

    async def _adopt(self, jobs: list[JobInfo]) -> dict[str, PodEntry]:
        """The pods of jobs we do not know (after a restart), if they really are our pods' jobs. They join the
        registry only with their job and records (see decide_changes)."""
        candidates = adoption_candidates(jobs, self.registry.entries.values(), self._refused, self.workdir_for)
        owners: dict[str, str | None] = {}
        for candidate in owners_to_ask(candidates, self.registry.entries):
            job = candidate.job
            try:
                owners[job.job_id] = await self.backend.workdir_owner(candidate.workdir, job.job_id)
            except SlurmError as exc:
                log.info("cannot check job %s yet: %s", job.job_id, exc.message)
        adoption = decide_adoption(candidates, owners, self.registry.entries)
        self._refused |= adoption.refuse
        for job in adoption.impostors:
            log.warning("job %s of %s is named like a slurmlink pod's but is not one: ignored", job.job_id, job.user)
        return adoption.adopt

    def _apply(self, changes: Changes, pool: list[PodEntry]) -> None:
        for entry in changes.join:
            self.registry.entries[entry.uid] = entry
            log.info("adopted pod %s/%s (job %s) from SLURM", entry.namespace, entry.name, entry.job_id)
        by_uid = {entry.uid: entry for entry in pool}
        for uid, update in changes.updates.items():
            entry = by_uid[uid]
            entry.job, entry.records_final, entry.forget_after = update.job, update.records_final, update.forget_after
            if update.records is not None:
                entry.records = update.records
        for uid, job_id in changes.forget.items():
            self.registry.forget(uid)
            self._refused.add(job_id)  # SLURM's memory of the job must not bring it back
