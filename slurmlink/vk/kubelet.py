"""The kubelet HTTPS endpoint the apiserver dials: `kubectl logs` (`/containerLogs/...`), `kubectl exec` and
`attach` (`/exec/...`, `/attach/...`, relayed to the API: streaming.py), `/healthz`,
`/runningpods/`, `/metrics`. Logs are relayed from the interLink API's `/getLogs` as they stream. Only requests
that kubeletauth.KubeletGuard (wrapped around this app by the service) let through reach these routes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from slurmlink.core.errors import SlurmlinkError
from slurmlink.vk.controller import PodController
from slurmlink.vk.streaming import relay
from slurmlink.wire.client import ApiCallError, InterlinkClient
from slurmlink.wire.gojson import WireError
from slurmlink.wire.interlink import ContainerLogOpts, LogStruct


class BadQuery(SlurmlinkError, ValueError):
    pass


def _int(params: dict[str, str], key: str, minimum: int) -> int:
    if key not in params or params[key] == "":
        return 0
    try:
        value = int(params[key])
    except ValueError:
        raise BadQuery(f"{key}: {params[key]!r} is not an integer") from None
    if value < minimum:
        raise BadQuery(f"{key}: must be at least {minimum}, got {value}")
    return value


def log_options(params: dict[str, str]) -> tuple[ContainerLogOpts, int]:
    """The kubelet's query as interLink log options, plus a byte limit the vk applies itself: interLink
    refuses Tail and Bytes together, kubectl allows them (`--tail=10 --limit-bytes=100`)."""
    tail, limit = _int(params, "tailLines", 0), _int(params, "limitBytes", 1)
    since_seconds = _int(params, "sinceSeconds", 1)
    since_time = None
    if params.get("sinceTime"):
        try:
            since_time = datetime.fromisoformat(params["sinceTime"].replace("Z", "+00:00"))
        except ValueError:
            raise BadQuery(f"sinceTime: {params['sinceTime']!r} is not an RFC 3339 time") from None
    if since_seconds and since_time:
        raise BadQuery("at most one of sinceTime or sinceSeconds may be specified")
    flag = {key: params.get(key, "").lower() in ("true", "1") for key in ("timestamps", "follow", "previous")}
    opts = ContainerLogOpts(tail=tail, limit_bytes=0 if tail else limit, timestamps=flag["timestamps"],
                            follow=flag["follow"], previous=flag["previous"], since_seconds=since_seconds,
                            since_time=since_time)
    return opts, (limit if tail else 0)


async def _clipped(chunks: AsyncIterator[bytes], limit: int, close: Callable[[], Any]) -> AsyncIterator[bytes]:
    sent = 0
    try:
        async for chunk in chunks:
            if limit:
                chunk = chunk[: limit - sent]
            if chunk:
                sent += len(chunk)
                yield chunk
            if limit and sent >= limit:
                return
    finally:
        await close()


def build_app(controller: PodController, api: InterlinkClient, healthy: Callable[[], bool]) -> Starlette:
    """`api`: a client of its own (service.py), since `kubectl logs -f`, exec and port-forward hold a connection
    to the API for as long as they last, and must never take those the status rounds and pod creation need."""
    async def container_logs(request: Request) -> Response:
        namespace, name, container = (request.path_params[k] for k in ("namespace", "pod", "container"))
        state = controller.lookup(namespace, name)
        if state is None or state.gone:
            return PlainTextResponse(f"pod {namespace}/{name} is not on this node", 404)
        try:
            opts, limit = log_options(dict(request.query_params))
            query = LogStruct(namespace=namespace, pod_uid=state.uid, pod_name=name, container_name=container,
                              opts=opts).check()
        except (BadQuery, WireError) as exc:
            return PlainTextResponse(f"bad log request: {exc}", 400)
        stack = contextlib.AsyncExitStack()
        try:
            chunks = await stack.enter_async_context(api.logs(query))
        except ApiCallError as exc:
            await stack.aclose()
            code = exc.status if exc.status in (400, 404) else 502 if exc.status else 503
            return PlainTextResponse(f"logs of {namespace}/{name}/{container}: {exc}", code)
        return StreamingResponse(_clipped(chunks, limit, stack.aclose), media_type="text/plain")

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok" if healthy() else "not ready", 200 if healthy() else 503)

    async def running_pods(request: Request) -> Response:
        items = [{"metadata": {k: s.pod["metadata"].get(k) for k in ("name", "namespace", "uid")},
                  "spec": {"containers": [{"name": c.get("name"), "image": c.get("image")}
                                          for c in (s.pod.get("spec") or {}).get("containers") or []]}}
                 for s in controller.pods.values() if not s.gone and not s.finished]
        return Response(json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
                        media_type="application/json")

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def exec_or_attach(request: Request) -> Response:
        return await relay(request, controller, api)

    async def unsupported(request: Request) -> Response:
        return PlainTextResponse("this kubelet call is not supported for pods run as SLURM jobs", 501)

    return Starlette(routes=[
        Route("/containerLogs/{namespace}/{pod}/{container}", container_logs),
        Route("/exec/{namespace}/{pod}/{container}", exec_or_attach, methods=["GET", "POST"]),
        Route("/attach/{namespace}/{pod}/{container}", exec_or_attach, methods=["GET", "POST"]),
        Route("/portForward/{namespace}/{pod}", exec_or_attach, methods=["GET", "POST"]),
        Route("/healthz", healthz), Route("/runningpods/", running_pods), Route("/metrics", prometheus),
        Route("/{verb:str}/{namespace}/{pod}/{container}", unsupported, methods=["GET", "POST"]),
    ])
