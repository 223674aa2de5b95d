"""The HTTP face: one catch-all route that authenticates, resolves the URL like the apiserver, and dispatches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from . import discovery, reviews, tables
from .audit import AuditLog
from .auth import Authenticator
from .endpointslices import EndpointSliceController
from .errors import StatusError, bad_request, forbidden, method_not_supported, path_not_found
from .faults import Faults
from .gc import GarbageCollector
from .logs import KubeletClient, open_log
from .rbac import Grants
from .registry import Caller, Registry
from .request_info import RequestInfo, parse
from .resources import GROUPS, ResourceType, lookup
from .scheduler import Scheduler, bind
from .streams import spdy_passthrough, stream_verb, websocket_exec, websocket_portforward
from .tokens import TokenIssuer
from .watch import open_watch

log = logging.getLogger(__name__)
PUBLIC = ("/healthz", "/livez", "/readyz", "/version")


@dataclass
class Services:
    registry: Registry
    authenticator: Authenticator
    issuer: TokenIssuer
    faults: Faults
    kubelet: KubeletClient
    scheduler: Scheduler
    grants: Grants  # consulted by SubjectAccessReviews only
    address: str  # host:port, for /api's serverAddressByClientCIDRs
    bookmark_interval: float = 10.0
    gc: GarbageCollector | None = None
    endpoint_slices: EndpointSliceController | None = None
    audit: AuditLog = field(default_factory=AuditLog)


def _json(body: Any, status: int = 200, media_type: str = "application/json") -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type=media_type)


def _status_response(error: StatusError) -> Response:
    return _json(error.status(), error.code)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return None
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if content_type not in ("application/json", "", "*/*"):
        # Protobuf bodies (kubectl's typed writes: create configmap/secret, certificate approve) are not decoded.
        raise StatusError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted "
                          f"media types include: application/json, application/yaml (got {content_type})")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"the body of the request could not be decoded as JSON: {exc}") from None


def _discovery(services: Services, request: Request) -> Response | None:
    path = request.url.path.rstrip("/")
    accept = request.headers.get("accept", "")
    if path in ("/api", "/apis") and discovery.wants_aggregated(accept):
        return _json(discovery.aggregated(core=path == "/api"), media_type=discovery.AGGREGATED)
    if path == "/api":
        return _json(discovery.api_versions(services.address))
    if path == "/apis":
        return _json(discovery.group_list())
    if path == "/api/v1":
        return _json(discovery.resource_list("", "v1"))
    parts = path.split("/")[2:]
    if path.startswith("/apis/") and len(parts) in (1, 2) and parts[0] in GROUPS and parts[0]:
        if len(parts) == 1:
            return _json(discovery.api_group(parts[0]))
        if parts[1] == GROUPS[parts[0]][0].version:
            return _json(discovery.resource_list(parts[0], parts[1]))
    if path == "/openapi/v3":
        return _json(discovery.openapi_root(discovery.openapi_documents()))
    if path.startswith("/openapi/v3/"):
        document = discovery.openapi_documents().get(path[len("/openapi/v3/"):])
        if document is not None:
            return _json(document)
    return None


def _check_verb(rtype: ResourceType, info: RequestInfo) -> None:
    if info.subresource:
        verbs = rtype.subresources.get(info.subresource)
        if verbs is None:
            raise path_not_found()
        allowed = info.verb in verbs or (info.verb == "get" and "get" in verbs)
    else:
        allowed = info.verb in rtype.verbs
    if not allowed:
        raise method_not_supported(rtype.group, rtype.plural, info.verb)
    if not rtype.namespaced and info.namespace:
        raise path_not_found()
    if rtype.namespaced and not info.namespace and info.verb not in ("list", "watch"):
        raise method_not_supported(rtype.group, rtype.plural, info.verb)


def _delete_options(body: Any, params: dict[str, str]) -> dict[str, Any]:
    options = dict(body) if isinstance(body, dict) else {}
    if "gracePeriodSeconds" in params:
        options.setdefault("gracePeriodSeconds", params["gracePeriodSeconds"])
    return options


def _authorizer_lag(services: Services, caller: Caller, info: RequestInfo) -> None:
    """The fault `refuse_node_reads`: a node's read of a pod's ConfigMap/Secret or TokenRequest refused, with
    the Node authorizer's words."""
    node = caller.user.removeprefix("system:node:")
    reads = (info.verb == "get" and info.plural in ("configmaps", "secrets") and not info.subresource) or \
        (info.verb == "create" and info.plural == "serviceaccounts" and info.subresource == "token")
    if node != caller.user and reads and services.faults.take_node_read_refusal():
        resource = f"{info.plural}/{info.subresource}" if info.subresource else info.plural
        raise forbidden("", info.plural, info.name, f'User "{caller.user}" cannot {info.verb} resource "{resource}" '
                        f'in API group "" in the namespace "{info.namespace}": no relationship found between '
                        f"node '{node}' and this object")


async def _resource(services: Services, request: Request, caller: Caller) -> Response:
    params = dict(request.query_params)
    info = parse(request.method, request.url.path, params.get("watch"))
    services.audit.resource(caller.user, info, params.get("fieldSelector"))
    rtype = lookup(info.group, info.version, info.plural)
    if rtype is None:
        raise path_not_found()
    _check_verb(rtype, info)
    _authorizer_lag(services, caller, info)
    registry = services.registry
    dry_run = params.get("dryRun") == "All"
    accept = request.headers.get("accept", "")
    ns, name, sub = info.namespace, info.name, info.subresource

    if info.verb == "watch" or (info.verb == "list" and params.get("watch") in ("true", "1")):
        def shape(obj: dict[str, Any]) -> dict[str, Any]:
            shown = registry.present(rtype, obj)
            if tables.wants_table(accept):
                meta = {"resourceVersion": obj["metadata"]["resourceVersion"]}
                return tables.table(rtype.kind, [shown], meta, params.get("includeObject", "Metadata"))
            return shown
        stream = open_watch(registry, rtype, ns, params, services.faults, shape, services.bookmark_interval)
        return StreamingResponse(stream, media_type="application/json")
    if info.verb == "list":
        listed = registry.list(rtype, ns, params)
        if tables.wants_table(accept):
            full = [registry.present(rtype, item) for item in registry.select(rtype, ns, params)[0]]
            limited = full[:len(listed["items"])] if params.get("limit") else full
            return _json(tables.table(rtype.kind, limited, listed["metadata"],
                                      params.get("includeObject", "Metadata")))
        return _json(listed)
    if info.verb == "get" and sub == "log":
        content_type, log_stream = await open_log(registry, services.kubelet, ns, name, params)
        if log_stream is None:
            return Response(status_code=204)
        return StreamingResponse(log_stream, media_type=content_type)
    if info.verb == "get":
        obj = registry.get(rtype, ns, name)
        if tables.wants_table(accept):
            return _json(tables.table(rtype.kind, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]},
                                      params.get("includeObject", "Metadata")))
        return _json(obj)

    if info.verb == "create" and rtype.plural == "selfsubjectreviews":
        # Any authenticated caller (ClusterRole system:basic-user). The review has no spec, so its body (kubectl
        # sends protobuf, which the stand-in cannot read) says nothing: answered without reading it.
        return _json(reviews.self_subject_review(caller), 201)
    body = await _body(request) if info.verb != "patch" else await request.body()
    if info.verb == "create" and (sub == "binding" or rtype.plural == "bindings"):
        if not isinstance(body, dict) or not (body.get("target") or {}).get("name"):
            raise bad_request("a Binding needs target.name")
        pod = name if sub == "binding" else (body.get("metadata") or {}).get("name", "")
        return _json(bind(registry, ns, pod, body["target"]["name"], (body.get("metadata") or {}).get("uid")), 201)
    if info.verb == "create" and rtype.plural in ("tokenreviews", "subjectaccessreviews"):
        reviews.may_create(services.grants, caller, rtype.group, rtype.plural)
        if rtype.plural == "tokenreviews":
            return _json(reviews.token_review(services.authenticator, body), 201)
        return _json(reviews.subject_access_review(services.grants, body), 201)
    if info.verb == "create" and sub == "token":
        request_body = body if isinstance(body, dict) else {}
        return _json(services.issuer.token_request(registry.store, ns, name, request_body), 201)
    if info.verb == "create":
        return _json(registry.create(rtype, ns, body, caller, dry_run), 201)
    if info.verb == "update":
        return _json(registry.update(rtype, ns, name, sub, body, dry_run))
    if info.verb == "patch":
        code, obj = registry.patch(rtype, ns, name, sub, request.headers.get("content-type", ""), body, caller,
                                   dry_run)
        return _json(obj, code)
    if info.verb == "delete":
        return _json(registry.delete(rtype, ns, name, _delete_options(body, params), dry_run))
    if info.verb == "deletecollection":
        return _json(registry.delete_collection(rtype, ns, params, _delete_options(body, params), dry_run))
    raise path_not_found()


def build_app(services: Services) -> Starlette:
    async def handle(request: Request) -> Response:
        path = request.url.path
        try:
            if path in PUBLIC[:3]:
                return PlainTextResponse("ok")
            if path == "/version":
                return _json(discovery.VERSION)
            if services.faults.latency:
                await asyncio.sleep(services.faults.latency)
            caller = services.authenticator.authenticate(request.headers.get("authorization"),
                                                         request.scope.get("state", {}).get("peer_cert"))
            if (target := stream_verb(path)) is not None and request.headers.get("upgrade"):
                return await spdy_passthrough(request, services.registry, services.kubelet, *target)
            if request.method == "GET" and (found := _discovery(services, request)) is not None:
                services.audit.non_resource(caller.user, request.method, path)
                return found
            return await _resource(services, request, caller)
        except StatusError as error:
            return _status_response(error)
        except Exception as exc:  # answer like the real one (500 Status) and keep the trace in the log
            log.exception("stand-in failed on %s %s", request.method, path)
            return _status_response(StatusError(500, "InternalError", f"Internal error occurred: {exc}"))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(services.scheduler.run())]
        if services.gc is not None:
            tasks.append(asyncio.create_task(services.gc.run()))
        if services.endpoint_slices is not None:
            tasks.append(asyncio.create_task(services.endpoint_slices.run()))
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def handle_websocket(websocket: WebSocket) -> None:
        """kubectl exec/attach (WebSocket, translated to SPDY for the kubelet) and port-forward (SPDY tunnelled in
        WebSocket, unwrapped): streams.py."""
        target = stream_verb(websocket.url.path)
        try:
            services.authenticator.authenticate(websocket.headers.get("authorization"),
                                                websocket.scope.get("state", {}).get("peer_cert"))
            if target is None:
                raise path_not_found()
            if target[0] == "portforward":
                await websocket_portforward(websocket, services.registry, services.kubelet, *target[1:])
            else:
                await websocket_exec(websocket, services.registry, services.kubelet, *target)
        except StatusError as error:
            await websocket.send_denial_response(_status_response(error))

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
    return Starlette(routes=[Route("/{path:path}", handle, methods=methods),
                             WebSocketRoute("/{path:path}", handle_websocket)], lifespan=lifespan)
