"""The proxy service: authenticate (Check-in), authorise (policy + VO), map, then forward to slurmrestd
as the mapped user with the SlurmUser token, or answer a `/slurmlink/v1/` extension itself.
See slurmlink/proxy/config.py for the options."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from slurmlink import JOB_NAME_PREFIX
from slurmlink.identity import audit
from slurmlink.identity.authorizer import AccessDenied, Authorizer
from slurmlink.identity.build import build_authorizer
from slurmlink.proxy import headers as header_rules
from slurmlink.proxy import policy
from slurmlink.proxy.apiversion import ApiVersion
from slurmlink.proxy.callers import CallerIdentifier
from slurmlink.proxy.config import ProxyConfig
from slurmlink.proxy.errors import Refusal, error_response
from slurmlink.proxy.extensions import Extensions
from slurmlink.proxy.joblookup import JobLookup
from slurmlink.proxy.ledger import Ledger
from slurmlink.proxy.ownership import job_to_change, require_owner
from slurmlink.proxy.roles import SERVICE, SERVICE_SCOPE, Caller, ServiceAccess, ServiceIdentity, service_access
from slurmlink.proxy.signals import BatchSignaller
from slurmlink.proxy.slurm_token import SlurmTokenError, SlurmTokenSource

log = logging.getLogger("slurmlink.proxy")

NEVER_MAPPED = frozenset({"root"})
PASSED_BACK = ("content-type", "content-encoding", "last-modified", "etag", "cache-control")
MAX_SUBMIT_RESPONSE_BYTES = 1024 * 1024  # submit answers are small; they are buffered to fill the ledger
_JOB_ID_IN_PATH = re.compile(r"/job/([0-9]+)/?\Z")
_error = error_response


class BodyTooLarge(Exception):
    pass


class RateLimiter:
    """A token bucket per key (the mapped user); bounded in memory."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None, *, consume: bool = True) -> float:
        """0 when allowed, otherwise the seconds until a request would be allowed.
        With consume=False only look (is the bucket empty?)."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0 if consume else 0.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("slurmlink_proxy_requests_total", "Requests through the proxy",
                                ["route", "status", "decision"], registry=self.registry)
        self.upstream_seconds = Histogram("slurmlink_proxy_upstream_seconds",
                                          "Time until slurmrestd answered (headers)", ["route"],
                                          registry=self.registry)


class ProxyService:
    def __init__(self, config: ProxyConfig, authorizer: Authorizer | None = None) -> None:
        self.config = config
        self.authorizer = authorizer or build_authorizer(config.identity)
        self.slurm_token = SlurmTokenSource(slurm_user=config.slurm_user, jwt_key_file=config.jwt_key_file,
                                            token_file=config.token_file, lifespan=config.token_lifespan_seconds)
        self.limiter = RateLimiter(config.rate_limit.requests_per_second, config.rate_limit.burst)
        failures = config.auth_failure_limit
        self.failures = RateLimiter(failures.requests_per_second, failures.burst) if failures else None
        self.metrics = Metrics()
        self.upstream = config.upstream.rstrip("/")
        self.http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=config.max_upstream_connections,
                                max_keepalive_connections=config.max_upstream_connections),
            timeout=httpx.Timeout(config.upstream_timeout_seconds, connect=config.upstream_connect_timeout_seconds),
            follow_redirects=False, trust_env=False)
        services = tuple(ServiceIdentity(s.issuer, s.subject, s.account) for s in config.service_identities)
        self.callers = CallerIdentifier(self.authorizer, services)
        self.ledger = Ledger(config.state_dir) if config.state_dir is not None else None
        signaller = BatchSignaller(config.signals, self.slurm_token.token_as) if config.signals else None
        self.api_version = ApiVersion(config.api_version, self.http, self.upstream, self._slurm_user_headers,
                                      config.api_version_recheck_seconds)
        self.extensions = Extensions(config.files, JobLookup(self.http, self.upstream, self.api_version),
                                     self.ledger, self.slurm_token.token, signaller)

    def _slurm_user_headers(self) -> dict[str, str]:
        return {header_rules.USER_NAME: self.config.slurm_user, header_rules.USER_TOKEN: self.slurm_token.token()}

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.authorizer.aclose()

    # --- the proxied requests -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        route, decision, response = await self._handle(request)
        self.metrics.requests.labels(route, str(response.status_code), decision).inc()
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> tuple[str, str, Response]:
        scope = request.scope
        method = request.method
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        client = scope["client"][0] if scope.get("client") else ""
        verdict = policy.decide(method, path, query, allow_slurmdb=self.config.allow_slurmdb)
        if not verdict.allowed:
            log.info("refused %r %r from %s: policy %s", method[:20], path[:200], client, verdict.rule)
            return verdict.route, "policy", _error(
                403, "Forbidden", f"refused by the proxy's allow-list: {verdict.message}", rule=verdict.rule)
        route = verdict.rule

        wait = self.failures.take(client, consume=False) if self.failures else 0.0
        if wait > 0:
            return route, "rate-limited", _error(
                429, "TooManyFailures", "too many refused tokens from this address; wait before trying again",
                retry_after=max(1, int(wait + 0.999)))
        authorization = [v for k, v in request.headers.items() if k == "authorization"]
        scheme, _, token = authorization[0].strip().partition(" ") if len(authorization) == 1 else ("", "", "")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            why = ("send exactly one 'Authorization: Bearer <Check-in access token>' header"
                   if authorization else "no 'Authorization: Bearer <Check-in access token>' header")
            self._failed(client)
            return route, "unauthenticated", _error(401, "Unauthorized", why)
        try:
            caller = await self.callers.identify(token, action=f"{method} {path}", client=client)
        except AccessDenied as exc:
            if exc.transient:
                return route, "unavailable", _error(503, exc.reason, exc.message, retry_after=10)
            self._failed(client)
            return route, "unauthorized", _error(401, exc.reason, exc.message)
        user = caller.user
        if user in NEVER_MAPPED or user == self.config.slurm_user:  # defence in depth: identity refuses these too
            return route, "unauthorized", _error(403, "Forbidden", f"requests may not run as {user}")

        bucket = user if caller.role != SERVICE else f"service:{caller.subject}"
        wait = self.limiter.take(bucket)
        if wait > 0:
            return route, "rate-limited", _error(
                429, "TooManyRequests", f"more than {self.config.rate_limit.requests_per_second:g} requests/s "
                f"for {user}; slow down", retry_after=max(1, int(wait + 0.999)))

        if caller.role == SERVICE:
            account = self._service_account(caller, method, path, route)
            if isinstance(account, Response):
                return route, "service-scope", account
            user = account  # the job's owner for a ledger job, else the service identity's own account
        if (change := job_to_change(method, route, path)) is not None:
            refusal = await self._unless_owner(caller, user, method, path, *change)
            if refusal is not None:
                return route, "not-owner", refusal
        if verdict.extension:
            answer = await self.extensions.handle(route, caller, path, query)
            return route, "allowed" if answer.status_code < 400 else "refused", answer

        try:
            body = await self._read_body(request)
        except BodyTooLarge:
            return route, "too-large", _error(
                413, "PayloadTooLarge", f"the request body exceeds {self.config.max_body_bytes} bytes")

        try:
            slurm_token = self.slurm_token.token()
        except SlurmTokenError as exc:
            log.error("no SlurmUser token: %s", exc)
            return route, "unavailable", _error(503, "ProxyMisconfigured", "the proxy has no SlurmUser token",
                                                retry_after=30)
        outgoing = header_rules.upstream_headers(request.headers.items(), user=user, token=slurm_token)
        outgoing.append(("Accept-Encoding", "identity"))  # relay bytes as they are
        url = self.upstream + path + (f"?{query}" if query else "")
        try:
            upstream_request = self.http.build_request(method, url, headers=outgoing, content=body)
        except httpx.InvalidURL:
            return route, "policy", _error(400, "BadRequest", "the query string is not valid")
        started = time.monotonic()
        try:
            upstream = await self.http.send(upstream_request, stream=True)
        except (httpx.TimeoutException, httpx.PoolTimeout) as exc:
            log.warning("slurmrestd timed out for %s %s as %s: %s", method, path, user, type(exc).__name__)
            return route, "upstream-timeout", _error(
                503, "UpstreamUnavailable", "slurmrestd did not answer in time; try again later", retry_after=5)
        except httpx.HTTPError as exc:
            log.warning("slurmrestd unreachable for %s %s: %s", method, path, type(exc).__name__)
            return route, "upstream-error", _error(
                502, "UpstreamUnreachable", f"slurmrestd is unreachable: {type(exc).__name__}")
        finally:
            self.metrics.upstream_seconds.labels(route).observe(time.monotonic() - started)
        log.info("%s %s from %s as %s -> %d", method, path, client, user, upstream.status_code)
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in PASSED_BACK}
        if route == policy.SUBMIT and self.ledger is not None and caller.role != SERVICE:
            submit_answer = await _buffered(upstream)
            if submit_answer is not None:
                await self._record_submission(user, body, upstream.status_code, submit_answer)
                return route, "allowed", Response(submit_answer, status_code=upstream.status_code, headers=passed)
            return route, "upstream-error", _error(502, "UpstreamError", "slurmrestd's submit answer was too "
                                                   "large or broken off; look for the job before submitting again")
        return route, "allowed", StreamingResponse(
            _relay(upstream), status_code=upstream.status_code, headers=passed,
            background=BackgroundTask(upstream.aclose))

    def _service_account(self, caller: Caller, method: str, path: str, route: str) -> Response | str:
        """The account a service identity's request runs as, or the refusal."""
        access = service_access(method, route)
        if access is ServiceAccess.AS_ACCOUNT:
            return caller.user
        if access is ServiceAccess.AS_JOB_OWNER:
            match = _JOB_ID_IN_PATH.search(path) if route == policy.JOB else None
            if match is None:  # the extensions check the ledger themselves
                return caller.user
            entry = self.ledger.get(match.group(1)) if self.ledger is not None else None
            if entry is not None:
                return entry.user
            why = f"job {match.group(1)} was not submitted through this proxy: {SERVICE_SCOPE}"
        else:
            why = SERVICE_SCOPE
        audit.record(action=f"{method} {path}", allowed=False, reason=why, issuer=caller.issuer,
                     subject=caller.subject, mapped_user=caller.user, role=SERVICE)
        return _error(403, "Forbidden", why, rule="service-scope")

    async def _unless_owner(self, caller: Caller, user: str, method: str, path: str, version: str,
                            job_id: str) -> Response | None:
        """The refusal of a cancel or signal of a job `user` does not own (None: forward it)."""
        try:
            token = self.slurm_token.token()
            await require_owner(job_id, version, user, lookup=self.extensions.lookup,
                                slurm_user=self.config.slurm_user, token=token)
        except SlurmTokenError as exc:
            log.error("no SlurmUser token: %s", exc)
            return _error(503, "ProxyMisconfigured", "the proxy has no SlurmUser token", retry_after=30)
        except Refusal as refusal:
            if refusal.status != 403:
                return refusal.response()
            audit.record(action=f"{method} {path}", allowed=False, reason=refusal.reason, issuer=caller.issuer,
                         subject=caller.subject, mapped_user=user, role=caller.role, job_id=job_id)
            return _error(403, refusal.error, refusal.reason, rule="job-owner")
        return None

    async def _record_submission(self, user: str, request_body: bytes, status: int, answer: bytes) -> None:
        """Put a slurmlink job submitted through the proxy in the ledger (what a service identity may touch)."""
        assert self.ledger is not None
        submitted = _submitted(request_body, status, answer)
        if submitted is None:
            return
        job_id, name, workdir = submitted
        try:
            await asyncio.to_thread(self.ledger.record, job_id, user, name, workdir)
        except OSError as exc:  # the job exists: failing the answer would only make the client submit twice
            log.error("could not record job %s in the ledger %s: %s", job_id, self.ledger.path, exc)

    def _failed(self, client: str) -> None:
        if self.failures is not None:
            self.failures.take(client)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    # --- own endpoints --------------------------------------------------------------------------------------
    async def healthz(self) -> Response:
        try:
            headers = self._slurm_user_headers()
        except SlurmTokenError as exc:
            return JSONResponse({"status": "unhealthy", "reason": str(exc)}, status_code=503)
        try:
            version = await self.api_version.get()
        except Refusal as refusal:
            return JSONResponse({"status": "unhealthy", "reason": refusal.reason,
                                 "offered": self.api_version.offered}, status_code=503)
        try:
            answer = await self.http.get(f"{self.upstream}/slurm/{version}/ping/", headers=headers, timeout=5.0)
            data = answer.json() if answer.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            self.api_version.forget()
            return JSONResponse({"status": "unhealthy", "reason": f"slurmrestd is unreachable: {type(exc).__name__}"},
                                status_code=503)
        if answer.status_code == 404:
            self.api_version.forget()
        errors = data.get("errors") if isinstance(data, dict) else None
        if answer.status_code != 200 or errors:
            return JSONResponse({"status": "unhealthy", "reason": f"slurmrestd ping ({version}) answered "
                                 f"{answer.status_code}", "errors": errors or []}, status_code=503)
        return JSONResponse({"status": "ok", "api_version": version, "offered": self.api_version.offered,
                             "pings": data.get("pings", [])})

    def metrics_response(self) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _buffered(upstream: httpx.Response) -> bytes | None:
    """The whole (small) upstream body, or None when it is too large or broken off."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in upstream.aiter_raw():
            size += len(chunk)
            if size > MAX_SUBMIT_RESPONSE_BYTES:
                return None
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        log.warning("slurmrestd broke off a submit answer: %s", type(exc).__name__)
        return None
    finally:
        await upstream.aclose()
    return b"".join(chunks)


def _submitted(request_body: bytes, status: int, answer: bytes) -> tuple[str, str, str] | None:
    """(job id, name, workdir) of a successful submission of a slurmlink job, else None. Pure."""
    if not 200 <= status < 300:
        return None
    try:
        request, response = json.loads(request_body), json.loads(answer)
    except ValueError:
        return None
    job_id = response.get("job_id") if isinstance(response, dict) else None
    if isinstance(job_id, bool) or not isinstance(job_id, int | str) or not str(job_id).isdigit() \
            or int(job_id) == 0:
        return None
    job: Any = request.get("job") if isinstance(request, dict) else None
    if not isinstance(job, dict) and isinstance(request, dict) and isinstance(request.get("jobs"), list):
        job = request["jobs"][0] if request["jobs"] else None  # newer versions: a list of heterogeneous parts
    if not isinstance(job, dict):
        return None
    name, workdir = job.get("name"), job.get("current_working_directory")
    if not isinstance(name, str) or not name.startswith(JOB_NAME_PREFIX):
        return None
    return str(job_id), name, workdir if isinstance(workdir, str) else ""


async def _relay(upstream: httpx.Response) -> AsyncIterator[bytes]:
    """The upstream body as it arrives; the upstream connection goes back to the pool even if the client left."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        log.warning("slurmrestd broke off a response: %s", type(exc).__name__)
    finally:
        await upstream.aclose()


def create_app(config: ProxyConfig, *, authorizer: Authorizer | None = None) -> FastAPI:
    """The proxy as an ASGI app; serve it with uvicorn (TLS from config.tls, see `uvicorn_options`)."""
    service = ProxyService(config, authorizer)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await service.aclose()

    app = FastAPI(title="slurmlink proxy", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.proxy = service

    @app.get("/healthz")
    async def healthz() -> Response:
        return await service.healthz()

    @app.get("/metrics")
    async def metrics() -> Response:
        return service.metrics_response()

    app.router.default = service  # everything else goes through the policy, auth and forwarding
    return app


def uvicorn_options(config: ProxyConfig) -> dict[str, Any]:
    """Keyword arguments for uvicorn.run(create_app(config), **uvicorn_options(config))."""
    options: dict[str, Any] = {"host": config.listen.host, "port": config.listen.port,
                               "proxy_headers": False, "server_header": False, "log_level": "info"}
    if config.tls is not None:
        options.update(ssl_certfile=config.tls.cert_file, ssl_keyfile=config.tls.key_file)
    return options
