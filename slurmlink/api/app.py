"""`slurmlink api`: the interLink-compatible HTTP API (both the VK-facing and the plugin-facing surface).

Routes stay thin: parsing with the wire types, then PodService. Like interLink's Go server, each route
takes any of the methods its peers use (GET with a body included).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slurmlink.api import metrics
from slurmlink.api.config import ApiConfig
from slurmlink.api.errors import BadRequest, Conflict, NotFound, NotReady
from slurmlink.api.exec import ExecEndpoint
from slurmlink.api.service import PodService
from slurmlink.config import ConfigError
from slurmlink.core.errors import PodRejected
from slurmlink.edge import EdgeLimits, edge_protocol, text_refusal_bytes
from slurmlink.listeners import Listener, admin_listener, main_listener, tls_options
from slurmlink.slurm.base import SchedulerBackend, SlurmError, Unsupported
from slurmlink.wire import names
from slurmlink.wire import projected as wire_projected
from slurmlink.wire.changes import DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS, Changes, RemovedPod
from slurmlink.wire.gojson import WireError, WireModel, dump_wire
from slurmlink.wire.interlink import CreateStruct, parse_create, parse_log_request, parse_pods

log = logging.getLogger(__name__)
ANY_METHOD = ["GET", "POST", "PUT", "DELETE"]


def create_app(config: ApiConfig, backend: SchedulerBackend) -> FastAPI:
    service = PodService(config, backend)
    token = _read_token(config.auth.bearer_token_file)
    # On a unix socket the socket's permissions decide who may call (upstream interLink sends no token).
    if token is None and not config.auth.allow_unauthenticated and config.listen.socket is None:
        raise ConfigError("auth.bearer_token_file is not set: every caller could submit as every mapped account. "
                          "Set it, serve on listen.socket (its permissions are the access control), or set "
                          "auth.allow_unauthenticated: true on a machine where that is acceptable")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        recovery = asyncio.create_task(service.recover())
        tasks = [recovery, asyncio.create_task(_after(recovery, service.poller.run()))]
        if service.watch is not None:
            tasks.append(asyncio.create_task(service.watch.run()))
        yield
        for task in tasks:
            task.cancel()
        await service.close()
        await backend.close()

    app = FastAPI(title="slurmlink api", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    app.state.token = token

    # With an admin listener, /metrics moves there; without one it stays open here, as it always was.
    open_paths = {"/healthz"} if config.admin.port is not None else {"/healthz", "/metrics"}
    app.state.open_paths = frozenset(open_paths)
    _install_guard(app, token, app.state.open_paths)
    _install_interlink_routes(app, service)
    _install_own_routes(app, service)
    _install_error_handlers(app)
    return app


def _install_guard(app: FastAPI, token: str | None, open_paths: frozenset[str]) -> None:
    app.add_middleware(_Guard, token=token, open_paths=open_paths)


class _Guard:
    """The bearer token (all but `open_paths`), one 500 line for what a route did not expect, metrics.
    `request.state.authenticated` tells /healthz whether it may say more than ok/unavailable.

    A plain ASGI middleware: starlette's BaseHTTPMiddleware runs every request through another task and
    memory streams, about a tenth of the API's CPU in a burst of creates (bench/submit_throughput.py)."""

    def __init__(self, app: ASGIApp, token: str | None, open_paths: frozenset[str]) -> None:
        self.app, self.token, self.open_paths = app, token, open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"]
        label = route if route in KNOWN_ROUTES else "other"  # callers choose paths: bounded metric labels
        given = Headers(scope=scope).get("authorization", "")
        token = self.token
        authenticated = token is None or hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
        scope.setdefault("state", {})["authenticated"] = authenticated
        if not authenticated and route not in self.open_paths:
            metrics.REQUESTS.labels(label, 401).inc()
            await PlainTextResponse("missing or wrong bearer token\n", status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        except Exception:
            if status:  # the answer has begun (a stream): nothing else can be sent
                metrics.REQUESTS.labels(label, status).inc()
                raise
            log.exception("request %s failed", route)
            status = 500
            await PlainTextResponse("internal error\n", status_code=500)(scope, receive, send)
        metrics.REQUESTS.labels(label, status).inc()


def _install_interlink_routes(app: FastAPI, service: PodService) -> None:
    """interLink's plugin API, on any method as interLink's own server takes them."""
    @app.api_route("/create", methods=ANY_METHOD)
    async def create(request: Request) -> Response:
        return await create_answer(service, await request.body())

    @app.api_route("/delete", methods=ANY_METHOD)
    async def delete(request: Request) -> Response:
        pods = parse_pods(await _json(request))
        if not pods:
            raise WireError("body: a pod is required")
        messages = [await service.delete(pod) for pod in pods]
        return PlainTextResponse("\n".join(messages) + "\n")

    @app.api_route("/status", methods=ANY_METHOD)
    async def status(request: Request) -> Response:
        return await status_answer(service, await request.body())

    @app.api_route("/getLogs", methods=ANY_METHOD)
    async def get_logs(request: Request) -> Response:
        query = parse_log_request(await _json(request))
        stream = await service.logs(query)
        return StreamingResponse(stream, media_type="text/plain; charset=utf-8")

    @app.api_route("/pinglink", methods=ANY_METHOD)
    async def pinglink(request: Request) -> Response:
        return JSONResponse((await service.ping()).to_wire())

    @app.api_route("/updateCache", methods=ANY_METHOD)
    async def update_cache(request: Request) -> Response:
        pods = parse_pods(await _json(request, allow_empty=True))
        service.statuses(pods)  # records the newest pod objects; no SLURM call
        return PlainTextResponse("Updated cache")


async def create_answer(service: PodService, body: bytes) -> Response:
    parsed = parse_create(_parse_json(body))
    job_id = await service.create(parsed)
    dropped = service.dropped_flags(parsed.pod) if job_id else ()
    headers = {names.DROPPED_FLAGS_HEADER: names.dropped_flags_value(dropped)} if dropped else {}
    if job_id and (placement := service.placement(parsed.uid)):
        headers[names.PLACEMENT_HEADER] = placement
    return JSONResponse(CreateStruct(pod_uid=parsed.uid, pod_jid=job_id).to_wire(), headers=headers)


async def status_answer(service: PodService, body: bytes) -> Response:
    pods = parse_pods(_parse_json(body, allow_empty=True))
    if not pods:  # interLink's ping to its plugin: `/status` with `[]`
        return JSONResponse((await service.ping()).to_wire())
    return JSONResponse(dump_wire(list[WireModel](service.statuses(pods))))


# The routes the vk calls for every pod, served by lean_front without FastAPI's middleware and routing.
HOT_ROUTES: dict[str, Callable[[PodService, bytes], Awaitable[Response]]] = {
    "/create": create_answer, "/status": status_answer}


def _install_own_routes(app: FastAPI, service: PodService) -> None:
    """slurmlink's own routes: refreshed projected tokens, health, metrics."""
    @app.post(names.PROJECTED_ROUTE)
    async def write_projected(request: Request) -> Response:
        # slurmlink's own route (not interLink's wire): refreshed ServiceAccount tokens of a running pod
        written = await service.write_projected(wire_projected.parse_body(await _json(request)))
        return JSONResponse({"written": written})

    @app.get(names.CHANGES_ROUTE)
    async def changes(request: Request) -> Response:
        # slurmlink's own route: the long poll of the pods whose status changed (wire/changes.py)
        since = request.query_params.get("since") or None
        wait = _wait_seconds(request.query_params.get("wait"))
        delta, pods = await service.changes(since, wait)
        removed = [RemovedPod(namespace=r.namespace, name=r.name, uid=r.uid) for r in delta.removed]
        return JSONResponse(Changes(cursor=delta.cursor, reset=delta.reset, pods=pods, removed=removed).to_wire())

    @app.get("/healthz")
    async def healthz(request: Request) -> Response:
        return health_response(service, detailed=request.state.authenticated)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def health_response(service: PodService, *, detailed: bool) -> Response:
    """200 once recovered and SLURM answers, else 503; SLURM's error and the pod count only when `detailed`
    (callers with the token, the unix socket, the admin listener)."""
    poller = service.poller
    healthy = service.recovered.is_set() and not poller.last_error
    body: dict[str, Any] = {"status": "ok" if healthy else "unavailable"}
    if detailed:
        body.update(recovered=service.recovered.is_set(), last_poll=poller.last_success,
                    last_error=poller.last_error, pods=len(service.registry.entries))
    return JSONResponse(body, status_code=200 if healthy else 503)


# The edge's header deadline and size, but connection caps for the API's one client, the vk, from one address:
# its pools hold up to 32 + 1,024 connections (vk/service.py), and a Service relay's one each until it switches
# protocols (then uncounted). The caps only bound what a stranger on the port can hold open before the token check.
EDGE_LIMITS = EdgeLimits(max_connections=8192, max_connections_per_address=8192)


def listeners(config: ApiConfig, app: FastAPI) -> list[Listener]:
    """Where the API serves: the unix socket, or host:port (HTTPS with listen.tls); and the admin listener."""
    listen = config.listen
    tls = tls_options(listen.tls.cert_file, listen.tls.key_file, listen.tls.client_ca_file) if listen.tls else None
    service: PodService = app.state.service

    async def admin_health() -> Response:
        return health_response(service, detailed=True)

    # exec/attach leave HTTP after their 101: served in front of the app; the edge hands their requests to an
    # h11 that can switch protocols. Refusals at the edge are text, as the API's others are.
    served = ExecEndpoint(lean_front(app), service, app.state.token, per_pod=config.exec.max_sessions_per_pod,
                          per_user=config.exec.max_sessions_per_user)
    return [main_listener(served, listen.host, listen.port, tls, listen.socket, listen.socket_group,
                          http=edge_protocol(EDGE_LIMITS, render=text_refusal_bytes)),
            *admin_listener(config.admin, admin_health)]


def _wait_seconds(text: str | None) -> float:
    """The `wait` of a changes request: DEFAULT_WAIT_SECONDS when absent, at most MAX_WAIT_SECONDS."""
    if text is None or text == "":
        return float(DEFAULT_WAIT_SECONDS)
    try:
        wait = float(text)
    except ValueError:
        raise WireError(f"wait: {text!r} is not a number of seconds") from None
    if not wait >= 0:  # also NaN
        raise WireError(f"wait: {text!r} must be 0 or more seconds")
    return min(wait, float(MAX_WAIT_SECONDS))


KNOWN_ROUTES = frozenset({"/create", "/delete", "/status", "/getLogs", "/pinglink", "/updateCache", "/healthz",
                          "/metrics", names.PROJECTED_ROUTE, names.CHANGES_ROUTE})


def error_response(exc: Exception) -> Response:
    """The answer to a refusal (REFUSALS) a route raised; anything else is a bug, for the guard's one 500."""
    def text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return PlainTextResponse(message.rstrip("\n") + "\n", status_code=status, headers=headers)

    if isinstance(exc, WireError):
        return text(400, f"bad request: {exc}")
    if isinstance(exc, PodRejected):
        return text(422, f"invalid pod: {exc.message}")
    if isinstance(exc, NotReady):
        return text(503, str(exc), {"Retry-After": "5"})
    if isinstance(exc, NotFound):
        return text(404, str(exc), {names.UNKNOWN_POD_HEADER: "1"})
    if isinstance(exc, BadRequest):
        return text(400, str(exc))
    if isinstance(exc, Conflict):
        return text(409, str(exc))
    if isinstance(exc, Unsupported):  # before SlurmError, which it is
        return text(501, f"not supported: {exc.message}")
    assert isinstance(exc, SlurmError), exc
    if exc.transient:
        return text(503, f"SLURM: {exc.message}", {"Retry-After": "5"})
    return text(502, f"SLURM: {exc.message}")


REFUSALS = (WireError, PodRejected, NotReady, NotFound, BadRequest, Conflict, SlurmError)  # Unsupported is one


def _install_error_handlers(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    for kind in REFUSALS:
        app.add_exception_handler(kind, refused)


def lean_front(app: FastAPI) -> ASGIApp:
    """What the API serves: HOT_ROUTES straight to their answers behind the same guard (its own instance), the
    rest through FastAPI. FastAPI's middleware and routing cost about a quarter of the API's CPU per create
    (bench/submit_throughput.py); the routes stay in the FastAPI app as well, with the same answers."""
    service: PodService = app.state.service

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await HOT_ROUTES[scope["path"]](service, await Request(scope, receive).body())
        except REFUSALS as exc:
            response = error_response(exc)
        await response(scope, receive, send)

    guarded = _Guard(answer, app.state.token, app.state.open_paths)

    async def front(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in HOT_ROUTES and scope["method"] in ANY_METHOD:
            await guarded(scope, receive, send)
        else:
            await app(scope, receive, send)

    return front


async def _json(request: Request, allow_empty: bool = False) -> Any:
    return _parse_json(await request.body(), allow_empty)


def _parse_json(body: bytes, allow_empty: bool = False) -> Any:
    if not body.strip():
        if allow_empty:
            return []
        raise WireError("body: a JSON body is required")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WireError(f"body: not valid JSON ({exc})") from exc


async def _after(first: asyncio.Task[None], then: Awaitable[None]) -> None:
    await first
    await then


def _read_token(path: str | None) -> str | None:
    if not path:
        return None
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"{path}: the bearer token file is empty")
    return token
