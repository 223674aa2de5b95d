"""`kubectl exec` and `port-forward` into mode-1 pods: the proxy's interactive extension (`interactive` in the
config, off by default).

    POST /slurmlink/v1/jobs/{id}/exec?input=1&output=1&error=1&tty=1   {"command": [argv]}   (Upgrade: SPDY/3.1)
    POST /slurmlink/v1/jobs/{id}/portforward                                                 (Upgrade: SPDY/3.1)

The channels are a kubelet's query; the argv is in the JSON body (the API's wraps the pod's command in its
runtime's prelude: tens of KiB, more than a request's head may be), read within `max_body_bytes` like every
body (forward.py's read_body runs before this step).

The mode-1 API relays the vk's upgraded connection here with the pod's own Check-in token. The request has
passed the same gates as any other (allow-list, token, VO policy, mapping, rate limit; a service identity is
refused): the caller is a mapped local account. Then, before switching protocols, the job must be the
caller's (the ledger's word or SLURM's, as for the file extensions, and SLURM's word again for who owns it
now) and running, and the caller must have fewer than `max_sessions_per_user` sessions open. The session
itself is the kubelet's, as the API serves it in mode 2 (slurmlink.steps): each step runs as the caller's
account (`setpriv` to it, then `srun --overlap --jobid=<id>`). The command comes from the caller (the API
builds it from the pod's spec): it runs in the caller's own job as the caller, which is no more than the
caller could submit; it is passed as argv, never to a shell.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import parse_qsl

from starlette.responses import Response

from slurmlink.proxy import policy
from slurmlink.proxy.config import InteractiveSection
from slurmlink.proxy.errors import Refusal, error_response
from slurmlink.proxy.gates import Answer, Call
from slurmlink.proxy.joblookup import JobLookup
from slurmlink.proxy.ledger import Ledger
from slurmlink.proxy.poddir import local_uid, owner_of
from slurmlink.proxy.slurm_token import SlurmTokenError
from slurmlink.steps.portforward import PortForwardSession, connector_argv
from slurmlink.steps.session import ExecSession
from slurmlink.steps.srun import StepRefused, account_env, as_account, step_argv
from slurmlink.streams import remotecommand as rc
from slurmlink.streams.portforward import PROTOCOL as PORTFORWARD_PROTOCOL
from slurmlink.streams.spdy import SpdySession
from slurmlink.streams.upgrade import SPDY, asks_for_spdy, on_server_shutdown, switch_protocols

log = logging.getLogger("slurmlink.proxy")
SERVER = "the site's slurmlink proxy"  # in the goodbye of a shutdown


class Interactive:
    def __init__(self, section: InteractiveSection, lookup: JobLookup, ledger: Ledger | None,
                 slurm_token: Callable[[], str]) -> None:
        self.section = section
        self.lookup, self.ledger = lookup, ledger
        self.slurm_token = slurm_token  # raises SlurmTokenError
        self.sessions: Counter[str] = Counter()  # account -> sessions open now
        self.env = {"PATH": section.path, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                    **({"SLURM_CONF": section.slurm_conf} if section.slurm_conf else {})}

    async def answer(self, call: Call) -> Answer | None:
        """A step of the proxy (app.py): serves the upgrade routes, passes every other request on."""
        if not call.verdict.upgrade:
            return None
        try:
            return await self._serve(call)
        except Refusal as refusal:
            return Answer("refused", refusal.response())
        except SlurmTokenError as exc:
            log.error("no SlurmUser token: %s", exc)
            return Answer("refused", error_response(503, "ProxyMisconfigured", "the proxy has no SlurmUser token",
                                                    retry_after=30))

    async def _serve(self, call: Call) -> Answer:
        forwarding = call.route == policy.PORTFORWARD
        verb = "port-forward" if forwarding else "exec"
        if not self.section.enabled:
            raise Refusal(501, "InteractiveDisabled", f"{verb} is not enabled at this site: its slurmlink proxy has "
                          "`interactive.enabled: false` (the site's administrators can turn it on)")
        _switchable(call, verb)
        job_id = call.path.split("/")[4]  # "", "slurmlink", "v1", "jobs", id, verb
        owner, workdir = await self._running_job_of(call, job_id, verb)
        protocol = _protocol(call, (PORTFORWARD_PROTOCOL,) if forwarding else rc.SPDY_PROTOCOLS, verb)
        options = rc.ExecOptions.from_kubelet_query(parse_qsl(call.query, keep_blank_values=True))
        options = replace(options, command=() if forwarding else command_of(call.body))
        try:
            # looked up once, off the event loop: NSS may ask LDAP or sssd, which can be slow
            switch, env = await asyncio.to_thread(self._account, owner)
            step = [] if forwarding else [*switch, *self._step(job_id, workdir, list(options.command),
                                                               pty=options.tty)]
        except StepRefused as exc:
            raise Refusal(403, "Forbidden", exc.message) from None

        def step_for(port: int) -> tuple[list[str], dict[str, str]]:
            return [*switch, *self._step(job_id, workdir, connector_argv(port), pty=False, unbuffered=True)], env

        # checked and counted with no await between: two requests cannot both take the last session
        if sum(self.sessions.values()) >= self.section.max_sessions:
            raise Refusal(503, "TooManySessions", f"this site's proxy has {self.section.max_sessions} exec and "
                          "port-forward sessions open; try again shortly", retry_after=5)
        if self.sessions[owner] >= self.section.max_sessions_per_user:
            raise Refusal(429, "TooManySessions", f"{owner} has {self.section.max_sessions_per_user} exec and "
                          "port-forward sessions open at this site; close one", retry_after=5)
        self.sessions[owner] += 1
        try:
            reader, writer = switch_protocols(call.request.scope, [("Upgrade", SPDY), (rc.PROTOCOL_HEADER, protocol)])
            session = SpdySession(reader, writer, server=True)
            served = PortForwardSession(session, step_for) if forwarding else \
                ExecSession(session, options, protocol, step, env, server=SERVER)
            on_server_shutdown(call.request.scope, served.interrupt)
            log.info("%s into job %s as %s", verb, job_id, owner)
            await served.run()
        finally:
            self.sessions[owner] -= 1
            if self.sessions[owner] <= 0:
                del self.sessions[owner]
        return Answer("allowed", Response(status_code=101))  # for the metrics; never sent: the connection left HTTP

    async def _running_job_of(self, call: Call, job_id: str, verb: str) -> tuple[str, str]:
        """(owner, workdir) of a running job of the caller's, by the ledger's or SLURM's word, then SLURM's."""
        owner, workdir = await owner_of(job_id, call.caller, ledger=self.ledger, lookup=self.lookup,
                                        token=self.slurm_token())
        job = await self.lookup.job(job_id, as_user=owner, token=self.slurm_token())
        if job.user != owner:  # a job id SLURM has given out again is someone else's job
            raise Refusal(403, "Forbidden", f"job {job_id} no longer belongs to {owner}")
        if job.state != "RUNNING":
            raise Refusal(400, "NotRunning", f"job {job_id} is not running ({job.state}): {verb} needs a running job")
        await asyncio.to_thread(local_uid, job_id, owner)  # a local account, never root (NSS: off the loop)
        return owner, job.workdir or workdir

    def _account(self, owner: str) -> tuple[list[str], dict[str, str]]:
        """The argv prefix that runs a step as `owner` (never root), and the steps' environment for it."""
        return as_account([], owner, setpriv=self.section.setpriv), account_env(owner, self.env)

    def _step(self, job_id: str, workdir: str, argv: list[str], *, pty: bool, unbuffered: bool = False) -> list[str]:
        return step_argv(self.section.srun, job_id, workdir, argv, pty=pty, unbuffered=unbuffered)


def command_of(body: bytes) -> tuple[str, ...]:
    """The argv of an exec request's body (`{"command": ["argv0", ...]}`); Refusal when it is not one."""
    try:
        command = json.loads(body).get("command") if body else None
    except (ValueError, AttributeError):
        command = None
    if not isinstance(command, list) or not command or not all(isinstance(word, str) and "\x00" not in word
                                                               for word in command):
        raise Refusal(400, "BadRequest", 'exec takes its command as a JSON body: {"command": ["argv0", ...]} '
                      "(strings without NUL, at least one)")
    return tuple(command)


def _switchable(call: Call, verb: str) -> None:
    """Refusal unless the request asked to switch to SPDY/3.1 as the edge serves it (`Connection: Upgrade`
    included, as a connection's first request or on an idle one: edge.py): checked before anything is looked up."""
    if not asks_for_spdy(call.request.scope):
        raise Refusal(400, "UpgradeRequired", f"{verb} is an upgrade to {SPDY} (`Connection: Upgrade` and "
                      f"`Upgrade: {SPDY}`), as a connection's first request or on an idle one")


def _protocol(call: Call, supported: tuple[str, ...], verb: str) -> str:
    """The SPDY upgrade's stream protocol: the client's first offer we speak (a kubelet's rule)."""
    offered = [value for name, value in call.headers if name == rc.PROTOCOL_HEADER.lower()]
    protocol = rc.negotiate(offered, supported)
    if protocol is None:
        raise Refusal(403, "ProtocolMismatch", f"unable to negotiate protocol: client supports {offered}, "
                      f"server supports {list(supported)}")
    return protocol
