"""A fake interLink API with slurmlink's change feed, for the vk's feed tests (no SLURM: the test says when a
pod's containers start and end). It implements the contract of `GET /slurmlink/v1/changes` as the real API
must (slurmlink/wire/changes.py): a cursor `<epoch>:<revision>`, a new epoch on `restart()`, a reset with a
snapshot for another epoch or a cursor older than the kept history, a long poll that answers the pods changed
after the cursor (their current status, once each) or, after `wait` seconds, nothing and the same cursor.

`/create` makes a pod Pending (job id given), `/delete` ends its containers (exit 143, as a cancelled job),
`/status` answers from the same state. `feed=False` serves no feed at all (404, as upstream interLink);
`feed_method="POST"` serves it for another method only (a GET then gets 405).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from slurmlink.wire import names
from slurmlink.wire.changes import DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS
from tests.harness.ports import free_port
from tests.harness.waiting import wait_until

Obj = dict[str, Any]
STARTED = "2030-01-01T00:00:01Z"
FINISHED = "2030-01-01T00:00:02Z"


@dataclass
class FakePod:
    pod: Obj
    jid: str
    containers: list[Obj]
    revision: int = 0


@dataclass
class FeedState:
    """Everything the fake knows, shared by the server's thread and the test's (under `lock`)."""

    epoch: str = field(default_factory=lambda: secrets.token_hex(4))
    revision: int = 0
    oldest: int = 0  # a cursor older than this gets a reset (the history kept)
    pods: dict[str, FakePod] = field(default_factory=dict)
    removed: dict[str, tuple[Obj, int]] = field(default_factory=dict)  # uid -> (namespace/name/uid, revision)
    deletes: list[str] = field(default_factory=list)  # uids, in the order /delete was called
    lock: threading.Lock = field(default_factory=threading.Lock)


def waiting(pod: Obj) -> list[Obj]:
    return [{"name": c["name"], "image": c.get("image", ""), "ready": False, "restartCount": 0,
             "state": {"waiting": {"reason": "Pending"}}} for c in pod["spec"]["containers"]]


def running(pod: Obj) -> list[Obj]:
    return [{"name": c["name"], "image": c.get("image", ""), "ready": True, "started": True, "restartCount": 0,
             "state": {"running": {"startedAt": STARTED}}} for c in pod["spec"]["containers"]]


def terminated(pod: Obj, code: int = 0) -> list[Obj]:
    return [{"name": c["name"], "image": c.get("image", ""), "ready": False, "restartCount": 0,
             "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                      "startedAt": STARTED, "finishedAt": FINISHED}}}
            for c in pod["spec"]["containers"]]


class FeedApi:
    """The fake API in a thread on a loopback port; its state changes from the test's thread wake the polls."""

    def __init__(self, feed: bool = True, feed_method: str = "GET") -> None:
        self.state = FeedState()
        self.feed, self.feed_method = feed, feed_method
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.status_gate: threading.Event | None = None  # set: /status answers wait for it (computed before)
        self.feed_gate: threading.Event | None = None  # the same for the feed's answers
        self.feed_answers = 0  # answers computed (sent or held by the gate)
        self.status_calls = 0
        self._closing = False  # stop(): open long polls answer at once, so the server ends without cancelling
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # --- what the test does -----------------------------------------------------------------------------

    def set_containers(self, uid: str, containers: list[Obj]) -> None:
        """A pod's containers change (the job started, ended, ...): the revision moves and the polls wake."""
        with self.state.lock:
            entry = self.state.pods[uid]
            self.state.revision += 1
            entry.containers, entry.revision = containers, self.state.revision
        self._wake()

    def remove(self, uid: str) -> None:
        with self.state.lock:
            entry = self.state.pods.pop(uid)
            self.state.revision += 1
            meta = entry.pod["metadata"]
            ref = {"namespace": meta["namespace"], "name": meta["name"], "uid": uid}
            self.state.removed[uid] = (ref, self.state.revision)
        self._wake()

    def restart(self) -> None:
        """As an API restart looks on the feed: a new epoch, no history (the pods are recovered from SLURM)."""
        with self.state.lock:
            self.state.epoch = secrets.token_hex(4)
            self.state.oldest = self.state.revision
            self.state.removed.clear()
        self._wake()

    def pod(self, uid: str) -> FakePod:
        with self.state.lock:
            return self.state.pods[uid]

    def uids(self) -> list[str]:
        with self.state.lock:
            return list(self.state.pods)

    def _wake(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._bump)

    def _bump(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the routes -------------------------------------------------------------------------------------

    def _cursor(self) -> str:
        return f"{self.state.epoch}:{self.state.revision}"

    def _status(self, entry: FakePod) -> Obj:
        meta = entry.pod["metadata"]
        return {"name": meta["name"], "namespace": meta["namespace"], "UID": meta["uid"], "JID": entry.jid,
                "containers": entry.containers}

    def _since(self, since: str) -> int | None:
        """The revision after which to answer, or None for a reset."""
        epoch, _, revision = since.partition(":")
        if not since or epoch != self.state.epoch or not revision.isdigit() or int(revision) < self.state.oldest:
            return None
        return int(revision)

    def _answer(self, since: str) -> Obj | None:
        """The answer for `since` now, or None while nothing changed after it."""
        with self.state.lock:
            after = self._since(since)
            if after is None:
                return {"cursor": self._cursor(), "reset": True, "removed": [],
                        "pods": [self._status(e) for e in self.state.pods.values()]}
            if self.state.revision <= after:
                return None
            return {"cursor": self._cursor(), "reset": False,
                    "pods": [self._status(e) for e in self.state.pods.values() if e.revision > after],
                    "removed": [ref for ref, rev in self.state.removed.values() if rev > after]}

    async def changes(self, request: Request) -> Response:
        since = request.query_params.get("since", "")
        wait = min(float(request.query_params.get("wait") or DEFAULT_WAIT_SECONDS), MAX_WAIT_SECONDS)
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            assert self._changed is not None
            changed = self._changed  # taken before the look: a change after it sets this one
            answer = self._answer(since)
            if answer is not None:
                self.feed_answers += 1
                gate = self.feed_gate
                if gate is not None:  # computed now, sent late
                    await asyncio.get_running_loop().run_in_executor(None, gate.wait, 30)
                return JSONResponse(answer)
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or self._closing:
                return JSONResponse({"cursor": since, "reset": False, "pods": [], "removed": []})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    async def create(self, request: Request) -> Response:
        body = await request.json()
        pod = (body[0] if isinstance(body, list) else body)["pod"]
        uid = pod["metadata"]["uid"]
        with self.state.lock:
            if uid not in self.state.pods:
                self.state.revision += 1
                self.state.pods[uid] = FakePod(pod, str(1000 + len(self.state.pods)), waiting(pod),
                                               self.state.revision)
            jid = self.state.pods[uid].jid
        self._wake()
        return JSONResponse({"PodUID": uid, "PodJID": jid})

    async def status(self, request: Request) -> Response:
        self.status_calls += 1
        with self.state.lock:
            answers = [self._status(self.state.pods[ref["metadata"]["uid"]])
                       for ref in json.loads(await request.body() or b"[]")
                       if ref["metadata"].get("uid") in self.state.pods]
        gate = self.status_gate
        if gate is not None:  # the answer was computed above; it is only sent late
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 30)
        return JSONResponse(answers)

    async def delete(self, request: Request) -> Response:
        uid = str(((await request.json() or {}).get("metadata") or {}).get("uid"))
        with self.state.lock:
            self.state.deletes.append(uid)
            entry = self.state.pods.get(uid)
        if entry is not None and not all("terminated" in c["state"] for c in entry.containers):
            self.set_containers(uid, terminated(entry.pod, 143))
        return PlainTextResponse("cancelled")

    async def ping(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def logs(self, request: Request) -> Response:
        return PlainTextResponse("")

    def app(self) -> Starlette:
        routes = [Route("/pinglink", self.ping, methods=["POST"]), Route("/create", self.create, methods=["POST"]),
                  Route("/status", self.status, methods=["GET"]), Route("/getLogs", self.logs, methods=["GET"]),
                  Route("/delete", self.delete, methods=["DELETE"])]
        if self.feed:
            routes.append(Route(names.CHANGES_ROUTE, self.changes, methods=[self.feed_method]))
        return Starlette(routes=routes)

    # --- serving ----------------------------------------------------------------------------------------

    def start(self) -> FeedApi:
        """Serve (again, after `stop()`, on the same port and with the same state)."""
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = server = uvicorn.Server(config)

        def serve() -> None:
            async def main() -> None:
                self._loop, self._changed = asyncio.get_running_loop(), asyncio.Event()
                await server.serve()
            asyncio.run(main())
        self._closing = False
        self._thread = threading.Thread(target=serve, daemon=True, name="feed-api")
        self._thread.start()
        wait_until(lambda: server.started, 10, "the fake API to start")
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            for gate in (self.status_gate, self.feed_gate):
                if gate is not None:
                    gate.set()
            self._closing = True
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._bump)
            self._server.should_exit = True
            self._thread.join(10)
            self._loop = None


@contextlib.contextmanager
def serve_feed_api(feed: bool = True, feed_method: str = "GET") -> Iterator[FeedApi]:
    api = FeedApi(feed, feed_method).start()
    try:
        yield api
    finally:
        api.stop()
