"""The REST shapes against the real slurmrestd (JWT auth) of the test SLURM (v0.0.38 on 22.05, v0.0.40-42 on 24.11)."""

from __future__ import annotations

import os
import time

import httpx

from slurmlink.devcluster import DevCluster
from slurmlink.slurm.rest_shapes import (
    detect_version,
    error_codes,
    number,
    parse_jobs,
    parse_submit,
    submit_body,
    unchanged_listing,
    update_time,
)
from slurmlink.translate.script import build_job
from slurmlink.translate.site import SiteConfig
from tests.harness.cluster import TEST_REST_VERSION
from tests.harness.waiting import wait_until


def test_submit_and_follow_a_job_through_slurmrestd(slurm_cluster: DevCluster) -> None:
    user = slurm_cluster.users[0]
    # As the SlurmUser, acting for the user: what the proxy does.
    headers = {"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": slurm_cluster.token("slurm")}
    http = httpx.Client(base_url=slurm_cluster.rest_url, headers=headers, timeout=30)
    assert detect_version(http.get("/openapi/v3").json()) == slurm_cluster.rest_versions[0]
    version = TEST_REST_VERSION
    workdir = f"/tmp/slurmlink-rest-{os.getpid()}-{time.time_ns()}"
    pod = {"metadata": {"name": "rest", "namespace": "ns", "uid": f"rest-{time.time_ns()}"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "command": ["sh", "-c", "exit 3"]}]}}
    job = build_job(pod, workdir=workdir, site=SiteConfig())
    os.makedirs(workdir)
    os.chown(workdir, *(lambda p: (p.pw_uid, p.pw_gid))(__import__("pwd").getpwnam(user)))
    reply = http.post(f"/slurm/{version}/job/submit", json=submit_body(job, version, {"PATH": "/usr/bin:/bin"}))
    job_id = parse_submit(reply.json())

    def finished() -> object:
        [info] = parse_jobs(http.get(f"/slurm/{version}/job/{job_id}").json())
        return info if info.state not in ("PENDING", "RUNNING", "COMPLETING") else None

    info = wait_until(finished, 60, "the job to end")
    assert (info.user, info.state, info.exit_code, info.name) == (user, "FAILED", 3, job.name)
    with open(f"{workdir}/status/c.exit") as exit_file:
        assert exit_file.read().strip() == "3"
    # Nothing changed since a moment to come: what an unchanged queue costs. 22.05: a 304 with no body;
    # 24.11: v0.0.42 a 200 with no jobs and a warning, v0.0.40/v0.0.41 the same but only for "now+N"
    # (a plain number is refused there with a 422).
    future = int(time.time()) + 3600
    unchanged = http.get(f"/slurm/{version}/jobs", params={"update_time": future})
    if version == "v0.0.38":
        assert (unchanged.status_code, unchanged.content) == (304, b"")
    elif number(version) in (40, 41):
        assert unchanged.status_code == 422 and {9202, 9000} <= error_codes(unchanged.json())
        unchanged = http.get(f"/slurm/{version}/jobs", params={"update_time": "now+3600"})
    if version != "v0.0.38":
        assert unchanged_listing(unchanged.status_code, unchanged.json()), unchanged.text
        later = http.get(f"/slurm/{version}/jobs", params={"update_time": update_time(version, future - 7200, 3600)})
        assert any(str(job["job_id"]) == job_id for job in later.json()["jobs"])  # changed in the last hour
