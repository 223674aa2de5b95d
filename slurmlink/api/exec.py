"""`kubectl exec`, `attach` and `port-forward` at the API: the vk relays the apiserver's SPDY/3.1 connection
here, and this serves it the way a kubelet does (steps/session.py, steps/portforward.py). exec runs the command
as a new step of the pod's job, as the pod's own mapped account (`runuser -u <user> -- srun --overlap
--jobid=<job> ...`); attach follows the container's output (SLURM keeps no stdin of a running step to join).

In mode 1 (`backend: rest`) the API cannot start a step: exec and port-forward are relayed on, byte for byte,
to the proxy's interactive extension at the site, asked with the pod's own Check-in token; the proxy runs the
step as the account that token maps to. A proxy that has the extension off answers 501, which reaches kubectl
with its reason (and the vk makes it the pod's `...NotSupported` event). attach reads the container's log,
through the proxy's log extension in mode 1.

It sits in front of the API's app as plain ASGI (the connection leaves HTTP after the 101, which FastAPI's
middleware cannot follow), checks the same bearer token, and limits sessions per pod and per account.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from slurmlink.api import logs
from slurmlink.api.registry import PodEntry
from slurmlink.api.service import PodService
from slurmlink.core.errors import PodRejected
from slurmlink.slurm.base import SlurmError, Unsupported
from slurmlink.steps.portforward import PortForwardSession, connector_argv
from slurmlink.steps.session import AttachSession, ExecSession
from slurmlink.streams import remotecommand as rc
from slurmlink.streams.portforward import PROTOCOL as PORTFORWARD_PROTOCOL
from slurmlink.streams.relay import splice
from slurmlink.streams.spdy import SpdySession
from slurmlink.streams.upgrade import SPDY, asks_for_spdy, on_server_shutdown, switch_protocols
from slurmlink.translate.execcmd import exec_argv, find_container
from slurmlink.wire.interlink import ContainerLogOpts
from slurmlink.wire.names import ATTACH_ROUTE, EXEC_ROUTE, PORTFORWARD_ROUTE

log = logging.getLogger(__name__)
MAX_POD_BYTES = 4 * 1024 * 1024
RELAYED_STATUS = frozenset({400, 403, 404, 429, 501, 503})  # the proxy's refusals kubectl gets as they are


class ExecEndpoint:
    """ASGI: the exec/attach routes here, everything else to `app`."""

    def __init__(self, app: ASGIApp, service: PodService, token: str | None, *, per_pod: int, per_user: int
                 ) -> None:
        self.app, self.service, self.token = app, service, token
        self.per_pod, self.per_user = per_pod, per_user
        self.sessions_of_pod: Counter[str] = Counter()
        self.sessions_of_user: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in (EXEC_ROUTE, ATTACH_ROUTE, PORTFORWARD_ROUTE):
            await self.app(scope, receive, send)
            return
        refusal, started = await self._start(scope, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        assert started is not None
        await started

    async def _start(self, scope: Scope, receive: Receive) -> tuple[ASGIApp | None, Awaitable[None] | None]:
        headers = Headers(scope=scope)
        given = headers.get("authorization", "")
        if self.token is not None and not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return PlainTextResponse("missing or wrong bearer token\n", 401), None
        if not self.service.recovered.is_set():
            return PlainTextResponse("slurmlink has not yet recovered its state from SLURM; retry\n", 503), None
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        params = dict(query)
        entry = self.service.registry.get(params.get("uid", ""))
        container = params.get("container", "")
        pod = await _pod_of(receive)
        if entry is not None and pod is not None and (pod.get("metadata") or {}).get("uid") == entry.uid:
            entry.pod = pod  # as /status does: after a restart the API knows the spec only from the vk
        if entry is None or entry.pod is None or entry.rejected is not None:
            return PlainTextResponse(f"pod {params.get('namespace')}/{params.get('pod')} is not known here\n",
                                     404), None
        if entry.finished or not entry.job_id or (entry.job is not None and entry.job.state != "RUNNING"):
            what = f"container {container}" if container else f"pod {params.get('namespace')}/{params.get('pod')}"
            return PlainTextResponse(f"{what} is not running: its job "
                                     f"{entry.job_id or '(none)'} is not running\n", 400), None
        if self.sessions_of_pod[entry.uid] >= self.per_pod or self.sessions_of_user[entry.user] >= self.per_user:
            return PlainTextResponse(f"too many exec sessions (at most {self.per_pod} per pod and {self.per_user} "
                                     f"per account)\n", 429), None
        # Counted before any await (two requests cannot both pass), and before attach reads the log.
        self.sessions_of_pod[entry.uid] += 1
        self.sessions_of_user[entry.user] += 1
        try:
            refusal, started = await self._prepare(scope, headers, query, entry, container)
        except BaseException:
            self._release(entry)
            raise
        if refusal is not None:
            self._release(entry)
        return refusal, started

    async def _prepare(self, scope: Scope, headers: Headers, query: list[tuple[str, str]], entry: PodEntry,
                       container: str) -> tuple[ASGIApp | None, Awaitable[None] | None]:
        """The step (or the attached output) and the upgrade, for a session already counted."""
        assert entry.pod is not None
        options = rc.ExecOptions.from_kubelet_query(query)
        forwarding = scope["path"] == PORTFORWARD_ROUTE
        job_id, user, workdir = entry.job_id, entry.user, entry.workdir

        def step_for(port: int) -> tuple[list[str], dict[str, str]]:
            return self.service.backend.step_command(job_id, user, workdir, connector_argv(port), pty=False,
                                                     unbuffered=True)

        step: list[str] = []
        env: dict[str, str] = {}
        relayed = self.service.backend.relays_steps and scope["path"] != ATTACH_ROUTE
        try:
            if forwarding and not relayed:
                try:
                    step_for(1)  # refused now, before the upgrade, if this site cannot start steps
                except Unsupported:
                    raise Unsupported("port-forward is not supported with this site (mode 1 reaches SLURM "
                                      "through its REST API, which cannot start a step)") from None
            elif scope["path"] == ATTACH_ROUTE:
                find_container(entry.pod, container)
                output = await attach_output(self.service, entry, container)
            elif not forwarding:
                step = exec_argv(entry.pod, container, options.command, site=self.service.site,
                                 workdir=entry.workdir)
                if not relayed:
                    step, env = self.service.backend.step_command(entry.job_id, entry.user, entry.workdir, step,
                                                                  pty=options.tty)
        except PodRejected as exc:
            return PlainTextResponse(f"{exc}\n", 400), None
        except Unsupported as exc:
            return PlainTextResponse(f"{exc}\n", 501), None
        except SlurmError as exc:
            return PlainTextResponse(f"{exc}\n", 403), None
        if not asks_for_spdy(scope):
            return PlainTextResponse(f"Upgrade request required (`Connection: Upgrade` and `Upgrade: {SPDY}`)\n",
                                     400), None
        offered = headers.getlist(rc.PROTOCOL_HEADER)
        if relayed:
            # the channels in the query, as a kubelet gets them; the argv (with its runtime's prelude, tens of
            # KiB) in the body, where the proxy's limit on a request's head does not apply
            query = [] if forwarding else rc.ExecOptions((), options.stdin, options.stdout, options.stderr,
                                                         options.tty).kubelet_query()
            body = b"" if forwarding else json.dumps({"command": step}).encode()
            return await self._relay(scope, entry, "portforward" if forwarding else "exec", query, body, offered)
        supported = (PORTFORWARD_PROTOCOL,) if forwarding else rc.SPDY_PROTOCOLS
        protocol = rc.negotiate(offered, supported)
        if protocol is None:
            return PlainTextResponse(f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                     f"server supports {list(supported)}\n", 403), None
        reader, writer = switch_protocols(scope, [("Upgrade", SPDY), (rc.PROTOCOL_HEADER, protocol)])
        session = SpdySession(reader, writer, server=True)
        served: ExecSession | PortForwardSession
        if forwarding:
            served = PortForwardSession(session, step_for)
        elif scope["path"] == ATTACH_ROUTE:
            served = AttachSession(session, options, protocol, output)
        else:
            served = ExecSession(session, options, protocol, step, env)
        on_server_shutdown(scope, served.interrupt)
        return None, self._counted(entry, served.run())

    async def _relay(self, scope: Scope, entry: PodEntry, kind: str, query: list[tuple[str, str]], body: bytes,
                     offered: list[str]) -> tuple[ASGIApp | None, Awaitable[None] | None]:
        """Mode 1: the proxy's upgraded connection to the step, relayed to the vk byte for byte."""
        headers = [("Upgrade", SPDY), *((rc.PROTOCOL_HEADER, value) for value in offered)]
        try:
            answer = await self.service.backend.open_step_stream(entry.directory, kind, query, headers, body)
        except SlurmError as exc:
            return PlainTextResponse(f"{exc}\n", 503), None
        if answer.network is None:
            verb = "port-forward" if kind == "portforward" else kind
            text = f"{verb} through the site's proxy: {answer.reason}\n"
            return PlainTextResponse(text, answer.status if answer.status in RELAYED_STATUS else 502), None
        reader, writer = switch_protocols(scope, [("Upgrade", SPDY), (rc.PROTOCOL_HEADER, answer.protocol)])
        # nothing to say on a shutdown: the vk (and kubectl) see the connection end
        on_server_shutdown(scope, writer.close)

        def gone() -> bool:
            now = self.service.registry.get(entry.uid)
            return now is None or now.finished

        return None, self._counted(entry, splice(reader, writer, answer.network, gone))

    async def _counted(self, entry: PodEntry, session: Awaitable[None]) -> None:
        try:
            await session
        finally:
            self._release(entry)

    def _release(self, entry: PodEntry) -> None:
        for counter, key in ((self.sessions_of_pod, entry.uid), (self.sessions_of_user, entry.user)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]


async def _pod_of(receive: Receive) -> dict[str, Any] | None:
    """The pod object the vk sends as the request's body (read before the connection switches)."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_POD_BYTES:
            return None
        if not message.get("more_body"):
            break
    try:
        pod = json.loads(body) if body else None
    except ValueError:
        return None
    return pod if isinstance(pod, dict) and pod.get("spec") else None


async def attach_output(service: PodService, entry: PodEntry, container: str) -> AsyncIterator[bytes]:
    """The container's log from its current end on, until the container ends (or restarts)."""
    base = 0
    while chunk := await service.backend.read_log(entry.directory, container, base):
        base += len(chunk)
    record = entry.records.get(container)
    restarts = record.restarts if record else 0

    async def read(offset: int) -> bytes:
        return await service.backend.read_log(entry.directory, container, base + offset)

    def ended() -> bool:
        now = entry.records.get(container)
        return entry.finished or (now is not None and (now.exit_code is not None or now.restarts != restarts))

    return logs.stream(read, ContainerLogOpts(follow=True), record, ended, service.config.log_follow_interval)


