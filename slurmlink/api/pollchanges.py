"""What one status poll changes, worked out from plain data: no I/O, no clock, no awaits.

poller.py fetches (SLURM's job list, accounting, the pods' records), asks these functions what follows
from what it fetched, and applies the answer to the registry in one step. The races between a poll and
the requests served while it runs are settled here, so they are tested as plain functions
(tests/unit/test_poll_changes.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace

from slurmlink.api.registry import PodEntry
from slurmlink.core import naming
from slurmlink.core.records import ContainerRecord, JobInfo
from slurmlink.core.states import WAITING_STATES
from slurmlink.translate.status import is_finished

DELETED_RETENTION_SECONDS = 600.0  # a deleted, finished pod stays this long for callers that confirm its end

Records = dict[str, ContainerRecord]


# --- adoption: the pods of jobs the registry does not know (after a restart) ----------------------------------

@dataclass(frozen=True)
class Candidate:
    """A job named like one of our pods' that the registry does not know."""

    job: JobInfo
    uid: str
    namespace: str
    name: str
    workdir: str  # where that pod's directory must be

    @property
    def in_place(self) -> bool:
        """The job runs in that directory; any other job is not our pod's, whatever its name."""
        return self.job.workdir == self.workdir


@dataclass(frozen=True)
class Adoption:
    adopt: dict[str, PodEntry]  # by uid; they join the registry later, with their job and records at once
    refuse: set[str]  # job ids never to consider again
    impostors: list[JobInfo]  # named like our pods' jobs but not theirs (refused too; worth a warning)


def adoption_candidates(jobs: Iterable[JobInfo], known: Iterable[PodEntry], refused: Collection[str],
                        workdir_for: Callable[[str, str], str]) -> list[Candidate]:
    """Jobs neither known by id nor refused, oldest first: the job slurmlink submitted comes before any copy."""
    known_ids = {entry.job_id for entry in known}
    unknown = sorted((job for job in jobs if job.job_id not in known_ids and job.job_id not in refused),
                     key=_submission_order)
    candidates = []
    for job in unknown:
        uid = naming.uid_of(job.name)
        namespace, name = naming.pod_of(job.comment)
        candidates.append(Candidate(job, uid, namespace, name, workdir_for(namespace, uid)))
    return candidates


def owners_to_ask(candidates: Iterable[Candidate], known_uids: Collection[str]) -> list[Candidate]:
    """The candidates whose directory's owner decides: in place, for a pod the registry does not know."""
    return [c for c in candidates if c.in_place and c.uid not in known_uids]


def decide_adoption(candidates: Iterable[Candidate], owners: Mapping[str, str | None],
                    known_uids: Collection[str]) -> Adoption:
    """`owners`: job id -> the owner of its pod's directory; a job left out could not be checked now."""
    adoption = Adoption({}, set(), [])
    for candidate in candidates:
        job = candidate.job
        if candidate.uid in known_uids or candidate.uid in adoption.adopt:
            adoption.refuse.add(job.job_id)  # a copy: the pod has its job already
        elif candidate.in_place and job.job_id not in owners:
            continue  # asked again at the next poll
        elif not candidate.in_place or owners[job.job_id] != job.user:
            adoption.refuse.add(job.job_id)
            adoption.impostors.append(job)
        else:
            adoption.adopt[candidate.uid] = PodEntry(
                uid=candidate.uid, namespace=candidate.namespace, name=candidate.name, user=job.user,
                workdir=candidate.workdir, job_id=job.job_id, created=0.0)
    return adoption


def _submission_order(job: JobInfo) -> int:
    return int(job.job_id.split("_")[0]) if job.job_id[:1].isdigit() else 0


# --- judging: what SLURM says of each pod --------------------------------------------------------------------

@dataclass(frozen=True)
class Listing:
    """What a poll's job list says of the pods it judges."""

    listed: dict[str, JobInfo]  # by uid: the pod's job, as listed
    missing: list[PodEntry]  # jobs left out of the list that may have ended unseen: ask accounting

    def with_accounting(self, finished: Mapping[str, JobInfo]) -> dict[str, JobInfo | None]:
        """By uid: each judged pod's job as SLURM knows it now; None when SLURM has forgotten it."""
        return {**self.listed, **{entry.uid: finished.get(entry.job_id) for entry in self.missing}}


def read_listing(pool: Iterable[PodEntry], jobs: Iterable[JobInfo], snapshot: float,
                 blind: Collection[str]) -> Listing:
    """`snapshot`: when the list was asked for (monotonic); `blind`: users whose jobs the list could not show."""
    by_id = {job.job_id: job for job in jobs}
    listed: dict[str, JobInfo] = {}
    missing: list[PodEntry] = []
    for entry in pool:
        # Pods created after the list was asked for are not in it, and not missing.
        if not entry.job_id or entry.rejected or entry.created > snapshot:
            continue
        job = by_id.get(entry.job_id)  # by id: anyone can name a job like ours
        if job is not None and job.name != naming.job_name(entry.uid):
            job = None  # a slurmctld restarted from older state gave the lost job's id to another job
        if job is not None:
            listed[entry.uid] = job
        elif not entry.finished and entry.user not in blind:
            missing.append(entry)
    return Listing(listed, missing)


def records_to_read(pool: Iterable[PodEntry], seen: Mapping[str, JobInfo | None]) -> list[PodEntry]:
    """The pods whose records to read now (see _records_wanted)."""
    return [entry for entry in pool if entry.uid in seen and _records_wanted(entry, seen[entry.uid])]


def _records_wanted(entry: PodEntry, job: JobInfo | None) -> bool:
    """Records change only while a job runs; once it ended they are read one last time."""
    if entry.records_final:
        return False
    return job is None or job.state != "PENDING"


# --- the changes ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Update:
    """A pod's new state. Its job and its records change together: never a finished job with records read
    while it still ran."""

    job: JobInfo
    records: Records | None  # None: the records it has stay
    records_final: bool
    forget_after: float
    started_by_files: float = 0.0  # see PodEntry.started_by_files


@dataclass(frozen=True)
class Changes:
    updates: dict[str, Update]  # by uid: pods of the registry whose state changed
    join: list[PodEntry]  # adopted pods, with their job and records
    forget: dict[str, str]  # uid -> job id: deleted, finished and kept long enough


def decide_changes(pool: Iterable[PodEntry], seen: Mapping[str, JobInfo | None], wanted: Iterable[PodEntry],
                   found: Mapping[str, Records], adopted: Mapping[str, PodEntry], known: Mapping[str, PodEntry],
                   now: float, *, read: int = 0, snapshot: float = 0.0) -> Changes:
    """`seen` from Listing.with_accounting; `found`: by job id, the records read of the `wanted` pods (a pod
    left out could not be read); `known`: the registry now; `now`: monotonic time; `read`: the number of this
    poll's record read (a pod whose records come from a later read keeps them); `snapshot`: when the job list
    was asked for (a start its files showed later is not undone by it)."""
    fresh = {e.uid: found[e.job_id] for e in wanted if e.job_id in found and e.records_read <= read}
    unread = {e.uid for e in wanted if e.job_id not in found}
    updates: dict[str, Update] = {}
    for entry in pool:
        if entry.uid in seen:
            job = seen[entry.uid]
            if job is not None and job.state in WAITING_STATES and entry.started_by_files > snapshot:
                job = entry.job  # listed before its containers started: the files are newer
            update = _update(entry, job, fresh.get(entry.uid), entry.uid in unread, now)
            if update is not None:
                updates[entry.uid] = update
    # An adopted pod whose records cannot be read yet waits for a poll that can (its job may have ended);
    # one a create brought meanwhile is the registry's.
    join = [_updated(entry, updates.get(uid)) for uid, entry in adopted.items()
            if uid not in known and uid not in unread]
    updates = {uid: update for uid, update in updates.items() if uid not in adopted}
    forget = {}
    for entry in [*known.values(), *join]:
        forget_after = updates[entry.uid].forget_after if entry.uid in updates else entry.forget_after
        if forget_after and now > forget_after:
            forget[entry.uid] = entry.job_id
    return Changes(updates, join, forget)


def _update(entry: PodEntry, job: JobInfo | None, records: Records | None, unread: bool,
            now: float) -> Update | None:
    """`job` None: SLURM has forgotten it; `records` None: not read now; `unread`: reading them failed."""
    if job is None and unread:
        return None  # gone from SLURM, records unreadable for now: judged when they can be read
    records_final = is_finished(job) if records is not None else entry.records_final
    new_job = job if job is not None else job_from_records(entry, entry.records if records is None else records)
    forget_after = entry.forget_after
    if entry.deleting and (entry.rejected is not None or is_finished(new_job)) and records_final:
        forget_after = forget_after or now + DELETED_RETENTION_SECONDS
    # SLURM's word on a start replaces the files'
    started_by_files = entry.started_by_files if new_job == entry.job else 0.0
    if (new_job == entry.job and (records is None or records == entry.records)
            and records_final == entry.records_final and forget_after == entry.forget_after):
        return None
    return Update(new_job, records, records_final, forget_after, started_by_files)


def decide_refresh(entry: PodEntry, records: Records, now: float) -> tuple[JobInfo, float] | None:
    """After the job's files changed: (job, started_by_files) when the pod's job must be taken as running
    although SLURM's last list had it pending, because a container started; None when the job stays as it is.

    Only a job never seen running, with no records of an earlier run (a requeued job clears them when it
    runs again, but an old run may still be writing while it is pending), is moved on by its files."""
    job = entry.job
    if job is None or job.state != "PENDING" or entry.records or entry.started_by_files:
        return None
    if not any(record.started_at is not None for record in records.values()):
        return None
    return replace(job, state="RUNNING", reason=""), now


def _updated(entry: PodEntry, update: Update | None) -> PodEntry:
    if update is None:
        return entry
    return replace(entry, job=update.job, records=entry.records if update.records is None else update.records,
                   records_final=update.records_final, forget_after=update.forget_after,
                   started_by_files=update.started_by_files)


def job_from_records(entry: PodEntry, records: Records) -> JobInfo:
    """The end of a job SLURM has forgotten, as its containers' exit records tell it."""
    exits = [r.exit_code for r in records.values()]
    known = entry.job
    if exits and all(code is not None for code in exits):
        failed = any(code != 0 for code in exits)
        return JobInfo(job_id=entry.job_id, name=naming.job_name(entry.uid), user=entry.user,
                       state="FAILED" if failed else "COMPLETED", workdir=entry.workdir,
                       start_time=known.start_time if known else None, end_time=known.end_time if known else None)
    return JobInfo(job_id=entry.job_id, name=naming.job_name(entry.uid), user=entry.user, state="FAILED",
                   reason="the job is no longer known to SLURM and left no exit records", workdir=entry.workdir)
