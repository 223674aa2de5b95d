"""What the API does with pods, independent of HTTP: create, delete, status, logs, capacity."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from slurmlink.api import logs, metrics, projected
from slurmlink.api.accounts import choose_resolver
from slurmlink.api.changes import Delta
from slurmlink.api.config import ApiConfig
from slurmlink.api.errors import BadRequest, Conflict, NotFound, NotReady
from slurmlink.api.poller import StatusPoller
from slurmlink.api.registry import PodEntry, Registry
from slurmlink.api.sitepolicy import SitePolicyGate
from slurmlink.core.errors import PodRejected
from slurmlink.core.naming import job_name, pod_workdir
from slurmlink.core.records import JobInfo
from slurmlink.slurm.base import PodTokenVisibility, SchedulerBackend, SlurmError, Unsupported
from slurmlink.slurm.statuswatch import StatusWatch, choose_method, make_watch
from slurmlink.translate.flags import classify_flags
from slurmlink.translate.job import BatchJob
from slurmlink.translate.podspec import container_names, pod_annotations, pod_ref
from slurmlink.translate.script import build_job
from slurmlink.translate.site import SiteConfig
from slurmlink.translate.status import container_statuses, rejected_statuses
from slurmlink.wire.interlink import CreateRequest, LogStruct, PingResponse, PodStatus, ResourcesResponse
from slurmlink.wire.names import FLAGS_ANNOTATION
from slurmlink.wire.projected import ProjectedWrite

log = logging.getLogger(__name__)
RECOVERY_WAIT_SECONDS = 30.0
KILL_MARGIN_SECONDS = 5.0  # after the grace period, before the job is killed outright
CLOCK_SKEW_SECONDS = 60.0  # how far the apiserver's clock may be ahead of ours


class PodService:
    def __init__(self, config: ApiConfig, backend: SchedulerBackend, registry: Registry | None = None) -> None:
        self.config = config
        self.backend = backend
        # Mode 1: the backend acts with each pod's own token, so it may not see every user's jobs.
        self.pod_tokens = backend if isinstance(backend, PodTokenVisibility) else None
        self.accounts = choose_resolver(config, backend)  # who a pod's job runs as
        self.registry = registry or Registry()
        self.site: SiteConfig = config.site.to_site()
        self.site_policy = SitePolicyGate(config.site_policy, self.site, backend)
        self.poller = StatusPoller(self.registry, backend, config.poll_interval, self.workdir_for,
                                   fast_interval=config.poll_interval_fast, on_change=self._changed)
        # The job's writes to its pod's status/ are noticed between polls: here in mode 2, through the proxy's
        # file watch in mode 1 (the backend's own)
        self.watch: StatusWatch | None = None
        if config.backend == "cli":
            method = choose_method(config.watch_files, config.job_root)
            self.watch = make_watch(method, self.poller.refresh, config.watch_stat_interval)
        elif config.watch_files != "off":
            self.watch = backend.status_watch(self.poller.refresh)
        self.poller.watch = self.watch
        log.info("job files under %s: %s", config.job_root,
                 "not watched" if self.watch is None else f"watched ({type(self.watch).__name__})")
        self.recovered = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # Pods whose sbatch failed in a way that may still have made a job (a timeout): look before
        # submitting again, so that a retry cannot make a second job.
        self._uncertain: set[str] = set()
        self.started_at = time.time()

    # --- start-up ----------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Learn every pod SLURM runs for us before accepting creates, so none is submitted twice."""
        delay = 0.5
        while True:
            try:
                await self.poller.poll_once()
                self.recovered.set()
                return
            except SlurmError as exc:
                log.warning("cannot recover state from SLURM yet: %s", exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _wait_recovered(self) -> None:
        if self.recovered.is_set():  # every create asks: no task and timer for the usual answer
            return
        try:
            await asyncio.wait_for(self.recovered.wait(), RECOVERY_WAIT_SECONDS)
        except TimeoutError as exc:
            raise NotReady("slurmlink has not yet recovered its state from SLURM; retry") from exc

    # --- create ------------------------------------------------------------------------------------

    def workdir_for(self, namespace: str, uid: str) -> str:
        return pod_workdir(self.config.job_root, namespace, uid)

    async def create(self, request: CreateRequest) -> str:
        """Submit the pod's job, once. Returns the job id ("" when the pod was rejected)."""
        await self._wait_recovered()
        ref = pod_ref(request.pod)
        async with self.registry.lock(ref.uid):
            entry = self.registry.get(ref.uid)
            if entry is not None and (entry.job_id or entry.rejected):
                entry.pod = request.pod
                if not entry.rejected:
                    await self.accounts.sent_again(request)
                return entry.job_id  # the same pod twice is one job
            entry = PodEntry(uid=ref.uid, namespace=ref.namespace, name=ref.name, pod=request.pod)
            try:
                account = await self.accounts.account_for(request)
                entry.user = account.user
                placement = self.site_policy.place(request.pod, account)
                uncertain = ref.uid in self._uncertain
                if (uncertain or self._maybe_submitted_before_start(request.pod)) \
                        and await self._found_after_uncertain_submit(entry, fresh=uncertain):
                    self._changed([ref.uid])
                    return entry.job_id
                entry.workdir = self.workdir_for(ref.namespace, ref.uid)
                job = self._translate(request, entry.workdir, self.site_policy.site_for(placement))
                job = self.site_policy.job_for(job, request.pod, placement, account, f"pod {ref.namespace}/{ref.name}")
                async with self.site_policy.within_caps(placement, entry.user):
                    entry.job_id = await self.backend.submit(job, entry.user)
                entry.placement = self.site_policy.placed(job, placement, entry.job_id)
                # A poll whose job list was taken before the job existed must not judge it (and take it
                # for gone): polls only judge entries that existed when they began.
                entry.created = time.monotonic()
            except PodRejected as exc:
                entry.rejected = (exc.reason, exc.message)
                metrics.SUBMITS.labels("rejected").inc()
                log.info("pod %s/%s rejected: %s", ref.namespace, ref.name, exc.message)
            except SlurmError as exc:
                if exc.transient:
                    metrics.SUBMITS.labels("transient").inc()
                    self._uncertain.add(ref.uid)
                    raise NotReady(f"SLURM is unavailable: {exc.message}") from exc
                entry.rejected = ("SlurmRejected", exc.message)
                metrics.SUBMITS.labels("rejected").inc()
                log.info("SLURM rejected pod %s/%s: %s", ref.namespace, ref.name, exc.message)
            else:
                metrics.SUBMITS.labels("submitted").inc()
                entry.job = JobInfo(job_id=entry.job_id, name=job.name, user=entry.user, state="PENDING",
                                    workdir=entry.workdir)
                log.info("pod %s/%s is SLURM job %s as %s", ref.namespace, ref.name, entry.job_id, entry.user)
            self.registry.entries[ref.uid] = entry
            self._changed([ref.uid])
            if entry.job_id:
                # The entry already says PENDING; polls come sooner (backing off) until SLURM or the job's files
                # show it started. A burst of creates costs a few polls, not one per create (poller.submitted).
                self.poller.submitted()
            return entry.job_id

    def placement(self, uid: str) -> str:
        """The VO, account and partition the site policy gave the pod's job ("" when no VO applied)."""
        entry = self.registry.get(uid)
        return entry.placement if entry is not None else ""

    def dropped_flags(self, pod: dict[str, Any]) -> tuple[str, ...]:
        """Options of the pod's flags annotation that slurmlink sets itself and so dropped (see flags.py)."""
        try:
            return classify_flags(pod_annotations(pod).get(FLAGS_ANNOTATION, ""), self.site).dropped
        except PodRejected:
            return ()

    def _translate(self, request: CreateRequest, workdir: str, site: SiteConfig) -> BatchJob:
        projected = {str((m.get("metadata") or {}).get("name")): dict(m.get("data") or {})
                     for m in request.projected}
        try:
            return build_job(request.pod, workdir=workdir, site=site, configmaps=request.configmaps,
                             secrets=request.secrets, projected=projected)
        except PodRejected:
            raise
        except Exception as exc:  # a malformed pod must end Failed with a reason, not Pending forever
            log.warning("cannot translate pod %s: %r", request.uid, exc)
            raise PodRejected(f"the pod cannot be translated into a job: {exc!r}", "InvalidPod") from exc

    def _maybe_submitted_before_start(self, pod: dict[str, Any]) -> bool:
        """In mode 1 a restarted API cannot list every user's jobs without a service identity, so a pod
        older than this process may have a job already: it is looked for (with the pod's own token)."""
        if self.pod_tokens is None or self.pod_tokens.sees_all_jobs:
            return False  # every job was recovered before creates were accepted
        created = (pod.get("metadata") or {}).get("creationTimestamp")
        try:
            created_at = datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
            # the apiserver's clock may be ahead of ours
            return created_at < self.started_at + CLOCK_SKEW_SECONDS
        except ValueError:
            return True  # unknown age: looking costs one list call, a second job would cost more

    async def _found_after_uncertain_submit(self, entry: PodEntry, *, fresh: bool) -> bool:
        """After an sbatch that may have made a job, find that job before submitting again (`fresh`: from
        SLURM itself, not from a cached list the new job may be missing from)."""
        try:
            jobs = await self.backend.jobs(fresh=fresh)
        except SlurmError as exc:
            raise NotReady(f"SLURM is unavailable: {exc.message}") from exc
        self._uncertain.discard(entry.uid)
        workdir = self.workdir_for(entry.namespace, entry.uid)
        user = entry.user
        for job in jobs:
            if job.name == job_name(entry.uid) and job.user == user and job.workdir == workdir:
                entry.user, entry.workdir, entry.job_id, entry.job = user, workdir, job.job_id, job
                self.registry.entries[entry.uid] = entry
                log.info("pod %s/%s: found job %s of an earlier, uncertain submission",
                         entry.namespace, entry.name, job.job_id)
                return True
        return False

    # --- delete ------------------------------------------------------------------------------------

    async def delete(self, pod: dict[str, Any]) -> str:
        await self._wait_recovered()
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        if self.registry.get(uid) is None:
            return "no such pod"
        async with self.registry.lock(uid):
            entry = self.registry.get(uid)
            if entry is None:
                return "no such pod"
            entry.deleting = True
            # Even a job we believe finished: our view may be a poll old, and scancel of an ended job is a no-op.
            if entry.job_id:
                # Our cached state may be a poll old, so SLURM decides: a pending job is cancelled; a running
                # one gets SIGTERM to its script, which stops the containers within the grace period.
                await self.backend.cancel(entry.job_id, entry.user, only_state="PENDING")
                await self.backend.cancel(entry.job_id, entry.user, signal="TERM", only_state="RUNNING")
                self._spawn(self._kill_later(entry, _grace(pod, entry) + KILL_MARGIN_SECONDS))
            self.poller.hurry()
            return f"job {entry.job_id or 'none'} cancelled"

    async def _kill_later(self, entry: PodEntry, delay: float) -> None:
        await asyncio.sleep(delay)
        if not entry.finished:
            try:
                await self.backend.cancel(entry.job_id, entry.user)
            except SlurmError as exc:
                log.warning("final cancel of job %s failed: %s", entry.job_id, exc.message)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- status ------------------------------------------------------------------------------------

    def statuses(self, pods: list[dict[str, Any]]) -> list[PodStatus]:
        """Served from the poller's cache: no SLURM call here, however many pods are asked for."""
        result = []
        for pod in pods:
            meta = pod.get("metadata") or {}
            uid = str(meta.get("uid") or "")
            entry = self.registry.get(uid)
            if entry is not None and pod.get("spec"):
                entry.pod = pod
                self.observe([uid])  # the spec decides the containers listed (after a restart: known only now)
            result.append(self.status_of(entry, pod))
        return result

    # --- the change feed ---------------------------------------------------------------------------

    def _changed(self, uids: list[str] | None) -> None:
        """After a poll (None: any pod may have changed), a refresh of some pods' records or a create."""
        self.observe(uids)
        if self.watch is None:
            return
        if uids is None:  # after a poll: exactly the pods still to watch
            self.watch.track_pods({e.uid: e.directory for e in self.registry.entries.values() if _watched(e)})
        else:  # only these pods can have become watchable; one whose records became final goes at the next poll
            entries = self.registry.entries
            self.watch.add_pods({uid: e.directory for uid in uids if (e := entries.get(uid)) and _watched(e)})

    def observe(self, uids: list[str] | None = None) -> None:
        """Give the change feed the status of these pods (None: all) as /status would answer it now; those
        that differ from the last one get a new revision and wake the long polls."""
        entries = self.registry.entries
        for uid in list(entries) if uids is None else uids:
            entry = entries.get(uid)
            if entry is not None and not _fed_already(entry):
                self.registry.changes.record(uid, _fingerprint(self.feed_status(entry)))

    def feed_status(self, entry: PodEntry) -> PodStatus:
        """The status /status answers for the pod, as the feed tells it."""
        return self.status_of(entry, entry.pod or {})

    async def changes(self, since: str | None, wait: float) -> tuple[Delta, list[PodStatus]]:
        """The long poll: the pods changed after `since` (their status now), waiting up to `wait` seconds."""
        if since:  # a malformed cursor is the caller's error, whatever the state
            self.registry.changes.since(since)
        with metrics.LONG_POLLS.track_inprogress():
            await self._wait_recovered()
            delta = await self.registry.changes.wait(since, wait)
        # No await from here on: the statuses are those of the cursor handed out.
        pods = [self.feed_status(entry) for uid in delta.uids if (entry := self.registry.get(uid)) is not None]
        return delta, pods

    def status_of(self, entry: PodEntry | None, pod: dict[str, Any]) -> PodStatus:
        meta = pod.get("metadata") or {}
        if entry is None:
            waiting = {"waiting": {"reason": "JobNotFound", "message": "slurmlink has no job for this pod"}}
            names = container_names(pod)[1] if pod.get("spec") else []
            return PodStatus(name=str(meta.get("name", "")), uid=str(meta.get("uid", "")),
                             namespace=str(meta.get("namespace", "")),
                             containers=[{"name": n, "state": waiting, "ready": False, "restartCount": 0}
                                         for n in names])
        spec_pod = entry.pod or (pod if pod.get("spec") else _pod_from_records(entry))
        if entry.rejected:
            containers, inits = rejected_statuses(spec_pod, *entry.rejected)
        else:
            containers, inits = container_statuses(spec_pod, entry.job, entry.records)
        return PodStatus(name=entry.name, uid=entry.uid, namespace=entry.namespace, jid=entry.job_id,
                         containers=containers, init_containers=inits)

    # --- logs --------------------------------------------------------------------------------------

    async def logs(self, request: LogStruct) -> AsyncIterator[bytes]:
        entry = self.registry.get(request.pod_uid)
        if entry is None:
            raise NotFound(f"no pod with uid {request.pod_uid}")
        names = set(entry.records)
        if entry.pod:
            inits, apps = container_names(entry.pod)
            names.update(inits + apps)
        if request.container_name not in names:
            raise NotFound(f"pod {entry.namespace}/{entry.name} has no container {request.container_name}")
        container = request.container_name
        record = entry.records.get(container)
        previous = request.opts.previous
        if previous and (record is None or not record.restarts):
            # the kubelet's words when a container has not been restarted
            raise BadRequest(f'previous terminated container "{container}" in pod "{entry.name}" not found')
        if not entry.workdir or entry.rejected:
            return _once(b"")
        restarts = record.restarts if record else 0

        async def read(offset: int) -> bytes:
            return await self.backend.read_log(entry.directory, container, offset, previous=previous)

        def ended() -> bool:
            now = entry.records.get(container)
            # a restart ends the followed instance (its log becomes the previous one), as with the kubelet
            return previous or entry.finished or (now is not None and (now.exit_code is not None
                                                                      or now.restarts != restarts))

        return logs.stream(read, request.opts, record, ended, self.config.log_follow_interval)

    # --- projected volumes -------------------------------------------------------------------------

    async def write_projected(self, request: ProjectedWrite) -> int:
        """Replace token files of a running pod's projected volumes; returns how many were written."""
        entry = self.registry.get(request.pod_uid)
        if entry is None:
            raise NotFound(f"no pod with uid {request.pod_uid}")
        if entry.pod is None or not entry.pod.get("spec"):
            # after a restart the API knows the job before the vk sends the pod again: the caller retries
            raise Conflict(f"pod {entry.namespace}/{entry.name}: its spec is not known yet; retry")
        files = projected.allowed_files(entry.pod, request)  # checked before the job's state: 400 beats 409
        running = entry.job is not None and entry.job.state == "RUNNING"
        if not running or entry.deleting or entry.finished or not entry.workdir:
            state = entry.job.state if entry.job else "no job"
            raise Conflict(f"pod {entry.namespace}/{entry.name} is not running ({state})")
        try:
            await self.backend.write_volume_files(entry.directory, files)
        except Unsupported:
            raise
        except SlurmError as exc:
            if exc.transient:
                raise NotReady(exc.message) from exc
            raise Conflict(f"pod {entry.namespace}/{entry.name}: {exc.message}") from exc
        log.info("pod %s/%s: refreshed %d projected file(s)", entry.namespace, entry.name, len(files))
        return len(files)

    # --- capacity ----------------------------------------------------------------------------------

    async def ping(self) -> PingResponse:
        capacity = await self.backend.capacity()
        if capacity.cpus <= 0 and capacity.memory_mb <= 0:
            # A real cluster with nothing free is possible, but say so rather than silently draining.
            log.warning("SLURM reports no free CPUs and no free memory")
        return PingResponse(status="ok", resources=ResourcesResponse(
            cpu=str(capacity.cpus), memory=f"{capacity.memory_mb}Mi", pods=str(max(capacity.cpus, 1) * 10),
        ))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.watch is not None:
            self.watch.close()
        await self.accounts.aclose()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


def _grace(pod: dict[str, Any], entry: PodEntry) -> float:
    meta = pod.get("metadata") or {}
    for value in (meta.get("deletionGracePeriodSeconds"),
                  ((entry.pod or {}).get("spec") or {}).get("terminationGracePeriodSeconds")):
        if isinstance(value, int) and value >= 0:
            return float(value)
    return 30.0


def _watched(entry: PodEntry) -> bool:
    """Whether the pod's files are worth watching: it has a job whose records may still change."""
    return bool(entry.job_id and entry.workdir and not entry.rejected and not entry.records_final)


def _fed_already(entry: PodEntry) -> bool:
    """Whether the feed already has the status of the entry as it is now (status_of reads only these). Notes
    what it is now otherwise. The pod is the same object or not: callers replace it, never change it."""
    basis = (entry.pod, entry.job_id, entry.job, entry.rejected, entry.records)
    fed = entry.fed
    if fed is not None and fed[0] is basis[0] and fed[1:] == basis[1:]:
        return True
    entry.fed = basis
    return False


def _fingerprint(status: PodStatus) -> str:
    wire = json.dumps(status.to_wire(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(wire.encode(), digest_size=16).hexdigest()


def _pod_from_records(entry: PodEntry) -> dict[str, Any]:
    """A pod recovered from SLURM alone (no caller has sent it since a restart): its containers by record."""
    return {"metadata": {"name": entry.name, "namespace": entry.namespace, "uid": entry.uid},
            "spec": {"containers": [{"name": name} for name in sorted(entry.records)] or [{"name": "main"}]}}
