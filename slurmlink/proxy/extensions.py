"""The proxy's own endpoints under `/slurmlink/v1/` (what slurmrestd cannot do: read files at the site).

    GET /slurmlink/v1/whoami                          {"user", "subject", "issuer", "role"}
    GET /slurmlink/v1/capacity[?partition=P]          {"cpus", "memory_mb", "gpus": {name: n}}, free now (in P and
                                                      the site policy's partitions, when it lists them)
    GET /slurmlink/v1/jobs/{id}/status                {"job_id", "user", "workdir", "files": {name: text}}
    GET /slurmlink/v1/statuses?jobs=1,2,3             {"jobs": {id: {"user", "workdir", "files"} | {"error", "reason"}}}
    GET /slurmlink/v1/status-changes?jobs=1,2&since=C&wait=30
                                                      {"cursor", "reset", "jobs": [id], "refused": {id: reason}}
                                                      (a long poll: filewatch.py)
    GET /slurmlink/v1/jobs/{id}/logs/{container}      the log's bytes (offset, limit_bytes, tail_lines, follow)
    POST /slurmlink/v1/jobs/{id}/signal?signal=TERM   signal the batch script of a running job (graceful stop)

They are reached after the same allow-list, authentication, authorisation, mapping and rate limit as
forwarded requests (slurmlink.proxy.gates); who may read which directory is slurmlink.proxy.poddir's job.
A new route is a rule in policy.RULES (which also says what a service identity may do with it) and a
handler here, named in `Extensions.routes`.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import JSONResponse, Response, StreamingResponse

from slurmlink.core.kube import is_dns_label
from slurmlink.core.states import is_finished
from slurmlink.proxy import policy
from slurmlink.proxy.capacity import free_capacity
from slurmlink.proxy.config import FilesSection
from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.filewatch import FileWatch
from slurmlink.proxy.joblookup import JobLookup
from slurmlink.proxy.ledger import Ledger
from slurmlink.proxy.logstream import LogReader, parse_query
from slurmlink.proxy.poddir import PodDir, locate, owner_of
from slurmlink.proxy.roles import Caller
from slurmlink.proxy.signals import BatchSignaller
from slurmlink.proxy.slurm_token import SlurmTokenError
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.podfiles import PodFiles, UnsafePodFile
from slurmlink.wire.names import LOG_SIZE_HEADER
from slurmlink.wire.statuschanges import DEFAULT_WAIT_SECONDS, MAX_JOBS_PER_CALL, MAX_WAIT_SECONDS

log = logging.getLogger("slurmlink.proxy")
MAX_JOBS_PER_STATUSES = 500
MAX_LOOKUPS_PER_STATUSES = 20


Handler = Callable[[Caller, str, str], Awaitable[Response]]  # (caller, raw path, raw query) -> the answer


class Extensions:
    def __init__(self, files: FilesSection | None, lookup: JobLookup, ledger: Ledger | None,
                 slurm_token: Callable[[], str], signaller: BatchSignaller | None = None,
                 watch: FileWatch | None = None, partitions: str | None = None) -> None:
        self.files = PodFiles(files.job_root) if files is not None else None
        self.reader = LogReader(self.files, files.max_chunk_bytes, files.follow_poll_seconds) \
            if self.files is not None and files is not None else None
        self.lookup = lookup
        self.ledger = ledger
        self.slurm_token = slurm_token  # raises SlurmTokenError; the app turns that into a 503
        self.signaller = signaller
        self.max_follows = files.max_follows_per_user if files is not None else 0
        self.follows: dict[str, int] = {}  # caller's account -> log follows open now
        self.watch = watch
        self.partitions = partitions  # where capacity is counted when the caller names no partition (site policy)

    def routes(self) -> dict[str, Handler]:
        """The handler of each extension rule of policy.RULES (which says who may call it)."""
        return {policy.WHOAMI: self.whoami, policy.CAPACITY: self.capacity, policy.STATUSES: self.statuses,
                policy.STATUS: self.status, policy.SIGNAL: self.signal, policy.LOGS: self.logs,
                policy.STATUS_CHANGES: self.status_changes}

    async def handle(self, rule: str, caller: Caller, path: str, query: str) -> Response:
        try:
            return await self.routes()[rule](caller, path, query)
        except Refusal as refusal:
            return refusal.response()
        except UnicodeDecodeError:
            return Refusal(400, "BadRequest", "the container name is not UTF-8").response()
        except SlurmTokenError as exc:
            log.error("no SlurmUser token: %s", exc)
            return Refusal(503, "ProxyMisconfigured", "the proxy has no SlurmUser token", retry_after=30).response()

    async def whoami(self, caller: Caller, path: str, query: str) -> Response:
        return JSONResponse({"user": caller.user, "subject": caller.subject, "issuer": caller.issuer,
                             "role": caller.role})

    async def capacity(self, caller: Caller, path: str, query: str) -> Response:
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        if set(params) - {"partition"} or len(params.get("partition", [])) > 1:
            raise Refusal(400, "BadRequest", "capacity takes one query parameter: partition")
        asked = params.get("partition", [""])[0]
        # as mode 2 counts: the site policy's partitions with the one the caller names
        partition = ",".join(p for p in (asked, self.partitions) if p) or None
        url = f"{self.lookup.upstream}/slurm/{await self.lookup.versions.get()}/nodes"
        return JSONResponse(await free_capacity(self.lookup.http, url, as_user=caller.user,
                                                token=self.slurm_token(), partition=partition))

    async def signal(self, caller: Caller, path: str, query: str) -> Response:
        job_id = _job_id(path)
        if self.signaller is None:
            raise Refusal(404, "NotFound", "this proxy does not signal batch scripts (no `signals` section configured)")
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        if set(params) != {"signal"} or len(params["signal"]) != 1:
            raise Refusal(400, "BadRequest", "signal takes exactly one query parameter: signal (e.g. TERM)")
        owner, _ = await owner_of(job_id, caller, ledger=self.ledger, lookup=self.lookup, token=self.slurm_token())
        # SLURM's word, not only the ledger's: a job id SLURM has given out again is someone else's job.
        if (await self.lookup.job(job_id, as_user=owner, token=self.slurm_token())).user != owner:
            raise Refusal(403, "Forbidden", f"job {job_id} no longer belongs to {owner}")
        await self.signaller.signal(job_id, owner, params["signal"][0])
        return JSONResponse({"job_id": job_id, "signal": params["signal"][0], "user": owner})

    async def _pod(self, caller: Caller, job_id: str) -> tuple[PodFiles, PodDir]:
        if self.files is None:
            raise Refusal(404, "NotFound", "this proxy does not serve job files (no `files` section configured)")
        pod = await locate(job_id, caller, ledger=self.ledger, lookup=self.lookup, token=self.slurm_token(),
                           files=self.files)
        return self.files, pod

    async def status(self, caller: Caller, path: str, query: str) -> Response:
        job_id = _job_id(path)
        files, pod = await self._pod(caller, job_id)
        try:
            found = await asyncio.to_thread(files.read_status, pod.workdir, pod.uid, owned_dirs=True)
        except SlurmError as exc:
            raise _file_refusal(exc, job_id) from None
        return JSONResponse({"job_id": job_id, "user": pod.owner, "workdir": pod.workdir, "files": found})

    async def statuses(self, caller: Caller, path: str, query: str) -> Response:
        """The status files of many jobs in one answer (one request per poll instead of one per pod); each
        job is checked on its own, and a refused one carries its refusal instead of files."""
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        ids = params.get("jobs", [""])[0].split(",") if set(params) == {"jobs"} and len(params["jobs"]) == 1 else []
        if not ids or len(ids) > MAX_JOBS_PER_STATUSES or not all(policy.is_job_id(i) and len(i) <= 12 for i in ids):
            raise Refusal(400, "BadRequest", f"statuses takes jobs=<id>,<id>,... (at most {MAX_JOBS_PER_STATUSES})")
        answers: dict[str, dict[str, object]] = {}
        located: list[PodDir] = []
        lookups = 0  # jobs outside the ledger cost slurmrestd a request each: bounded per answer
        for job_id in dict.fromkeys(ids):
            in_ledger = self.ledger is not None and self.ledger.get(job_id) is not None
            if not in_ledger and lookups >= MAX_LOOKUPS_PER_STATUSES:
                answers[job_id] = {"error": "TooManyLookups", "reason": f"at most {MAX_LOOKUPS_PER_STATUSES} jobs "
                                   "not submitted through this proxy per request; ask again for the others"}
                continue
            lookups += 0 if in_ledger else 1
            try:
                located.append((await self._pod(caller, job_id))[1])
            except Refusal as refusal:
                answers[job_id] = {"error": refusal.error, "reason": refusal.message}
        files = self.files

        def read_all() -> None:
            for pod in located:
                assert files is not None  # a job was located, so files are configured
                try:
                    found = files.read_status(pod.workdir, pod.uid, owned_dirs=True)
                    answers[pod.job_id] = {"user": pod.owner, "workdir": pod.workdir, "files": found}
                except SlurmError as exc:
                    refusal = _file_refusal(exc, pod.job_id)
                    answers[pod.job_id] = {"error": refusal.error, "reason": refusal.message}

        await asyncio.to_thread(read_all)
        return JSONResponse({"jobs": answers})

    async def status_changes(self, caller: Caller, path: str, query: str) -> Response:
        """The long poll of the file watch (filewatch.py): which of the caller's jobs wrote their status files."""
        if self.watch is None:
            raise Refusal(404, "NotFound", "this proxy does not watch job files (`files.watch: off`, or no `files` "
                          "section): poll SLURM for job states")
        params = urllib.parse.parse_qs(query, keep_blank_values=True)
        if set(params) - {"jobs", "since", "wait"} or any(len(values) > 1 for values in params.values()):
            raise Refusal(400, "BadRequest", "status-changes takes jobs=<id>,<id>,..., since=<cursor> and "
                          "wait=<seconds>, each at most once")
        ids = [i for i in params.get("jobs", [""])[0].split(",") if i]
        if len(ids) > MAX_JOBS_PER_CALL or not all(i.isdigit() and len(i) <= 12 for i in ids):
            raise Refusal(400, "BadRequest", f"jobs: at most {MAX_JOBS_PER_CALL} job ids, comma-separated")
        answer = await self.watch.changes(caller, ids, params.get("since", [""])[0] or None,
                                          _wait_seconds(params.get("wait", [""])[0]))
        return JSONResponse(answer.to_wire())

    async def logs(self, caller: Caller, path: str, query: str) -> Response:
        job_id, container = _job_id(path), path.split("/")[6]
        if not is_dns_label(container):  # as written: Kubernetes names containers so, nothing to decode
            raise Refusal(400, "BadRequest", f"not a container name: {container[:70]!r} (a DNS label)")
        wanted = parse_query(query)
        if wanted.follow and self.follows.get(caller.user, 0) >= self.max_follows:
            raise Refusal(429, "TooManyFollows", f"{caller.user} already follows {self.max_follows} logs; close one "
                          "or read without follow", retry_after=5)
        _, pod = await self._pod(caller, job_id)
        assert self.reader is not None  # there whenever files are
        try:
            first = await self.reader.once(pod, container, wanted)
        except SlurmError as exc:
            raise _file_refusal(exc, job_id) from None
        if not wanted.follow:
            return Response(first.data, media_type="application/octet-stream",
                            headers={LOG_SIZE_HEADER: str(first.size)})

        async def job_ended() -> bool:
            try:
                job = await self.lookup.job(job_id, as_user=pod.owner, token=self.slurm_token())
            except Refusal as refusal:
                return refusal.status == 404
            except Exception:  # noqa: BLE001 - no SlurmUser token for a moment: keep following
                return False
            return is_finished(job.state)  # it will write nothing more

        return StreamingResponse(self._counted(caller.user, self.reader.follow(pod, container, wanted, first,
                                                                               job_ended)),
                                 media_type="application/octet-stream")

    async def _counted(self, user: str, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`stream`, counted among `user`'s open follows while it lasts (however it ends)."""
        self.follows[user] = self.follows.get(user, 0) + 1
        try:
            async for data in stream:
                yield data
        finally:
            self.follows[user] -= 1
            if not self.follows[user]:
                del self.follows[user]


def _wait_seconds(text: str) -> float:
    if not text:
        return float(DEFAULT_WAIT_SECONDS)
    try:
        wait = float(text)
    except ValueError:
        raise Refusal(400, "BadRequest", f"wait: {text[:40]!r} is not a number of seconds") from None
    if not wait >= 0:  # also NaN
        raise Refusal(400, "BadRequest", "wait: 0 or more seconds")
    return min(wait, float(MAX_WAIT_SECONDS))


def _job_id(path: str) -> str:
    return path.split("/")[4]  # "", "slurmlink", "v1", "jobs", id, ...


def _file_refusal(exc: SlurmError, job_id: str) -> Refusal:
    if isinstance(exc, UnsafePodFile):
        return Refusal(403, "Forbidden", f"the files of job {job_id} are refused: {exc.message} (the proxy follows "
                       "no symlink and reads only the job owner's own directories and regular files)")
    log.error("reading the files of job %s failed: %s", job_id, exc.message)
    return Refusal(500, "FilesUnreadable", f"the proxy cannot read the files of job {job_id}: {exc.message} "
                   "(it needs root or CAP_DAC_READ_SEARCH)")
