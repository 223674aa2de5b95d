"""Asking slurmrestd who owns a job and where it runs: `GET /slurm/{v}/job/{id}` as a given user."""

from __future__ import annotations

from typing import Any

import httpx

from slurmlink.core.records import JobInfo
from slurmlink.proxy import headers as header_rules
from slurmlink.proxy.apiversion import ApiVersion
from slurmlink.proxy.errors import Refusal
from slurmlink.slurm import rest_shapes

INVALID_JOB_ID = 2017  # SLURM's "Invalid job id specified": it does not know the job (any more)


class JobLookup:
    def __init__(self, http: httpx.AsyncClient, upstream: str, versions: ApiVersion) -> None:
        self.http, self.upstream, self.versions = http, upstream, versions

    async def job(self, job_id: str, *, as_user: str, token: str, version: str | None = None) -> JobInfo:
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


def _parse(job_id: str, status: int, body: Any) -> JobInfo:
    body = body if isinstance(body, dict) else {}
    errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    jobs = [job for job in rest_shapes.parse_jobs(body) if job.job_id == job_id]
    if INVALID_JOB_ID in rest_shapes.error_codes(body) or (status == 200 and not errors and not jobs):
        raise Refusal(404, "NotFound", f"job {job_id} is not known to SLURM (any more)")
    if status != 200 or errors or not jobs:
        said = "; ".join(str(e.get("description") or e.get("error") or "") for e in errors) or f"HTTP {status}"
        raise Refusal(502, "UpstreamError", f"slurmrestd could not look up job {job_id}: {said}"[:300])
    return jobs[0]
