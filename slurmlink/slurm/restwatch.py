"""Mode 1: the API learns that a job wrote its pod's `status/` files from the proxy's file watch, a long poll of
`GET /slurmlink/v1/status-changes` (wire/statuschanges.py; the proxy side is proxy/filewatch.py).

It is a StatusWatch like mode 2's: the jobs it is told of go to `on_change` (the poller's refresh, which reads
their records through `/statuses`: files, no SLURM query), so a start or an end reaches the change feed without
waiting for a poll. One long poll per identity: the service identity's for every pod when there is one, else each
user's own token for that user's pods. Each call names the jobs to keep watching (at most MAX_JOBS_PER_CALL, in
turns); a job submitted meanwhile is watched by the proxy from its submission, so the call need not be renewed,
and the API reads a new pod once when it begins to watch it (what the proxy told before the API knew the job).

A proxy that does not offer the route (404: `files.watch: off`, or an older proxy) or refuses it (403) is asked
again every OFF_RECHECK_SECONDS; meanwhile SLURM's polls carry status as before. SLURM stays the authority for
jobs that end without writing (cancelled, node failure, time limit): the watch only triggers reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from slurmlink.core.records import PodDirectory
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.statuswatch import OnChange, StatusWatch
from slurmlink.wire.statuschanges import DEFAULT_WAIT_SECONDS, MAX_JOBS_PER_CALL, StatusChanges

log = logging.getLogger(__name__)
OFF_RECHECK_SECONDS = 300.0
RETRY_SECONDS = (1.0, 30.0)  # after a failed call: first delay, doubling up to the second
SERVICE = ""  # the group of every pod when the service identity holds the long poll

# (user, or SERVICE for the service identity; the jobs to name; the cursor; wait) -> the proxy's answer.
# Raises SlurmError; its `status` attribute (rest.Refused) tells a refusal of the proxy.
Ask = Callable[[str, list[str], str | None, float], Awaitable[StatusChanges]]


class ProxyWatch(StatusWatch):
    def __init__(self, on_change: OnChange, ask: Ask, *, shared: bool, wait: float = DEFAULT_WAIT_SECONDS) -> None:
        """`shared`: a service identity holds one long poll for every pod (else one per user)."""
        super().__init__(on_change)
        self.ask = ask
        self.shared = shared
        self.wait = wait
        self.pods: dict[str, PodDirectory] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._running = False
        self._refused: set[str] = set()  # job ids the proxy said it does not watch (logged once)

    def track_pods(self, pods: Mapping[str, PodDirectory]) -> None:
        new = set(pods) - set(self.pods)
        self.pods = dict(pods)
        self.watched = {uid: pod.workdir for uid, pod in pods.items()}
        if new:
            # Read once: the proxy watches a job from its submission and may have told of its start before the API
            # knew the job's id (a told id the API does not know is passed over).
            self.changed(new)
        if self._running:
            self._follow_groups()

    def add_pods(self, pods: Mapping[str, PodDirectory]) -> None:
        self.track_pods({**self.pods, **pods})

    def _group(self, pod: PodDirectory) -> str:
        return SERVICE if self.shared else pod.user

    async def run(self) -> None:
        self._running = True
        self._follow_groups()
        try:
            await super().run()
        finally:
            self._running = False
            self.close()

    def close(self) -> None:
        for task in self._followers.values():
            task.cancel()
        self._followers.clear()

    def _follow_groups(self) -> None:
        for group in {self._group(pod) for pod in self.pods.values()}:
            task = self._followers.get(group)
            if task is None or task.done():
                self._followers[group] = asyncio.create_task(self._follow(group))

    def _jobs_of(self, group: str) -> list[str]:
        return sorted(pod.job_id for pod in self.pods.values() if self._group(pod) == group)

    async def _follow(self, group: str) -> None:
        """Hold the group's long poll while it has pods."""
        cursor: str | None = None
        retry = RETRY_SECONDS[0]
        turn = 0
        while jobs := self._jobs_of(group):
            turn = turn if turn < len(jobs) else 0
            named = jobs[turn:turn + MAX_JOBS_PER_CALL]
            try:
                answer = await self.ask(group, named, cursor, self.wait)
            except SlurmError as exc:
                status = getattr(exc, "status", None)
                if status in (403, 404, 405):
                    log.warning("the proxy's file watch is not available (%s): job states come from SLURM's polls; "
                                "asking again in %.0f s", exc.message, OFF_RECHECK_SECONDS)
                    cursor = None
                    await asyncio.sleep(OFF_RECHECK_SECONDS)
                else:  # the proxy restarting, a token that expired: the polls carry on meanwhile
                    log.info("the proxy's file watch: %s; again in %.0f s", exc.message, retry)
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, RETRY_SECONDS[1])
                continue
            except Exception:  # e.g. an answer that is not the route's shape: the watch must not stop for good
                log.exception("the proxy's file watch failed; again in %.0f s", retry)
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_SECONDS[1])
                continue
            retry = RETRY_SECONDS[0]
            turn += MAX_JOBS_PER_CALL
            self._note_refused(answer.refused)
            by_job = {pod.job_id: uid for uid, pod in self.pods.items()}
            told = {by_job[job_id] for job_id in answer.jobs if job_id in by_job}
            if told:
                self.changed(told)  # on a reset: every job named, read once
            cursor = answer.cursor

    def _note_refused(self, refused: Mapping[str, str]) -> None:
        for job_id, reason in refused.items():
            if job_id not in self._refused:
                log.info("the proxy does not watch the files of job %s: %s", job_id, reason)
        self._refused = (self._refused | set(refused)) & {pod.job_id for pod in self.pods.values()}

