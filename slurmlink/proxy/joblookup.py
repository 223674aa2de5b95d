"""Asking slurmrestd who owns a job and where it runs: `GET /slurm/{v}/job/{id}` as a given user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from slurmlink.proxy import headers as header_rules
from slurmlink.proxy.apiversion import ApiVersion
from slurmlink.proxy.errors import Refusal
from slurmlink.slurm import rest_shapes

INVALID_JOB_ID = 2017  # SLURM's "Invalid job id specified": it does not know the job (any more)
# Base states in which a job will write nothing more.
ENDED_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                          "BOOT_FAIL", "DEADLINE", "PREEMPTED", "SPECIAL_EXIT"})


@dataclass(frozen=True)
class SlurmJob:
    job_id: str
    user: str
    workdir: str
    state: str  # base state, e.g. RUNNING

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES


class JobLookup:
    def __init__(self, http: httpx.AsyncClient, upstream: str, versions: ApiVersion) -> None:
        self.http, self.upstream, self.versions = http, upstream, versions

    async def job(self, job_id: str, *, as_user: str, token: str, version: str | None = None) -> SlurmJob:
        """The job as `as_user` sees it (through API `version`, by default the proxy's own); Refusal 404
        when SLURM does not know it, 502/503 when it cannot say."""
        own = version is None
        url = f"{self.upstream}/slurm/{version or await self.versions.get()}/job/{job_id}"
        try:
            answer = await self.http.get(url, headers={header_rules.USER_NAME: as_user,
                                                       header_rules.USER_TOKEN: token})
            body = answer.json()
        except httpx.TimeoutException:
            raise Refusal(503, "UpstreamUnavailable", "slurmrestd did not answer in time; try again later",
                          retry_after=5) from None
        except httpx.HTTPError as exc:
            self.versions.forget()
            raise Refusal(502, "UpstreamUnreachable", f"slurmrestd is unreachable: {type(exc).__name__}") from None
        except ValueError:
            if own and answer.status_code == 404:  # slurmrestd no longer serves that version
                self.versions.forget()
            raise Refusal(502, "UpstreamError", f"slurmrestd answered {answer.status_code} without JSON") from None
        return _parse(job_id, answer.status_code, body)


def _parse(job_id: str, status: int, body: Any) -> SlurmJob:
    body = body if isinstance(body, dict) else {}
    errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    jobs = [j for j in body.get("jobs") or [] if isinstance(j, dict) and str(j.get("job_id")) == job_id]
    if INVALID_JOB_ID in rest_shapes.error_codes(body) or (status == 200 and not errors and not jobs):
        raise Refusal(404, "NotFound", f"job {job_id} is not known to SLURM (any more)")
    if status != 200 or errors or not jobs:
        said = "; ".join(str(e.get("description") or e.get("error") or "") for e in errors) or f"HTTP {status}"
        raise Refusal(502, "UpstreamError", f"slurmrestd could not look up job {job_id}: {said}"[:300])
    job = jobs[0]
    return SlurmJob(job_id, str(job.get("user_name") or ""), str(job.get("current_working_directory") or ""),
                    rest_shapes.base_state(job.get("job_state")).upper())
