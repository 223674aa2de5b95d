"""One batched SLURM query per interval serves the status of every pod.

A poll fetches (the job list, accounting for jobs gone from it, the pods' records), lets pollchanges.py
decide what changed, and applies that to the registry. While a submitted job has not been seen started (or a
deleted one ended), polls come sooner: `fast_interval` after the submission, then backing off to the interval.
Between polls, `refresh` reads the records of pods whose files changed (slurm/statuswatch.py), with no SLURM query."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from slurmlink.api import metrics
from slurmlink.api.pollchanges import (
    Changes,
    adoption_candidates,
    decide_adoption,
    decide_changes,
    decide_refresh,
    owners_to_ask,
    read_listing,
    records_to_read,
)
from slurmlink.api.registry import PodEntry, Registry
from slurmlink.core.records import JobInfo
from slurmlink.core.states import WAITING_STATES
from slurmlink.slurm.base import PodTokenVisibility, SchedulerBackend, SlurmError
from slurmlink.slurm.statuswatch import StatusWatch

log = logging.getLogger(__name__)
IMPOSTORS_SHOWN = 10  # job ids named in the warning about foreign jobs named like ours


class StatusPoller:
    def __init__(self, registry: Registry, backend: SchedulerBackend, interval: float,
                 workdir_for: Callable[[str, str], str], *, fast_interval: float | None = None,
                 on_change: Callable[[list[str] | None], None] | None = None) -> None:
        self.registry = registry
        self.backend = backend
        # A backend acting with the pods' own tokens may not see every user's jobs (see read_listing).
        self.visibility = backend if isinstance(backend, PodTokenVisibility) else None
        self.interval = interval
        self.fast_interval = min(fast_interval or interval / 4, interval)
        self._backoff = self.fast_interval  # the next delay while a job is awaited
        self._hurried = False  # polls are hurried now (since a submission or a cancel, until nothing is awaited)
        # The jobs' own files, if they are watched (slurm/statuswatch.py): a start shows there between polls;
        # at once where the watch is immediate (inotify on a local job root).
        self.watch: StatusWatch | None = None
        self.on_change = on_change or (lambda uids: None)  # after every change applied (None: any pod)
        self.read_seq = 0  # numbers the record reads, so that an older read never replaces a newer one
        self.workdir_for = workdir_for  # (namespace, uid) -> the pod's directory
        self._refused: set[str] = set()  # job ids named like ours that are not our pods' jobs
        self.last_success = 0.0
        self.last_error = ""
        self._wake = asyncio.Event()

    def hurry(self) -> None:
        """A job was submitted or cancelled: poll `fast_interval` after the last poll, then back off."""
        self._backoff = self.fast_interval
        self._hurried = True
        self._wake.set()

    def submitted(self) -> None:
        """A job was submitted: hurry, unless its files show its start at once (inotify): then the polls keep
        their interval, and a burst of creates costs no query of every job SLURM holds, each competing with the
        submissions (bench/submit_throughput.py); a job SLURM ends before it starts (a launch failure, a
        cancel) shows at the next poll. Where the files are looked at every so often (stat, on a shared
        filesystem whose caches may hide a write for seconds), a submission while polls are hurried already
        does not start the backoff again: a burst costs a few polls backing off to the interval."""
        if self.watch is not None and self.watch.immediate:
            return
        if not (self.watch is not None and self._hurried):
            self.hurry()

    def awaiting(self) -> bool:
        """Some submitted job has not been seen started, or some deleted pod's job has not been seen ended."""
        for entry in self.registry.entries.values():
            if not entry.job_id or entry.rejected:
                continue
            if entry.deleting and not entry.finished:
                return True
            if entry.job is not None and entry.job.state in WAITING_STATES and not entry.started_by_files:
                return True
        return False

    def next_delay(self) -> float:
        """Seconds from the start of one poll to the next: the interval at steady state; while a job is awaited,
        `fast_interval` doubling up to the interval (a job that waits long in the queue costs no more)."""
        if not self.awaiting():
            self._hurried = False
            self._backoff = self.interval  # until a hurry: a job awaited later is not polled sooner unasked
            return self.interval
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.interval)
        return delay

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
            self._wake.clear()
            deadline = started + self.next_delay()
            # A burst of creates costs one poll per fast_interval, not one per create.
            while (remaining := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
                if self._wake.is_set():
                    self._wake.clear()
                    deadline = min(deadline, started + self.next_delay())

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
        read = self._next_read()
        found = await self.backend.containers_of([e.directory for e in wanted])
        # Decided and applied with no await in between: a status served meanwhile sees all of it or none.
        self._apply(decide_changes(pool, seen, wanted, found, adopted, self.registry.entries, time.monotonic(),
                                   read=read, snapshot=snapshot), pool, read)
        self.on_change(None)
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
        if adoption.impostors:  # one line per poll: a start beside thousands of foreign jobs must not flood
            shown = ", ".join(f"{job.job_id} of {job.user}" for job in adoption.impostors[:IMPOSTORS_SHOWN])
            more = len(adoption.impostors) - IMPOSTORS_SHOWN
            log.warning("%d job(s) named like slurmlink pods' are not theirs, ignored: %s%s", len(adoption.impostors),
                        shown, f" and {more} more" if more > 0 else "")
        return adoption.adopt

    def _next_read(self) -> int:
        self.read_seq += 1
        return self.read_seq

    async def refresh(self, uids: Iterable[str]) -> None:
        """Read the records of these pods again (their files changed), with no SLURM query; a pod whose job
        SLURM still lists as pending while its containers have started is taken as running until the next poll."""
        entries = [e for uid in uids if (e := self.registry.get(uid)) is not None
                   and e.job_id and e.workdir and not e.rejected and not e.records_final]
        if not entries:
            return
        read = self._next_read()
        found = await self.backend.containers_of([e.directory for e in entries])
        changed = []
        for entry in entries:
            records = found.get(entry.job_id)
            if self.registry.get(entry.uid) is not entry or records is None or entry.records_read > read:
                continue  # forgotten meanwhile, unreadable, or a newer read was applied
            update = decide_refresh(entry, records, time.monotonic())
            entry.records, entry.records_read = records, read
            if update is not None:
                entry.job, entry.started_by_files = update
            changed.append(entry.uid)
        self.on_change(changed)

    def _apply(self, changes: Changes, pool: list[PodEntry], read: int) -> None:
        for entry in changes.join:
            self.registry.entries[entry.uid] = entry
            log.info("adopted pod %s/%s (job %s) from SLURM", entry.namespace, entry.name, entry.job_id)
        by_uid = {entry.uid: entry for entry in pool}
        for uid, update in changes.updates.items():
            entry = by_uid[uid]
            entry.job, entry.records_final, entry.forget_after = update.job, update.records_final, update.forget_after
            entry.started_by_files = update.started_by_files
            if update.records is not None:
                entry.records, entry.records_read = update.records, read
        for uid, job_id in changes.forget.items():
            self.registry.forget(uid)
            self._refused.add(job_id)  # SLURM's memory of the job must not bring it back
