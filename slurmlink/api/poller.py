"""One batched SLURM query per interval serves the status of every pod."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from slurmlink import JOB_NAME_PREFIX
from slurmlink.api import metrics
from slurmlink.api.registry import PodEntry, Registry
from slurmlink.slurm.base import ContainerRecord, JobInfo, SchedulerBackend, SlurmError
from slurmlink.translate.status import is_finished

log = logging.getLogger(__name__)
RECORD_READS_AT_ONCE = 32  # file reads, not SLURM calls, but still bounded


class StatusPoller:
    def __init__(self, registry: Registry, backend: SchedulerBackend, interval: float) -> None:
        self.registry = registry
        self.backend = backend
        self.interval = interval
        self._reads = asyncio.Semaphore(RECORD_READS_AT_ONCE)
        self.last_success = 0.0
        self.last_error = ""
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Poll now rather than at the next interval (after a submit or a cancel)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except SlurmError as exc:  # keep the last known states; pods must not flip on a hiccup
                self.last_error = exc.message
                log.warning("status poll failed: %s", exc.message)
            except Exception:  # a bug must not stop status updates for good
                log.exception("status poll crashed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def poll_once(self) -> None:
        started = time.monotonic()
        jobs = await self.backend.jobs()
        adopted = self.registry.adopt(jobs)
        if adopted:
            log.info("adopted %d pods from SLURM", len(adopted))
        news: dict[str, JobInfo | None] = {}
        missing: list[PodEntry] = []
        for entry in list(self.registry.entries.values()):
            if not entry.job_id or entry.rejected:
                continue
            job = jobs.get(JOB_NAME_PREFIX + entry.uid)
            if job is not None and job.job_id == entry.job_id:
                news[entry.uid] = job
            elif not entry.finished:
                missing.append(entry)
        if missing:  # jobs that left the controller's memory: ask accounting, once for all of them
            finished = await self.backend.finished([e.job_id for e in missing])
            for entry in missing:
                news[entry.uid] = finished.get(entry.job_id)
        entries = [e for e in self.registry.entries.values() if e.uid in news]
        wanted = [e for e in entries if _records_wanted(e, news[e.uid])]
        records = await asyncio.gather(*(self._read_records(e) for e in wanted))
        # Job state and container records change together, with no await in between: a status served
        # meanwhile never pairs a finished job with records read while it was still running.
        fresh = {e.uid: r for e, r in zip(wanted, records, strict=True) if r is not None}
        for entry in entries:
            job = news[entry.uid]
            if entry.uid in fresh:
                entry.records = fresh[entry.uid]
                entry.records_final = is_finished(job)
            entry.job = job if job is not None else _job_from_records(entry)
        self.last_success, self.last_error = time.time(), ""
        metrics.POLL_SECONDS.observe(time.monotonic() - started)
        metrics.PODS.set(len(self.registry.entries))

    async def _read_records(self, entry: PodEntry) -> dict[str, ContainerRecord] | None:
        async with self._reads:
            try:
                return await self.backend.containers(entry.workdir, entry.user)
            except SlurmError as exc:
                log.warning("cannot read container records of %s: %s", entry.uid, exc.message)
                return None


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
