"""The `rest` backend (mode 1): slurmlink's API runs outside the site and acts through `slurmlink proxy`
with each pod's own Check-in token (docs/mode1.md).

- Submit and cancel go to slurmrestd's job endpoints, status to its job list, container records and logs
  to the proxy's `/slurmlink/v1/` extensions (slurmrestd cannot read files).
- Status costs one list call per interval per identity, and a queue that did not change since the
  last call costs a `304` (`update_time`; v0.0.42 answers `200`, no jobs and a warning instead, and
  v0.0.40 and v0.0.41 take it only as "now-N"). With a service identity configured, that is one call in all.
- A pod's token is kept fresh from its refresh token when it has one (identity.refresh). When a user's
  token can no longer be used, the service identity takes over what the proxy lets it do: reading
  status and logs, and cancelling jobs that were submitted through the proxy. Without one, that user's
  pods keep their last known state (`blind_to`) rather than being taken for finished.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from slurmlink.core.errors import PodRejected
from slurmlink.core.naming import JOB_NAME_PREFIX
from slurmlink.core.records import Capacity, ContainerRecord, JobInfo, PodDirectory, VolumeFile
from slurmlink.identity.oidc import TokenValidator
from slurmlink.identity.refresh import Credentials, TokenSource
from slurmlink.slurm import rest_shapes
from slurmlink.slurm.base import PodTokenVisibility, SchedulerBackend, SlurmError, StepStream, Unsupported
from slurmlink.slurm.commands import sbatch
from slurmlink.slurm.credentials import Credential, CredentialStore, FileToken, FixedToken, usable
from slurmlink.slurm.restwatch import SERVICE, ProxyWatch
from slurmlink.slurm.statuswatch import OnChange, StatusWatch
from slurmlink.streams.remotecommand import PROTOCOL_HEADER
from slurmlink.translate import layout
from slurmlink.translate.job import BatchJob
from slurmlink.wire import names
from slurmlink.wire.names import EXTENSIONS, PROXY_EXEC_ROUTE, PROXY_PORTFORWARD_ROUTE, STATUS_CHANGES_ROUTE
from slurmlink.wire.statuschanges import StatusChanges

log = logging.getLogger(__name__)
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
# SLURM's communication errors (slurmctld down, restarting or busy; sockets) are worth a retry; its other
# errors are answers. 5005 is also what 22.05 says for a refused SlurmUser token: a site problem, not the pod's.
TRANSIENT_SLURM_ERRORS = frozenset({11, *range(1000, 1100), *range(1800, 1806), *range(5000, 5006)})
# Nothing left to cancel: deleting a pod twice, or after its job ended, is not an error.
GONE_ERRORS = frozenset({2017, 2021})  # invalid job id; already completing or completed
SKEW_ALLOWANCE_SECONDS = 30  # without the site's Date header: how far this host's clock may be ahead
CREDENTIAL_GRACE_SECONDS = 600.0  # a user whose token just named them keeps it this long without a pod
STATUSES_PER_CALL = 500  # the proxy's limit per /statuses request


@dataclass(frozen=True)
class RestConfig:
    url: str  # the proxy, e.g. https://hpc.example.org:8443
    api_version: str = "auto"  # "auto": the newest version slurmrestd's OpenAPI document offers
    service_token_file: str | None = None  # the API's own Check-in token, rotated by the site (see docs)
    timeout_seconds: float = 30.0
    submit_timeout_seconds: float = 60.0
    max_connections: int = 16
    verify: str | bool = True  # CA bundle file, or True for the system's
    partition: str | None = None  # capacity of this partition only
    max_log_chunk_bytes: int = 16 * 1024 * 1024


class Refused(SlurmError):
    """The proxy refused the request (401, 403, 404, 413), with its reason; `error` and `rule` are its body's
    (a site policy's refusal names the rule)."""

    def __init__(self, status: int, message: str, *, error: str = "", rule: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.status, self.error, self.rule, self.detail = status, error, rule, detail or message


_REASON_WORD = re.compile(r"[A-Z][A-Za-z]{0,63}")


@dataclass
class _Listing:
    """The last job list one identity got, and when: a `304` reuses it."""

    jobs: list[JobInfo] = field(default_factory=list)
    since: int | None = None  # when the site made it, by the site's clock (less a second)
    at: float = 0.0  # when it came, by this host's monotonic clock


class RestBackend(SchedulerBackend, PodTokenVisibility):
    def __init__(self, config: RestConfig, *, validator: TokenValidator | None = None,
                 http: httpx.AsyncClient | None = None, credentials: CredentialStore | None = None) -> None:
        self.config = config
        self.http = http or _client(config, config.max_connections)
        # The file watch's long polls (one per identity) hold a connection each: a pool of their own, so that they
        # never wait for the other requests nor hold them up.
        self.watch_http = http or _client(config, None)
        self.validator = validator  # pins the issuers a refresh token may be sent to; None: no refreshing
        # Refreshes go to Check-in, not to the site: the system's CAs, not the site's CA file.
        self.issuer_http = httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=10.0)
        self.service = FileToken(config.service_token_file) if config.service_token_file else None
        self.sees_all_jobs = self.service is not None
        # The pods' credentials: the store is the service's (api/backends.py makes it), the backend only reads it.
        self.credentials = credentials if credentials is not None else CredentialStore()
        self.version = "" if config.api_version == "auto" else config.api_version
        self._listings: dict[str, _Listing] = {}
        self._no_update_time: set[str] = set()  # API versions that refuse `jobs?update_time=`
        self._blind: frozenset[str] = frozenset()
        self._proxy_signals: bool | None = None  # does the proxy signal job scripts alone (None: not asked yet)
        self._placements: dict[str, str] = {}  # job id -> the placement the proxy told, until the API asks
        # exec and port-forward connections, held open for as long as their sessions last: a pool without a cap
        # of its own (the API's session limits bound them), never taking a slot of the other requests
        self.stream_http = http or _client(config, None)

    # ---- identities ------------------------------------------------------------------------------------

    async def user_for_token(self, credentials: Credentials) -> str:
        """The local account the proxy maps a pod's token to; the credential is kept for that user."""
        credential: Credential
        if credentials.refresh_token and self.validator is not None:
            credential = TokenSource(credentials, self.validator, self.issuer_http)
        else:
            credential = FixedToken(credentials.access_token)
        body = _json(await self._call("GET", f"{EXTENSIONS}/whoami", await credential.token()), "whoami")
        user = str(body.get("user") or "")
        if not user or body.get("role", "user") != "user":
            raise SlurmError("the proxy mapped the pod's token to no user account")
        self.credentials.offer(user, credential)
        return user

    def keep_users(self, users: set[str]) -> None:
        """Forget the credentials (and listings) of users who have no pod any more (not those who just
        signed in: their pod may be on its way into the registry)."""
        for user in self.credentials.forget_all_but(users, CREDENTIAL_GRACE_SECONDS):
            self._listings.pop(f"user:{user}", None)

    async def _token_for(self, user: str, *, service_may: bool) -> str:
        """`user`'s own token while it lasts; then, where the proxy allows it, the service identity's."""
        credential = self.credentials.get(user)
        if credential is not None:
            token = await credential.token()  # refreshes when it can
            if usable(credential):
                return token
        if service_may and self.service is not None:
            token = await self.service.token()
            if token:
                return token
        why = credential.problem if credential is not None and credential.problem else "it expired"
        raise SlurmError(f"no usable Check-in token for {user}: {why}", transient=True)

    def blind_to(self) -> frozenset[str]:
        return self._blind

    # ---- HTTP ------------------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, token: str, *, params: Mapping[str, Any] | None = None,
                    body: Any = None, timeout: float | None = None,
                    http: httpx.AsyncClient | None = None, headers: Mapping[str, str] | None = None) -> httpx.Response:
        """One request; SlurmError (transient when worth retrying) for anything but an answer."""
        try:
            response = await (http or self.http).request(
                method, path, params=params, json=body, headers={"Authorization": f"Bearer {token}", **(headers or {})},
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.TimeoutException as exc:
            raise SlurmError(f"{method} {path}: no answer in time ({type(exc).__name__})", transient=True) from exc
        except httpx.HTTPError as exc:
            self._forget_version()  # the site may come back with another SLURM
            raise SlurmError(f"{method} {path}: {type(exc).__name__}: {exc}", transient=True) from exc
        if response.status_code == 404 and path.startswith("/slurm/") and not _has_json(response) \
                and self._forget_version():
            raise SlurmError(f"{method} {path}: slurmrestd no longer serves this API version; reading its "
                             "versions again", transient=True)
        if response.status_code in TRANSIENT_STATUS:
            raise SlurmError(f"{method} {path}: {_reason(response)}", transient=True)
        if response.status_code == 404 and _from_slurmrestd(response):
            return response  # 24.11: "no such job" is a 404 with SLURM's error 2017, an answer for _slurm
        if response.status_code in (401, 403, 404, 413):  # the proxy's refusals carry a reason
            raise _refused(response)
        return response

    async def _slurm(self, method: str, path: str, token: str, *, gone_ok: bool = False,
                     **kwargs: Any) -> dict[str, Any]:
        """A slurmrestd call whose `errors` are read whatever the HTTP status (slurmrestd puts them there).
        With `gone_ok`, "no such job (any more)" is an answer, not an error."""
        body, _ = await self._slurm_answer(method, path, token, gone_ok=gone_ok, **kwargs)
        return body

    async def _slurm_answer(self, method: str, path: str, token: str, *, gone_ok: bool = False,
                            **kwargs: Any) -> tuple[dict[str, Any], httpx.Response]:
        """`_slurm`'s body, with the response it came in (its headers)."""
        version = await self._api_version(token)
        response = await self._call(method, f"/slurm/{version}/{path}", token, **kwargs)
        body = _json(response, path)
        problems = rest_shapes.errors(body)
        codes = rest_shapes.error_codes(body)
        if problems and not body.get("job_id"):
            if gone_ok and codes and codes <= GONE_ERRORS:
                return {}, response
            transient = any(c in TRANSIENT_SLURM_ERRORS for c in codes)
            raise SlurmError("; ".join(problems), transient=transient)
        if response.status_code >= 400 and not body.get("job_id"):
            raise SlurmError(f"{method} {path}: HTTP {response.status_code}")
        return body, response

    async def _api_version(self, token: str) -> str:
        if not self.version:
            response = await self._call("GET", "/openapi/v3", token)
            spec = _json(response, "/openapi/v3")
            self.version = rest_shapes.detect_version(spec)
            log.info("slurmrestd offers %s; using %s", ", ".join(rest_shapes.offered_versions(spec)), self.version)
        return self.version

    def _forget_version(self) -> bool:
        """With `api_version: auto`, read slurmrestd's versions again at the next call; True if it did."""
        if self.config.api_version != "auto" or not self.version:
            return False
        log.info("slurmrestd was unreachable or no longer serves %s: reading its API versions again", self.version)
        self.version = ""
        return True

    # ---- jobs ------------------------------------------------------------------------------------------

    async def submit(self, job: BatchJob, user: str) -> str:
        token = await self._token_for(user, service_may=False)
        # slurmd cannot open an output file in a directory that does not exist yet; the script opens it.
        job = replace(job, stdout="/dev/null")
        # slurmrestd refuses a job without environment (v0.0.38: "environment must be set"); the job script
        # sets each container's environment itself, so one harmless variable is enough.
        environment = sbatch.environment(job) or {"SLURMLINK_SUBMITTED_BY": "rest"}
        body = rest_shapes.submit_body(job, await self._api_version(token), environment)
        try:
            answer, response = await self._slurm_answer("POST", "job/submit", token, body=body,
                                                        timeout=self.config.submit_timeout_seconds,
                                                        headers={names.VO_HEADER: job.vo} if job.vo else None)
        except Refused as exc:
            if exc.status == 403 and exc.rule:  # the site's policy: the pod fails with the rule's own reason
                raise PodRejected(exc.detail, exc.error) from exc
            raise
        job_id = rest_shapes.parse_submit(answer)
        # the proxy's word on the job's VO, account and partition (its site policy), for the pod's event
        told = "".join(c for c in response.headers.get(names.PLACEMENT_HEADER, "") if c.isprintable())
        if told:
            self._placements[job_id] = told[:names.MAX_PLACEMENT]
        return job_id

    def placement(self, job_id: str) -> str:
        """The VO, account and partition the proxy's site policy gave a job just submitted ("" when it said
        none); told once."""
        return self._placements.pop(job_id, "")

    async def jobs(self, *, fresh: bool = False) -> list[JobInfo]:
        """One list call per identity (just the service's when there is one); unchanged lists cost a 304.
        A user whose token cannot list (expired, refused) is `blind_to`, and does not stop the others."""
        found: dict[str, JobInfo] = {}
        if self.service is not None and (token := await self.service.token()):
            try:
                found = {job.job_id: job for job in await self._listing("service", token, fresh)}
                self._blind = frozenset()
                return list(found.values())
            except SlurmError as exc:  # e.g. the service token expired: the users' own tokens still work
                log.warning("the service identity cannot list jobs (%s); listing with users' tokens", exc.message)
        blind: set[str] = set()
        errors: list[SlurmError] = []
        for user in self.credentials.users():
            try:
                jobs = await self._listing(f"user:{user}", await self._token_for(user, service_may=False), fresh)
            except SlurmError as exc:
                blind.add(user)
                errors.append(exc)
                continue
            for job in jobs:
                found.setdefault(job.job_id, job)
        if errors and len(blind) == len(self.credentials) and any(e.transient for e in errors):
            raise errors[0]  # nobody could list: the site is down, not the users' tokens
        self._blind = frozenset(blind)
        return list(found.values())

    async def _listing(self, key: str, token: str, fresh: bool = False) -> list[JobInfo]:
        listing = self._listings.setdefault(key, _Listing())
        version = await self._api_version(token)
        since = listing.since if not fresh and version not in self._no_update_time else None
        params = None
        if since is not None:
            params = {"update_time": rest_shapes.update_time(version, since, time.monotonic() - listing.at)}
        asked = time.monotonic()
        response = await self._call("GET", f"/slurm/{version}/jobs", token, params=params)
        if response.status_code == 304:
            return listing.jobs
        if since is not None and response.status_code == 422:
            # A slurmrestd that refuses our update_time (as v0.0.40/v0.0.41 do a plain number) lists in full.
            log.warning("slurmrestd %s refuses update_time (%s); listing every job each time instead",
                        version, _reason(response))
            self._no_update_time.add(version)
            return await self._listing(key, token, fresh=True)
        body = _json(response, "jobs")
        if since is not None and rest_shapes.unchanged_listing(response.status_code, body):
            return listing.jobs
        if rest_shapes.errors(body):
            raise SlurmError("; ".join(rest_shapes.errors(body)), transient=True)
        listing.jobs, listing.since = rest_shapes.parse_jobs(body, JOB_NAME_PREFIX), _site_time(response)
        listing.at = asked
        return listing.jobs

    async def workdir_owner(self, workdir: str, job_id: str = "") -> str | None:
        """The owner of `job_id`'s directory as the proxy checked it (needs the service identity)."""
        if self.service is None or not job_id:
            return None
        try:
            body = await self._job_files(job_id, await self.service.token())
        except SlurmError as exc:
            if exc.transient:
                raise  # not now: the poller asks again at the next interval
            return None
        return str(body.get("user") or "") or None if body.get("workdir") == workdir else None

    async def finished(self, job_ids: list[str]) -> dict[str, JobInfo]:
        # Jobs that left slurmctld's memory are judged by the exit records their pods left (the poller
        # reads them through the proxy), which say more than accounting does: one exit code per container.
        return {}

    async def cancel(self, job_id: str, user: str, signal: str | None = None, only_state: str | None = None) -> None:
        if not job_id.isdigit():
            raise SlurmError(f"not a job id: {job_id!r}")
        token = await self._token_for(user, service_may=True)
        if signal is not None and only_state == "RUNNING" and await self._signal_batch_script(job_id, signal, token):
            return
        if only_state is not None:
            # slurmrestd has no state filter: look first. A job that moves on meanwhile is caught by the
            # delete flow's later steps (TERM for a running job, then the final cancel).
            jobs = rest_shapes.parse_jobs(await self._slurm("GET", f"job/{job_id}", token, gone_ok=True))
            if not jobs or jobs[0].state != only_state:
                return
        params = {"signal": signal} if signal else None
        await self._slurm("DELETE", f"job/{job_id}", token, gone_ok=True, params=params)

    async def _signal_batch_script(self, job_id: str, signal: str, token: str) -> bool:
        """Signal only the job script (a graceful stop), as scancel --batch does in mode 2. From v0.0.40
        slurmrestd can (flags=BATCH_JOB); before, the proxy does it. False: it cannot be done here, and the
        caller signals the whole job instead (every process of the job gets the signal)."""
        version = await self._api_version(token)
        if rest_shapes.number(version) >= 40:
            jobs = rest_shapes.parse_jobs(await self._slurm("GET", f"job/{job_id}", token, gone_ok=True))
            if jobs and jobs[0].state == "RUNNING":
                await self._slurm("DELETE", f"job/{job_id}", token, gone_ok=True,
                                  params={"signal": signal, "flags": "BATCH_JOB"})
            return True
        if self._proxy_signals is False:
            return False
        try:
            await self._call("POST", f"{EXTENSIONS}/jobs/{job_id}/signal", token, params={"signal": signal})
        except Refused as exc:
            if exc.status != 404:
                raise
            if "signals" not in exc.message:
                return True  # SLURM no longer knows the job: nothing to signal
            self._proxy_signals = False  # this proxy has no `signals` section
            log.warning("the proxy cannot signal job scripts alone: a deleted pod's every process gets SIG%s "
                        "and SLURM ends the job after KillWait (%s)", signal, exc.message)
            return False
        self._proxy_signals = True
        return True

    async def capacity(self) -> Capacity:
        """Free CPUs and memory as the proxy sums them up (it does not show users the nodes themselves)."""
        params = {"partition": self.config.partition} if self.config.partition else None
        body = _json(await self._call("GET", f"{EXTENSIONS}/capacity", await self._any_token(), params=params),
                     "capacity")
        gpus = body.get("gpus")
        gpus = gpus if isinstance(gpus, dict) else {}
        return Capacity(cpus=int(body.get("cpus") or 0), memory_mb=int(body.get("memory_mb") or 0),
                        gpus={str(k): int(v) for k, v in gpus.items()})

    async def _any_token(self) -> str:
        if self.service is not None and (token := await self.service.token()):
            return token
        for user in self.credentials.users():
            try:
                return await self._token_for(user, service_may=False)
            except SlurmError:
                continue
        raise SlurmError("no Check-in token to ask SLURM with yet (no pods, no service identity)", transient=True)

    # ---- the pod's directory, through the proxy's extensions -----------------------------------------------

    async def _job_files(self, job_id: str, token: str) -> dict[str, Any]:
        return _json(await self._call("GET", f"{EXTENSIONS}/jobs/{job_id}/status", token), "job status")

    async def containers(self, pod: PodDirectory) -> dict[str, ContainerRecord]:
        body = await self._job_files(pod.job_id, await self._token_for(pod.user, service_may=True))
        files = body.get("files") or {}
        return layout.container_records({str(k): str(v) for k, v in files.items()})

    async def containers_of(self, pods: list[PodDirectory]) -> dict[str, dict[str, ContainerRecord]]:
        """One request per identity (and per STATUSES_PER_CALL pods), not one per pod."""
        groups: dict[str, list[PodDirectory]] = {}
        for pod in pods:
            try:
                groups.setdefault(await self._token_for(pod.user, service_may=True), []).append(pod)
            except SlurmError as exc:
                log.warning("cannot read the container records of job %s: %s", pod.job_id, exc.message)
        found: dict[str, dict[str, ContainerRecord]] = {}
        for token, group in groups.items():
            for start in range(0, len(group), STATUSES_PER_CALL):
                chunk = group[start:start + STATUSES_PER_CALL]
                try:
                    response = await self._call("GET", f"{EXTENSIONS}/statuses", token,
                                                params={"jobs": ",".join(p.job_id for p in chunk)})
                    answers = _json(response, "statuses").get("jobs") or {}
                except SlurmError as exc:
                    log.warning("cannot read the container records of %d pods: %s", len(chunk), exc.message)
                    continue
                for pod in chunk:
                    answer = answers.get(pod.job_id) if isinstance(answers, dict) else None
                    if isinstance(answer, dict) and isinstance(answer.get("files"), dict):
                        files = {str(k): str(v) for k, v in answer["files"].items()}
                        found[pod.job_id] = layout.container_records(files)
                    else:
                        why = answer.get("reason") if isinstance(answer, dict) else "no answer"
                        log.warning("cannot read the container records of job %s: %s", pod.job_id, why)
        return found

    def status_watch(self, on_change: OnChange) -> StatusWatch:
        """The proxy's file watch, held as a long poll (restwatch.py)."""
        return ProxyWatch(on_change, self.status_changes, shared=self.service is not None)

    async def status_changes(self, user: str, jobs: list[str], since: str | None, wait: float) -> StatusChanges:
        """One long poll of the proxy's file watch, with `user`'s token (SERVICE: the service identity's)."""
        if user == SERVICE:
            token = await self.service.token() if self.service is not None else ""
            if not token:
                raise SlurmError("the service identity has no token to watch with", transient=True)
        else:
            token = await self._token_for(user, service_may=False)
        params: dict[str, Any] = {"jobs": ",".join(jobs), "wait": wait}
        if since:
            params["since"] = since
        response = await self._call("GET", STATUS_CHANGES_ROUTE, token, params=params,
                                    timeout=wait + self.config.timeout_seconds, http=self.watch_http)
        return StatusChanges.from_wire(_json(response, "status-changes"))

    async def read_log(self, pod: PodDirectory, container: str, offset: int = 0, previous: bool = False) -> bytes:
        if not container or "/" in container or container.startswith(".") or "\0" in container:
            raise SlurmError(f"not a container name: {container!r}")
        token = await self._token_for(pod.user, service_may=True)
        response = await self._call("GET", f"{EXTENSIONS}/jobs/{pod.job_id}/logs/{container}", token,
                                    params={"offset": offset, "limit_bytes": self.config.max_log_chunk_bytes,
                                            **({"previous": "true"} if previous else {})})
        if response.status_code != 200:
            raise SlurmError(f"reading the log of {container}: {_reason(response)}")
        return response.content

    relays_steps = True  # exec and port-forward: the proxy's interactive extension runs the steps

    async def open_step_stream(self, pod: PodDirectory, kind: str, params: list[tuple[str, str]],
                               headers: list[tuple[str, str]], body: bytes = b"") -> StepStream:
        """The proxy's upgraded connection to a step of the pod's job, asked with the pod's user's own token
        (never the service identity's: the proxy runs the step as the token's account)."""
        route = {"exec": PROXY_EXEC_ROUTE, "portforward": PROXY_PORTFORWARD_ROUTE}[kind].format(job_id=pod.job_id)
        token = await self._token_for(pod.user, service_may=False)
        sent = [("Authorization", f"Bearer {token}"), ("Connection", "Upgrade"), *headers]
        request = self.stream_http.build_request("POST", route, params=tuple(params), headers=sent, content=body,
                                                 timeout=httpx.Timeout(self.config.timeout_seconds, read=None))
        try:
            response = await self.stream_http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise SlurmError(f"{kind}: the proxy is unreachable: {type(exc).__name__}: {exc}", transient=True) from exc
        if response.status_code == 101:
            return StepStream(101, response.headers.get(PROTOCOL_HEADER, ""), network=response.extensions[
                "network_stream"])
        try:
            await response.aread()
        finally:
            await response.aclose()
        return StepStream(response.status_code, reason=_reason(response))

    async def write_volume_files(self, pod: PodDirectory, files: list[VolumeFile]) -> None:
        # slurmrestd has no call that writes a file into a running job's directory, and the API in mode 1 runs
        # away from the site's file system: projected tokens there live as long as they were issued for.
        raise Unsupported("mode 1 (slurmrestd) cannot refresh files of a running pod")

    async def close(self) -> None:
        await self.http.aclose()
        if self.watch_http is not self.http:
            await self.watch_http.aclose()
        if self.stream_http is not self.http:
            await self.stream_http.aclose()
        await self.issuer_http.aclose()


def _client(config: RestConfig, max_connections: int | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=config.url.rstrip("/"), verify=config.verify, trust_env=False, follow_redirects=False,
        timeout=httpx.Timeout(config.timeout_seconds, connect=min(config.timeout_seconds, 10.0)),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))


def _site_time(response: httpx.Response) -> int:
    """When the answer was made, by the site's clock (its Date header), a second early: `update_time` is
    compared with slurmctld's clock, and this host's clock may be off."""
    try:
        return int(parsedate_to_datetime(response.headers["date"]).timestamp()) - 1
    except (KeyError, TypeError, ValueError):
        return int(time.time()) - SKEW_ALLOWANCE_SECONDS


def _from_slurmrestd(response: httpx.Response) -> bool:
    """A JSON answer of slurmrestd with SLURM's errors in it (not a refusal of the proxy)."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("errors")) and "reason" not in body


def _has_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise SlurmError(f"{what}: HTTP {response.status_code} without a JSON body", transient=True) from None
    if not isinstance(body, dict):
        raise SlurmError(f"{what}: the answer is not a JSON object", transient=True)
    return body


def _refused(response: httpx.Response) -> Refused:
    """The proxy's refusal, with its `error` word (when it is one) and `rule`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    fields = body if isinstance(body, dict) else {}
    error, rule, detail = (fields.get(k) for k in ("error", "rule", "reason"))
    return Refused(response.status_code, _reason(response),
                   error=error if isinstance(error, str) and _REASON_WORD.fullmatch(error) else "Forbidden",
                   rule=rule if isinstance(rule, str) else "", detail=detail[:1000] if isinstance(detail, str) else "")


def _reason(response: httpx.Response) -> str:
    """The proxy's `{"error", "reason"}`, or slurmrestd's errors, or the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if body.get("reason"):
            return f"{body.get('error') or response.status_code}: {body['reason']}"
        if rest_shapes.errors(body):
            return "; ".join(rest_shapes.errors(body))
    return f"HTTP {response.status_code} {response.reason_phrase}"
