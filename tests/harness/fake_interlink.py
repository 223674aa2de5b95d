"""A fake interLink API, for vk tests that need no SLURM (only the vk's Kubernetes side is under test): every
pod it is given runs at once and stays running, its log is one line, a delete is accepted."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.harness.ports import free_port
from tests.harness.waiting import wait_until

LOG_TEXT = "hello from the fake interLink API\n"


def fake_interlink_app() -> Starlette:
    created: dict[str, dict[str, Any]] = {}

    async def ping(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def create(request: Request) -> Response:
        body = await request.json()
        pod = (body[0] if isinstance(body, list) else body)["pod"]
        created[pod["metadata"]["uid"]] = pod
        return JSONResponse({"PodUID": pod["metadata"]["uid"], "PodJID": "4242"})

    async def status(request: Request) -> Response:
        answers = []
        for ref in json.loads(await request.body() or b"[]"):
            pod = created.get(ref["metadata"].get("uid"))
            if pod is not None:
                containers = [{"name": c["name"], "ready": True, "restartCount": 0, "image": c.get("image", ""),
                               "state": {"running": {"startedAt": "2030-01-01T00:00:00Z"}}}
                              for c in pod["spec"]["containers"]]
                answers.append({"name": pod["metadata"]["name"], "namespace": pod["metadata"]["namespace"],
                                "UID": pod["metadata"]["uid"], "JID": "4242", "containers": containers})
        return JSONResponse(answers)

    async def logs(request: Request) -> Response:
        return PlainTextResponse(LOG_TEXT)

    async def delete(request: Request) -> Response:
        pod = await request.json()
        created.pop(str(((pod or {}).get("metadata") or {}).get("uid")), None)
        return PlainTextResponse("deleted")

    return Starlette(routes=[Route("/pinglink", ping, methods=["POST"]), Route("/create", create, methods=["POST"]),
                             Route("/status", status, methods=["GET"]), Route("/getLogs", logs, methods=["GET"]),
                             Route("/delete", delete, methods=["DELETE"])])


@contextlib.contextmanager
def serve_fake_interlink() -> Iterator[str]:
    """The fake API on a free loopback port (uvicorn in a thread); yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(fake_interlink_app(), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True, name="fake-interlink-api")
    thread.start()
    wait_until(lambda: server.started, 10, "the fake interLink API to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
