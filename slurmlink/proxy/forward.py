"""The last steps of a request the gates let through to slurmrestd: read its body, forward it as the mapped
user with the SlurmUser token on a kept-alive connection (upstream.py), and relay the answer (a slurmlink
job's submission also enters the ledger)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import Histogram
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from slurmlink.core.naming import is_job_name
from slurmlink.edge import BODY_ARRIVED
from slurmlink.proxy import headers as header_rules
from slurmlink.proxy import policy
from slurmlink.proxy.errors import error_response
from slurmlink.proxy.gates import Answer, Call, Step
from slurmlink.proxy.joblookup import INVALID_JOB_ID
from slurmlink.proxy.ledger import Ledger, LedgerEntry
from slurmlink.proxy.roles import SERVICE
from slurmlink.proxy.slurm_token import SlurmTokenError, SlurmTokenSource
from slurmlink.proxy.upstream import UpstreamError, UpstreamPool, UpstreamResponse, UpstreamTimeout, valid_target
from slurmlink.slurm import rest_shapes
from slurmlink.streams.upgrade import listener_hook

log = logging.getLogger("slurmlink.proxy")

PASSED_BACK = ("content-type", "content-encoding", "last-modified", "etag", "cache-control")
MAX_SUBMIT_RESPONSE_BYTES = 1024 * 1024  # submit answers are small; they are buffered to fill the ledger


class Forwarder:
    def __init__(self, pool: UpstreamPool, slurm_token: SlurmTokenSource,
                 ledger: Ledger | None, max_body_bytes: int, upstream_seconds: Callable[[str], Histogram], *,
                 on_submitted: Callable[[LedgerEntry], None] | None = None, body_timeout: float = 30.0) -> None:
        self.pool = pool
        self.slurm_token = slurm_token
        self.ledger = ledger
        self.on_submitted = on_submitted  # e.g. the file watch begins watching the job's directory
        self.max_body_bytes = max_body_bytes
        self.upstream_seconds = upstream_seconds
        self.body_timeout = body_timeout

    def steps(self) -> list[Step]:
        # A check of what a request carries (e.g. a site's policy on a submission's job) is a step between
        # these two: `call.body` is whole by then, and nothing has reached slurmrestd yet.
        return [self.read_body, self.forward]

    async def read_body(self, call: Call) -> Answer | None:
        """The body, whole, within the size and time limits; a refusal here closes the connection (what is
        left of the body is never read)."""
        arrived = listener_hook(call.request.scope, BODY_ARRIVED)  # the edge's
        whole = arrived is not None and arrived()  # then reading it waits for nothing: no timer (None)
        try:
            async with asyncio.timeout(None if whole else self.body_timeout):
                body = await self._body(call)
        except TimeoutError:
            log.info("%s %s from %s as %s: no whole body within %g s", call.method, call.path, call.client,
                     call.user, self.body_timeout)
            return Answer("client-timeout", error_response(
                408, "RequestTimeout", f"the request body did not arrive within {self.body_timeout:g} s",
                close=True))
        except ClientDisconnect:
            log.info("%s %s from %s as %s: the client left before its body arrived", call.method, call.path,
                     call.client, call.user)
            return Answer("client-gone", error_response(400, "ClientDisconnected", "the client left", close=True))
        if body is None:
            return Answer("too-large", error_response(
                413, "PayloadTooLarge", f"the request body exceeds {self.max_body_bytes} bytes", close=True))
        call.body = body
        return None

    async def _body(self, call: Call) -> bytes | None:
        """The request's body; None as soon as it is known to be too large."""
        limit = self.max_body_bytes
        declared = call.request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in call.request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def forward(self, call: Call) -> Answer:
        try:
            slurm_token = self.slurm_token.token()
        except SlurmTokenError as exc:
            log.error("no SlurmUser token: %s", exc)
            return Answer("unavailable", error_response(503, "ProxyMisconfigured", "the proxy has no SlurmUser token",
                                                        retry_after=30))
        outgoing = header_rules.upstream_headers(call.headers, user=call.user, token=slurm_token)
        outgoing.append(("Accept-Encoding", "identity"))  # relay bytes as they are
        target = call.path + (f"?{call.query}" if call.query else "")
        if not valid_target(target):
            return Answer("policy", error_response(400, "BadRequest", "the query string is not valid"))
        upstream = await self._send(call, target, outgoing)
        if isinstance(upstream, Answer):
            return upstream
        # One line per request: the audit line says who, what and the decision; this one adds slurmrestd's
        # status, worth a line of its own only when it is an error (the metrics count every status).
        log.log(logging.INFO if upstream.status_code >= 400 else logging.DEBUG, "%s %s from %s as %s -> %d",
                call.method, call.path, call.client, call.user, upstream.status_code)
        passed = {k: v for k, v in upstream.headers if k in PASSED_BACK}
        if call.route == policy.SUBMIT and self.ledger is not None and call.caller.role != SERVICE:
            return await self._submission(call, upstream, passed)
        if call.route == policy.JOB and upstream.status_code == 500:
            return await _job_answer(upstream, passed)
        body = upstream.whole()
        if body is not None:  # a small answer, read whole with its head: no stream to relay
            await upstream.aclose()
            return Answer("allowed", Response(body, status_code=upstream.status_code, headers=passed))
        return Answer("allowed", StreamingResponse(
            _relay(upstream), status_code=upstream.status_code, headers=passed,
            background=BackgroundTask(upstream.aclose)))

    async def _send(self, call: Call, target: str, headers: list[tuple[str, str]]) -> UpstreamResponse | Answer:
        started = time.monotonic()
        try:
            return await self.pool.send(call.method, target, headers, call.body)
        except UpstreamTimeout as exc:
            log.warning("slurmrestd timed out for %s %s as %s: %s", call.method, call.path, call.user, exc)
            return Answer("upstream-timeout", error_response(
                503, "UpstreamUnavailable", "slurmrestd did not answer in time; try again later", retry_after=5))
        except UpstreamError as exc:
            log.warning("slurmrestd unreachable for %s %s: %s", call.method, call.path, exc)
            return Answer("upstream-error", error_response(
                502, "UpstreamUnreachable", f"slurmrestd is unreachable: {exc}"))
        except ValueError as exc:  # a client header that cannot be sent as it is (the edge lets none through)
            return Answer("policy", error_response(400, "BadRequest", str(exc)))
        finally:
            self.upstream_seconds(call.route).observe(time.monotonic() - started)

    async def _submission(self, call: Call, upstream: UpstreamResponse, passed: dict[str, str]) -> Answer:
        """The answer to a user's submission, buffered so that its job enters the ledger first."""
        answer = await _buffered(upstream)
        if answer is None:
            return Answer("upstream-error", error_response(
                502, "UpstreamError", "slurmrestd's submit answer was too large or broken off; look for the job "
                "before submitting again"))
        await self._record_submission(call.user, call.body, upstream.status_code, answer)
        return Answer("allowed", Response(answer, status_code=upstream.status_code, headers=passed))

    async def _record_submission(self, user: str, request_body: bytes, status: int, answer: bytes) -> None:
        """Put a slurmlink job submitted through the proxy in the ledger (what a service identity may touch)."""
        assert self.ledger is not None
        submitted = _submitted(request_body, status, answer)
        if submitted is None:
            return
        job_id, name, workdir = submitted
        try:
            entry = await asyncio.to_thread(self.ledger.record, job_id, user, name, workdir)
        except OSError as exc:  # the job exists: failing the answer would only make the client submit twice
            log.error("could not record job %s in the ledger %s: %s", job_id, self.ledger.path, exc)
            return
        if self.on_submitted is not None:
            self.on_submitted(entry)


async def _job_answer(upstream: UpstreamResponse, passed: dict[str, str]) -> Answer:
    """slurmrestd before 24.11 answers 500 for a job it does not know (SLURM's error 2017, which 24.11 answers
    with 404): relayed as a 404, the body as it is, so that an unknown job is a 404 whatever the version."""
    answer = await _buffered(upstream)
    if answer is None:
        return Answer("upstream-error", error_response(502, "UpstreamError", "slurmrestd's answer was too large "
                                                       "or broken off"))
    try:
        unknown = INVALID_JOB_ID in rest_shapes.error_codes(json.loads(answer))
    except (ValueError, AttributeError, TypeError):
        unknown = False
    return Answer("allowed", Response(answer, status_code=404 if unknown else 500, headers=passed))


async def _buffered(upstream: UpstreamResponse) -> bytes | None:
    """The whole (small) upstream body, or None when it is too large or broken off."""
    try:
        return await upstream.read(MAX_SUBMIT_RESPONSE_BYTES)
    except UpstreamError as exc:
        log.warning("slurmrestd broke off a submit answer: %s", exc)
        return None
    finally:
        await upstream.aclose()


def _submitted(request_body: bytes, status: int, answer: bytes) -> tuple[str, str, str] | None:
    """(job id, name, workdir) of a successful submission of a slurmlink job, else None. Pure."""
    if not 200 <= status < 300:
        return None
    try:
        request = json.loads(request_body)
    except ValueError:
        return None
    job: Any = request.get("job") if isinstance(request, dict) else None
    if not isinstance(job, dict) and isinstance(request, dict) and isinstance(request.get("jobs"), list):
        job = request["jobs"][0] if request["jobs"] else None  # newer versions: a list of heterogeneous parts
    if not isinstance(job, dict):
        return None
    name, workdir = job.get("name"), job.get("current_working_directory")
    if not is_job_name(name):
        return None  # not a slurmlink job: its answer is not parsed
    try:
        response = json.loads(answer)
    except ValueError:
        return None
    job_id = response.get("job_id") if isinstance(response, dict) else None
    if isinstance(job_id, bool) or not isinstance(job_id, int | str) or not str(job_id).isdigit() \
            or int(job_id) == 0:
        return None
    return str(job_id), name, workdir if isinstance(workdir, str) else ""


async def _relay(upstream: UpstreamResponse) -> AsyncIterator[bytes]:
    """The upstream body as it arrives; the upstream connection goes back to the pool even if the client left."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except UpstreamError as exc:
        log.warning("slurmrestd broke off a response: %s", exc)
    finally:
        await upstream.aclose()
