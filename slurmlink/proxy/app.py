"""The proxy service: authenticate (Check-in), authorise (policy + VO), map, then forward to slurmrestd
as the mapped user with the SlurmUser token, or answer a `/slurmlink/v1/` extension itself.
Each request passes a list of steps (`ProxyService.steps`): the gates (gates.py), the extensions, the
forwarding (forward.py). See slurmlink/proxy/config.py for the options."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slurmlink.core.errors import SlurmlinkError
from slurmlink.edge import SEND_WOULD_WAIT, EdgeLimits, edge_protocol
from slurmlink.identity.authorizer import Authorizer
from slurmlink.identity.build import build_authorizer
from slurmlink.listeners import Listener, admin_listener, main_listener, tls_options
from slurmlink.proxy import headers as header_rules
from slurmlink.proxy.apiversion import ApiVersion
from slurmlink.proxy.callers import CallerIdentifier
from slurmlink.proxy.config import ProxyConfig
from slurmlink.proxy.errors import Refusal, error_response
from slurmlink.proxy.extensions import Extensions
from slurmlink.proxy.filewatch import FileWatch
from slurmlink.proxy.forward import Forwarder
from slurmlink.proxy.gates import AccessGates, Answer, Call, Step
from slurmlink.proxy.interactive import Interactive
from slurmlink.proxy.joblookup import JobLookup
from slurmlink.proxy.ledger import Ledger
from slurmlink.proxy.roles import ServiceIdentity
from slurmlink.proxy.signals import BatchSignaller
from slurmlink.proxy.sitepolicy import SubmitPolicy
from slurmlink.proxy.slurm_token import SlurmTokenError, SlurmTokenSource
from slurmlink.proxy.upstream import UpstreamPool
from slurmlink.slurm.podfiles import PodFiles
from slurmlink.slurm.statuswatch import choose_method
from slurmlink.streams.upgrade import drop_connection, listener_hook

PUBLIC_HEALTH_SECONDS = 5.0
OWN_PATHS = frozenset({"/healthz", "/metrics"})  # FastAPI's routes in create_app (with or without a final '/')
_CAMEL = {404: "NotFound", 405: "MethodNotAllowed"}
log = logging.getLogger("slurmlink.proxy")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("slurmlink_proxy_requests_total", "Requests through the proxy",
                                ["route", "status", "decision"], registry=self.registry)
        self.upstream_seconds = Histogram("slurmlink_proxy_upstream_seconds",
                                          "Time until slurmrestd answered (headers)", ["route"],
                                          registry=self.registry)
        # a metric's child for each set of labels, looked up once (prometheus_client's `labels()` checks and
        # locks on every call)
        self._counted: dict[tuple[str, str, str], Any] = {}
        self._timed: dict[str, Histogram] = {}

    def count(self, route: str, status: int, decision: str) -> None:
        key = (route, str(status), decision)
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = self.requests.labels(*key)
        child.inc()

    def upstream_timer(self, route: str) -> Histogram:
        child = self._timed.get(route)
        if child is None:
            child = self._timed[route] = self.upstream_seconds.labels(route)
        return child


class ProxyService:
    def __init__(self, config: ProxyConfig, authorizer: Authorizer | None = None) -> None:
        self.config = config
        self.authorizer = authorizer or build_authorizer(config.identity)
        self.slurm_token = SlurmTokenSource(slurm_user=config.slurm_user, jwt_key_file=config.jwt_key_file,
                                            token_file=config.token_file, lifespan=config.token_lifespan_seconds)
        self.metrics = Metrics()
        self.upstream = config.upstream.rstrip("/")
        self.http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=config.max_upstream_connections,
                                max_keepalive_connections=config.max_upstream_connections),
            timeout=httpx.Timeout(config.upstream_timeout_seconds, connect=config.upstream_connect_timeout_seconds),
            follow_redirects=False, trust_env=False)
        services = tuple(ServiceIdentity(s.issuer, s.subject, s.account) for s in config.service_identities)
        self.callers = CallerIdentifier(self.authorizer, services)
        self.ledger = Ledger(config.state_dir)
        signaller = BatchSignaller(config.signals, self.slurm_token.token_as) if config.signals else None
        self.api_version = ApiVersion(config.api_version, self.http, self.upstream, self._slurm_user_headers,
                                      config.api_version_recheck_seconds)
        lookup = JobLookup(self.http, self.upstream, self.api_version)
        self.watch = file_watch(config, self.ledger)
        policy_partitions = config.site_policy.partitions()  # capacity: only what the site policy's VOs may use
        self.extensions = Extensions(config.files, lookup, self.ledger, self.slurm_token.token, signaller,
                                     self.watch, ",".join(policy_partitions) if policy_partitions else None)
        self.gates = AccessGates(config, self.callers, self.ledger, self.slurm_token, lookup)
        self.interactive = Interactive(config.interactive, lookup, self.ledger, self.slurm_token.token)
        self.pool = UpstreamPool(self.upstream, max_connections=config.max_upstream_connections,
                                 timeout=config.upstream_timeout_seconds,
                                 connect_timeout=config.upstream_connect_timeout_seconds)
        forwarder = Forwarder(self.pool, self.slurm_token, self.ledger, config.max_body_bytes,
                              self.metrics.upstream_timer, body_timeout=config.clients.body_timeout_seconds,
                              on_submitted=self.watch.submitted if self.watch else None)
        read_body, forward = forwarder.steps()
        site_policy = SubmitPolicy(config.site_policy, self.http, self.upstream, self.api_version.get,
                                   self.slurm_token.token, config.slurm_user, forward)
        # Every request passes these in order, until one answers (a refusal, or the answer).
        self.steps: list[Step] = [*self.gates.steps(), self.answer_extension, read_body, self.interactive.answer,
                                  site_policy.check, forward]
        self._public_health = (-PUBLIC_HEALTH_SECONDS, False)  # (when checked, healthy)
        self._public_health_lock = asyncio.Lock()

    def _slurm_user_headers(self) -> dict[str, str]:
        return {header_rules.USER_NAME: self.config.slurm_user, header_rules.USER_TOKEN: self.slurm_token.token()}

    def end_long_polls(self) -> None:
        """Answer the file watch's long polls now: the servers wait for requests in progress before they stop."""
        if self.watch is not None:
            self.watch.close()

    async def aclose(self) -> None:
        if self.watch is not None:
            self.watch.release()
        await self.pool.aclose()
        await self.http.aclose()
        await self.authorizer.aclose()

    # --- the proxied requests -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            route, decision, response = await self._handle(request)
        except Exception:  # a bug: answered in the proxy's shape, logged once, never uvicorn's plain 500
            log.exception("the proxy failed on %s %s", scope.get("method"), scope.get("path", "")[:200])
            route, decision = "error", "error"
            response = error_response(500, "InternalError", "the proxy failed on this request; the site's log "
                                      "has the details")
        self.metrics.count(route, response.status_code, decision)
        would_wait = listener_hook(scope, SEND_WOULD_WAIT)
        try:
            await response(scope, receive, _within(send, self.config.clients.send_timeout_seconds, would_wait))
        except* ClientTooSlow:
            log.warning("closed a connection from %s: it took no part of its answer to %s %s within %g s",
                        (scope.get("client") or ("?",))[0], scope.get("method"), scope.get("path", "")[:200],
                        self.config.clients.send_timeout_seconds)
            drop_connection(scope)
            close = getattr(getattr(response, "body_iterator", None), "aclose", None)
            if close is not None:
                await close()  # the relay's upstream connection goes back to the pool now

    async def _handle(self, request: Request) -> tuple[str, str, Response]:
        call = Call.of(request, allow_slurmdb=self.config.allow_slurmdb)
        for step in self.steps:
            answer = await step(call)
            if answer is not None:
                return call.route, answer.decision, answer.response
        raise AssertionError("the last step answers every request")

    async def answer_extension(self, call: Call) -> Answer | None:
        """The proxy's own `/slurmlink/v1/` routes (extensions.py); other requests go on to slurmrestd."""
        if not call.verdict.extension:
            return None
        answer = await self.extensions.handle(call.route, call.caller, call.path, call.query)
        return Answer("allowed" if answer.status_code < 400 else "refused", answer)

    # --- own endpoints --------------------------------------------------------------------------------------
    async def healthz(self) -> Response:
        try:
            headers = self._slurm_user_headers()
        except SlurmTokenError as exc:
            return JSONResponse({"status": "unhealthy", "reason": str(exc)}, status_code=503)
        try:
            version = await self.api_version.get()
        except Refusal as refusal:
            return JSONResponse({"status": "unhealthy", "reason": refusal.message,
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

    async def public_healthz(self) -> Response:
        """What anyone may ask on the public port: ok or unavailable, nothing of slurmrestd (its version,
        its errors). The check runs at most once per PUBLIC_HEALTH_SECONDS, so that unauthenticated callers
        cannot make the proxy mint tokens and ping slurmrestd at their own rate."""
        async with self._public_health_lock:
            checked_at, healthy = self._public_health
            if time.monotonic() - checked_at >= PUBLIC_HEALTH_SECONDS:
                healthy = (await self.healthz()).status_code == 200
                self._public_health = (time.monotonic(), healthy)
        return JSONResponse({"status": "ok" if healthy else "unavailable"}, status_code=200 if healthy else 503)

    def metrics_response(self) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def file_watch(config: ProxyConfig, ledger: Ledger) -> FileWatch | None:
    """The file watch of `files.watch` (None: off, or no `files`)."""
    if config.files is None:
        return None
    method = choose_method(config.files.watch, config.files.job_root)
    log.info("job files under %s: %s", config.files.job_root,
             "not watched" if method == "off" else f"watched ({method}) for GET /slurmlink/v1/status-changes")
    if method == "off":
        return None
    return FileWatch(PodFiles(config.files.job_root), ledger, method, config.files.watch_stat_interval)


def create_app(config: ProxyConfig, *, authorizer: Authorizer | None = None) -> FastAPI:
    """The proxy as an ASGI app; serve it with `listeners` (TLS from config.tls, the admin listener).
    The public port says only ok/unavailable on /healthz; the details and /metrics are on the admin listener
    (or /metrics here too when there is none, as before it existed)."""
    service = ProxyService(config, authorizer)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watching = asyncio.create_task(service.watch.run()) if service.watch is not None else None
        yield
        if watching is not None:
            watching.cancel()
        await service.aclose()

    app = FastAPI(title="slurmlink proxy", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.proxy = service

    @app.get("/healthz")
    async def healthz() -> Response:
        return await service.public_healthz()

    if config.admin.port is None:
        @app.get("/metrics")
        async def metrics() -> Response:
            return service.metrics_response()

    app.router.default = service  # everything else goes through the policy, auth and forwarding

    @app.exception_handler(StarletteHTTPException)
    async def own_routes_refusal(_: Request, exc: StarletteHTTPException) -> Response:
        """The proxy's own routes (e.g. POST /healthz) refuse in the proxy's shape, not FastAPI's."""
        return error_response(exc.status_code, _CAMEL.get(exc.status_code, "Refused"), str(exc.detail))

    return app


class ClientTooSlow(SlurmlinkError):
    """The client took no part of its answer within clients.send_timeout_seconds."""


def _within(send: Send, seconds: float, would_wait: Callable[[], bool] | None = None) -> Send:
    """`send`, each part within `seconds` (uvicorn waits as long as the client's socket is full). With the
    edge's `would_wait`, a part that would not wait is sent without a timer (a timer per part was measurable
    per request: bench/README.md)."""
    async def timed(message: Message) -> None:
        if would_wait is not None and not would_wait():
            await send(message)
            return
        try:
            async with asyncio.timeout(seconds):
                await send(message)
        except TimeoutError:
            raise ClientTooSlow(f"the client took no part of its answer within {seconds:g} s") from None
    return timed


def lean_front(app: FastAPI) -> ASGIApp:
    """What the public port serves: a proxied request goes straight to the service, which answers every
    request itself (its refusals, its own errors); FastAPI's middleware stack (seven layers, measurable per
    request: bench/README.md) serves only the lifespan and the proxy's own routes."""
    service: ProxyService = app.state.proxy

    async def front(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") not in OWN_PATHS:
            await service(scope, receive, send)
        else:
            await app(scope, receive, send)

    return front


def listeners(config: ProxyConfig, app: FastAPI) -> list[Listener]:
    """The public port (TLS from config.tls) and the admin listener, for `Servers(...).run()`."""
    service: ProxyService = app.state.proxy
    tls = tls_options(config.tls.cert_file, config.tls.key_file) if config.tls is not None else None
    clients = config.clients
    edge = edge_protocol(EdgeLimits(header_timeout=clients.header_timeout_seconds,
                                    max_header_bytes=clients.max_header_bytes,
                                    max_connections=clients.max_connections,
                                    max_connections_per_address=clients.max_connections_per_address))
    main = main_listener(lean_front(app), config.listen.host, config.listen.port, tls, proxy_headers=False,
                         server_header=False, http=edge, timeout_keep_alive=clients.keepalive_timeout_seconds)
    return [main, *admin_listener(config.admin, service.healthz, service.metrics.registry)]
