"""One batched SLURM query per interval serves the status of every pod."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from slurmlink import JOB_NAME_PREFIX
from slurmlink.api import metrics
from slurmlink.api.registry import PodEntry, Registry
from slurmlink.slurm.base import JobInfo, PodDirectory, SchedulerBackend, SlurmError
from slurmlink.translate.status import is_finished

log = logging.getLogger(__name__)
MIN_GAP_FRACTION = 0.25
DELETED_RETENTION_SECONDS = 600.0  # polls are at least this fraction of the interval apart


class StatusPoller:
    def __init__(self, registry: Registry, backend: SchedulerBackend, interval: float,
                 workdir_for: Callable[[str, str], str]) -> None:
        self.registry = registry
        self.backend = backend
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
        by_id = {job.job_id: job for job in jobs}
        # Adopted pods join the registry only below, with their job and records at once: a status served
        # meanwhile must not show a finished job without the records that say how it ended.
        adopted = await self._adopt(jobs)
        pool = [*self.registry.entries.values(), *adopted.values()]
        news: dict[str, JobInfo | None] = {}
        missing: list[PodEntry] = []
        blind = self.backend.blind_to()
        for entry in pool:
            # Pods created after the snapshot was taken are not in it, and not missing.
            if not entry.job_id or entry.rejected or entry.created > snapshot:
                continue
            job = by_id.get(entry.job_id)  # by id: anyone can name a job like ours
            if job is not None and job.name != JOB_NAME_PREFIX + entry.uid:
                job = None  # a slurmctld restarted from older state gave the lost job's id to another job
            if job is not None:
                news[entry.uid] = job
            elif not entry.finished and entry.user not in blind:
                missing.append(entry)
        if missing:  # jobs that left the controller's memory: ask accounting, once for all of them
            finished = await self.backend.finished([e.job_id for e in missing])
            for entry in missing:
                news[entry.uid] = finished.get(entry.job_id)
        entries = [e for e in pool if e.uid in news]
        wanted = [e for e in entries if _records_wanted(e, news[e.uid])]
        found = await self.backend.containers_of([PodDirectory(e.workdir, e.user, e.job_id) for e in wanted])
        # Job state and container records change together, with no await in between: a status served
        # meanwhile never pairs a finished job with records read while it was still running.
        fresh = {e.uid: found[e.job_id] for e in wanted if e.job_id in found}
        unread = {e.uid for e in wanted if e.job_id not in found}
        for uid, entry in adopted.items():
            if uid not in self.registry.entries and uid not in unread:  # (a create may have come meanwhile)
                self.registry.entries[uid] = entry
                log.info("adopted pod %s/%s (job %s) from SLURM", entry.namespace, entry.name, entry.job_id)
        for entry in entries:
            job = news[entry.uid]
            if job is None and entry.uid in unread:
                continue  # gone from SLURM, records unreadable for now: judge it when they can be read
            if entry.uid in fresh:
                entry.records = fresh[entry.uid]
                entry.records_final = is_finished(job)
            entry.job = job if job is not None else _job_from_records(entry)
            if entry.deleting and entry.finished and entry.records_final:
                # Deleted and done: kept a while for callers that confirm the end, then forgotten.
                entry.forget_after = entry.forget_after or time.monotonic() + DELETED_RETENTION_SECONDS
        for entry in list(self.registry.entries.values()):
            if entry.forget_after and time.monotonic() > entry.forget_after:
                self.registry.forget(entry.uid)
                self._refused.add(entry.job_id)  # SLURM's memory of the job must not bring it back
        self.backend.keep_users({e.user for e in self.registry.entries.values()})
        self.last_success, self.last_error = time.time(), ""
        metrics.POLL_SECONDS.observe(time.monotonic() - snapshot)
        metrics.PODS.set(len(self.registry.entries))

    async def _adopt(self, jobs: list[JobInfo]) -> dict[str, PodEntry]:
        """The pods of jobs we do not know (after a restart), if they really are our pods' jobs."""
        adopted: dict[str, PodEntry] = {}
        known = {e.job_id for e in self.registry.entries.values()}
        candidates = sorted((j for j in jobs if j.job_id not in known and j.job_id not in self._refused),
                            key=lambda j: int(j.job_id.split("_")[0]) if j.job_id[:1].isdigit() else 0)
        for job in candidates:  # oldest first: the job slurmlink submitted comes before any copy
            uid = job.name[len(JOB_NAME_PREFIX):]
            if uid in self.registry.entries or uid in adopted:
                self._refused.add(job.job_id)
                continue
            namespace, _, name = job.comment.partition("/")
            workdir = self.workdir_for(namespace, uid)
            try:
                owner = await self.backend.workdir_owner(workdir, job.job_id) if job.workdir == workdir else None
            except SlurmError as exc:
                log.info("cannot check job %s yet: %s", job.job_id, exc.message)
                continue  # asked again at the next poll
            if owner != job.user:
                self._refused.add(job.job_id)
                log.warning("job %s of %s is named like a slurmlink pod's but is not one: ignored",
                            job.job_id, job.user)
                continue
            adopted[uid] = PodEntry(uid=uid, namespace=namespace, name=name, user=job.user, workdir=workdir,
                                    job_id=job.job_id, created=0.0)
        return adopted


def _records_wanted(entry: PodEntry, job: JobInfo | None) -> bool:
    """Records change only while a job runs; once it ended they are read one last time."""
    if entry.records_final:
        return False
    return job is None or job.state != "PENDING"


def _job_from_records(entry: PodEntry) -> JobInfo:
    exits = [r.exit_code for r in entry.records.values()]
    known = entry.job
    if exits and all(code is not None for code in exits):
        failed = any(code != 0 for code in exits)
        return JobInfo(job_id=entry.job_id, name=JOB_NAME_PREFIX + entry.uid, user=entry.user,
                       state="FAILED" if failed else "COMPLETED", workdir=entry.workdir,
                       start_time=known.start_time if known else None, end_time=known.end_time if known else None)
    return JobInfo(job_id=entry.job_id, name=JOB_NAME_PREFIX + entry.uid, user=entry.user, state="FAILED",
                   reason="the job is no longer known to SLURM and left no exit records", workdir=entry.workdir)
