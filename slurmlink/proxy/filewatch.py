"""The file watch: which of a caller's jobs wrote their pod's `status/` files, as a long poll
(`GET /slurmlink/v1/status-changes`, wire/statuschanges.py). It is mode 1's counterpart of the API's own watch in
mode 2: the API learns a start or an end as soon as the job writes it, and reads the files (`/statuses`) without
asking SLURM.

- What is watched: the jobs submitted through this proxy (the ledger), from their submission on, and the jobs
  callers name in their long polls; a job nobody named for KEEP_SECONDS is no longer watched. The watch itself is
  slurm/statuswatch.py (inotify or stat), on directories of the job's owner only, never through a symlink.
- Who is told what: a user about their own jobs, a service identity about the jobs submitted through this proxy
  (those whose files it may read). Jobs are authorised from the ledger alone: the watch never asks slurmrestd,
  and a job the ledger does not have is `refused` (SLURM's polls still tell its state).
- The cursor is `<epoch>:<revision>`: a batch of changes gets the next revision, and a caller is told its jobs whose
  last change is newer than its cursor. A cursor of another epoch (the proxy restarted) gets `reset` and every job
  named, to be read at once: what was written while no long poll was held is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.ledger import Ledger, LedgerEntry
from slurmlink.proxy.poddir import PodDir, check_owner, check_workdir, local_uid
from slurmlink.proxy.roles import SERVICE, Caller
from slurmlink.slurm.podfiles import PodFiles
from slurmlink.slurm.statuswatch import make_watch
from slurmlink.wire.statuschanges import MAX_WAIT_SECONDS, StatusChanges

log = logging.getLogger("slurmlink.proxy")
KEEP_SECONDS = 2 * MAX_WAIT_SECONDS + 30  # a caller names its jobs at least once per long poll
MAX_WATCHED = 20_000
MAX_WATCHED_PER_OWNER = 2_000  # one account's jobs (its old ones named again and again) cannot crowd out the others
MAX_LONG_POLLS_PER_CALLER = 8


@dataclass
class Watched:
    pod: PodDir
    kept_at: float  # when it was submitted or last named (monotonic)


class FileWatch:
    def __init__(self, files: PodFiles, ledger: Ledger | None, method: str, stat_interval: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`method`: `inotify` or `stat` (statuswatch.choose_method's answer, not `off`)."""
        self.files = files
        self.ledger = ledger
        watch = make_watch(method, self._on_change, stat_interval)
        assert watch is not None, "no FileWatch is made with the watch off"
        self.watch = watch
        self.clock = clock
        self.epoch = secrets.token_hex(8)
        self.revision = 0
        self.jobs: dict[str, Watched] = {}
        self.per_owner: Counter[str] = Counter()  # jobs watched, by owner
        self.changed_at: dict[str, int] = {}  # job id -> revision of its last change
        self.long_polls: dict[str, int] = {}  # caller -> long polls held now
        self.closed = False
        self._news = asyncio.Event()  # set (and replaced) at every change

    @property
    def cursor(self) -> str:
        return f"{self.epoch}:{self.revision}"

    async def run(self) -> None:
        await self.watch.run()

    def close(self) -> None:
        """End the long polls now (the server waits for requests in progress before it stops)."""
        self.closed = True
        self._news.set()

    def release(self) -> None:
        self.close()
        self.watch.close()

    # ---- what is watched -----------------------------------------------------------------------------------

    def submitted(self, entry: LedgerEntry) -> None:
        """A job just submitted through the proxy: watched from now on, so that a long poll already held tells
        its start (its directory does not exist yet: the job makes it, then its status/)."""
        try:
            pod = self._located(entry.job_id, entry)
        except Refusal:
            return
        now = self.clock()
        self._prune(now)
        self._remove(entry.job_id)  # SLURM gave the id out again
        if self._room_for(pod.owner) is None:
            self._add(pod, now)
        self._track()

    def name(self, caller: Caller, job_ids: Iterable[str]) -> tuple[list[str], dict[str, str]]:
        """Keep watching the caller's jobs among `job_ids` (and begin with the new ones): (watched, refused)."""
        now = self.clock()
        watched: list[str] = []
        refused: dict[str, str] = {}
        added = self._prune(now)
        for job_id in dict.fromkeys(job_ids):
            known = self.jobs.get(job_id)
            if known is not None and self._may_see(caller, known.pod):
                known.kept_at = now
                watched.append(job_id)
                continue
            try:
                entry = self.ledger.get(job_id) if self.ledger is not None else None
                pod = self._located(job_id, entry)
                check_owner(job_id, pod.owner, caller)
            except Refusal as refusal:
                refused[job_id] = refusal.message
                continue
            if (full := self._room_for(pod.owner)) is not None:
                refused[job_id] = full
                continue
            self._add(pod, now)
            watched.append(job_id)
            added = True
        if added:
            self._track()
        return watched, refused

    def _room_for(self, owner: str) -> str | None:
        """Why no more jobs of `owner` may be watched now (None: they may)."""
        if len(self.jobs) >= MAX_WATCHED:
            return f"the proxy watches at most {MAX_WATCHED} jobs' files"
        if self.per_owner[owner] >= MAX_WATCHED_PER_OWNER:
            return f"the proxy watches at most {MAX_WATCHED_PER_OWNER} jobs' files of one account"
        return None

    def _located(self, job_id: str, entry: LedgerEntry | None) -> PodDir:
        if entry is None:
            raise Refusal(404, "NotWatched", f"job {job_id} was not submitted through this proxy: its files are not "
                          "watched (the watch asks SLURM nothing); SLURM's polls tell its state")
        check_workdir(job_id, entry.workdir, self.files)
        return PodDir(job_id, entry.user, local_uid(job_id, entry.user), entry.workdir)

    def _prune(self, now: float) -> bool:
        """Forget the jobs nobody named for KEEP_SECONDS; True if the watched set changed."""
        stale = [job_id for job_id, watched in self.jobs.items() if now - watched.kept_at > KEEP_SECONDS]
        for job_id in stale:
            self._remove(job_id)
        return bool(stale)

    def _add(self, pod: PodDir, now: float) -> None:
        self._remove(pod.job_id)  # SLURM gave the id out again
        self.jobs[pod.job_id] = Watched(pod, now)
        self.per_owner[pod.owner] += 1

    def _remove(self, job_id: str) -> None:
        watched = self.jobs.pop(job_id, None)
        if watched is not None:
            self.per_owner[watched.pod.owner] -= 1
            if not self.per_owner[watched.pod.owner]:
                del self.per_owner[watched.pod.owner]
        self.changed_at.pop(job_id, None)

    def _track(self) -> None:
        self.watch.track({job_id: w.pod.workdir for job_id, w in self.jobs.items()},
                         owners={job_id: w.pod.uid for job_id, w in self.jobs.items()})

    @staticmethod
    def _may_see(caller: Caller, pod: PodDir) -> bool:
        # every watched job is in the ledger: a service identity may read its files
        return caller.role == SERVICE or pod.owner == caller.user

    # ---- what changed --------------------------------------------------------------------------------------

    async def _on_change(self, job_ids: set[str]) -> None:
        """The watch saw these jobs' directories change (or began watching them where there may be something to
        read). A job whose pod directory is not there (not started yet) has nothing to read: not told."""
        workdirs = {job_id: w.pod.workdir for job_id in job_ids if (w := self.jobs.get(job_id)) is not None}
        present = await asyncio.to_thread(_directories, workdirs)
        if not present:
            return
        self.revision += 1
        for job_id in present:
            if job_id in self.jobs:
                self.changed_at[job_id] = self.revision
        self._news.set()
        self._news = asyncio.Event()

    def _told(self, caller: Caller, after: int) -> list[str]:
        return sorted(job_id for job_id, revision in self.changed_at.items()
                      if revision > after and (w := self.jobs.get(job_id)) is not None and self._may_see(caller, w.pod))

    async def changes(self, caller: Caller, job_ids: list[str], since: str | None, wait: float) -> StatusChanges:
        """The long poll: the caller's jobs changed after `since`, waiting up to `wait` seconds for one."""
        after = _revision(since, self.epoch) if since else None
        key = caller.user if caller.role != SERVICE else f"service:{caller.subject}"
        if self.long_polls.get(key, 0) >= MAX_LONG_POLLS_PER_CALLER:
            raise Refusal(429, "TooManyLongPolls", f"{key} already holds {MAX_LONG_POLLS_PER_CALLER} long polls of "
                          "the file watch; end one first", retry_after=5)
        watched, refused = self.name(caller, job_ids)
        if after is None or after > self.revision:  # another proxy's cursor (or none): read everything named
            return StatusChanges(cursor=self.cursor, reset=True, jobs=watched, refused=refused)
        deadline = self.clock() + wait
        self.long_polls[key] = self.long_polls.get(key, 0) + 1
        try:
            while True:
                news = self._news
                told = self._told(caller, after)
                remaining = deadline - self.clock()
                if told or self.closed or remaining <= 0:
                    return StatusChanges(cursor=self.cursor, jobs=told, refused=refused)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(news.wait(), remaining)
        finally:
            self.long_polls[key] -= 1
            if not self.long_polls[key]:
                del self.long_polls[key]


def _revision(since: str, epoch: str) -> int | None:
    """The revision of a cursor of this epoch; None for another epoch's; a malformed cursor is refused."""
    their_epoch, sep, revision = since.partition(":")
    if not sep or not their_epoch or not revision.isdigit() or len(revision) > 18:
        raise Refusal(400, "BadRequest", f"since: {since[:80]!r} is not a cursor (<epoch>:<revision>)")
    return int(revision) if their_epoch == epoch else None


def _directories(workdirs: dict[str, str]) -> set[str]:
    """The jobs whose pod directory is there (a directory, not a symlink)."""
    present = set()
    for job_id, workdir in workdirs.items():
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(workdir).st_mode):
                present.add(job_id)
    return present
