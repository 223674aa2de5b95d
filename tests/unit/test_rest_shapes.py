"""SLURM REST API shapes of v0.0.38 to v0.0.44: submit bodies built, replies read."""

from __future__ import annotations

import pytest

from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.rest_shapes import detect_version, parse_jobs, parse_submit, submit_body
from slurmlink.translate.job import BatchJob

JOB = BatchJob(name="slurmlink-u", comment="ns/p", workdir="/jobs/ns-u", script="#!/bin/bash\ntrue\n",
               stdout="/jobs/ns-u/job.out", cpus_per_task=2, memory_mb=1024, time_limit_minutes=5,
               gres="gpu:1", extra_options=("--qos=high",))


def test_v38_body() -> None:
    body = submit_body(JOB, "v0.0.38", {"PATH": "/usr/bin"})
    assert body["script"] == JOB.script
    job = body["job"]
    assert job["environment"] == {"PATH": "/usr/bin"} and job["gres"] == "gpu:1" and job["qos"] == "high"
    assert (job["name"], job["cpus_per_task"], job["memory_per_node"], job["time_limit"]) == (
        "slurmlink-u", 2, 1024, 5)


def test_v41_and_later_put_the_script_in_the_job_and_env_in_a_list() -> None:
    body = submit_body(JOB, "v0.0.42", {"PATH": "/usr/bin"})
    assert "script" not in body and body["job"]["script"] == JOB.script
    assert body["job"]["environment"] == ["PATH=/usr/bin"] and body["job"]["tres_per_node"] == "gres/gpu:1"
    assert "script" in submit_body(JOB, "v0.0.40", {})


def test_options_without_a_rest_field_are_refused() -> None:
    job = BatchJob(**{**JOB.__dict__, "extra_options": ("--begin=now+1hour",)})
    with pytest.raises(SlurmError, match="--begin"):
        submit_body(job, "v0.0.38", {})


def test_version_detection() -> None:
    spec = {"paths": {f"/slurm/v0.0.{n}/job/submit": {} for n in (36, 38, 99)}}
    assert detect_version(spec) == "v0.0.38"
    with pytest.raises(SlurmError, match="offers no API version"):
        detect_version({"paths": {"/slurm/v0.0.35/job/submit": {}}})


def test_submit_replies() -> None:
    assert parse_submit({"job_id": 7, "errors": []}) == "7"
    held = {"job_id": 8, "errors": [{"error_code": 2042, "error": "Job is in held state"}]}
    assert parse_submit(held) == "8"  # a job id with errors still means a job exists
    with pytest.raises(SlurmError, match="Invalid partition"):
        parse_submit({"errors": [{"error": "Invalid partition name specified", "error_number": 2015}]})
    with pytest.raises(SlurmError, match="Invalid account"):
        parse_submit({"errors": [{"description": "Invalid account", "error_number": 2045, "source": "x"}]})
    # 24.11 (v0.0.40-v0.0.42): the cause is in `error`, beneath a generic description
    with pytest.raises(SlurmError, match="Batch job submission failed: Invalid partition name specified"):
        parse_submit({"errors": [{"description": "Batch job submission failed", "error_number": 2000,
                                  "error": "Invalid partition name specified", "source": "slurm_submit_batch_job()"}]})


def test_job_lists_of_old_and_new_versions() -> None:
    old = {"jobs": [{"job_id": 5, "name": "slurmlink-a", "user_name": "u", "job_state": "COMPLETED",
                     "exit_code": 768, "state_reason": "None", "submit_time": 100, "start_time": 101,
                     "end_time": 102, "current_working_directory": "/w", "comment": "ns/p"},
                    {"job_id": 6, "name": "other", "job_state": "RUNNING"}]}
    [job] = parse_jobs(old, "slurmlink-")
    assert (job.job_id, job.state, job.exit_code, job.signal, job.reason) == ("5", "COMPLETED", 3, None, "")
    new = {"jobs": [{"job_id": 9, "name": "slurmlink-b", "user_name": "u", "job_state": ["FAILED", "REQUEUED"],
                     "exit_code": {"status": ["SIGNALED"], "return_code": {"set": True, "number": 0},
                                   "signal": {"id": {"set": True, "number": 9}, "name": "KILL"}},
                     "end_time": {"set": True, "infinite": False, "number": 200}}]}
    [job] = parse_jobs(new, "slurmlink-")
    assert (job.state, job.exit_code, job.signal, job.end_time is not None) == ("FAILED", 0, 9, True)
