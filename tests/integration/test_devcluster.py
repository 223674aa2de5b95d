"""The dev cluster against itself: a real SLURM that runs jobs as the test users, by CLI and by REST."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import TypeVar

import httpx

from slurmlink.core.states import base_state
from slurmlink.devcluster import DevCluster
from tests.harness.waiting import wait_until

T = TypeVar("T")


def user_dir(cluster: DevCluster, user: str) -> Path:
    """A fresh directory under the job root that `user` owns (sbatch output goes there)."""
    path = cluster.job_root / f"test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    shutil.chown(path, user, user)
    return path


def test_status_reports_all_daemons_alive(slurm_cluster: DevCluster) -> None:
    status = slurm_cluster.status()
    assert set(status) == {"munged", "slurmctld", "slurmd", "slurmrestd"}
    for name, pid in status.items():
        assert pid is not None, f"{name} is not running"
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(name.encode())


def test_up_is_idempotent(slurm_cluster: DevCluster) -> None:
    before = slurm_cluster.status()
    slurm_cluster.up()
    assert slurm_cluster.status() == before


def test_sbatch_runs_as_the_submitting_user(slurm_cluster: DevCluster) -> None:
    workdir = user_dir(slurm_cluster, "sltest1")
    env = {**os.environ, **slurm_cluster.env}
    sbatch = [
        "sbatch",
        "--parsable",
        "-J",
        "devcluster-cli",
        "-D",
        str(workdir),
        "-o",
        str(workdir / "out.txt"),
    ]
    submit = ["runuser", "-u", "sltest1", "--", *sbatch, "--wrap", "id -un"]
    job_id = subprocess.run(submit, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert job_id.isdigit()

    def finished() -> str | None:
        squeue = ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T %u"]
        out = subprocess.run(squeue, env=env, check=True, capture_output=True, text=True).stdout.strip()
        return out if out.split()[0] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") else None

    assert wait_until(finished, 30, f"job {job_id} to finish", 0.1) == "COMPLETED sltest1"
    assert (workdir / "out.txt").read_text() == "sltest1\n"

    def jobcomp_line() -> str | None:
        text = slurm_cluster.jobcomp_path.read_text()
        return next((line for line in text.splitlines() if line.startswith(f"JobId={job_id} ")), None)

    line = wait_until(jobcomp_line, 30, f"job {job_id} in the jobcomp file", 0.1)
    assert re.search(r"\bUserId=sltest1\(\d+\)", line)
    assert "JobState=COMPLETED" in line
    shutil.rmtree(workdir)


def test_rest_submit_with_slurmuser_token_runs_as_named_user(slurm_cluster: DevCluster) -> None:
    workdir = user_dir(slurm_cluster, "sltest2")
    token = slurm_cluster.token(slurm_cluster.slurm_user)  # the SlurmUser may act for anyone
    headers = {"X-SLURM-USER-NAME": "sltest2", "X-SLURM-USER-TOKEN": token}
    version = slurm_cluster.rest_versions[0]
    job = {
        "name": "devcluster-rest",
        "partition": slurm_cluster.partition,
        "current_working_directory": str(workdir),
        "standard_output": str(workdir / "out.txt"),
        "environment": {"PATH": "/usr/bin:/bin"},
    }
    body: dict[str, object] = {"script": "#!/bin/bash\nid -un\n", "job": job}
    if version != "v0.0.38":  # 24.11's newest (v0.0.42): the script in the job, the environment a list
        body = {"job": {**job, "script": body["script"], "environment": ["PATH=/usr/bin:/bin"]}}
    base_url = f"{slurm_cluster.rest_url}/slurm/{version}"
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as http:
        resp = http.post("/job/submit", json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["errors"] == []
        job_id = resp.json()["job_id"]

        def finished() -> dict[str, object] | None:
            job: dict[str, object] = http.get(f"/job/{job_id}").json()["jobs"][0]
            state = base_state(job["job_state"])  # a list of flags from v0.0.40 on
            return job if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") else None

        info = wait_until(finished, 30, f"job {job_id} to finish", 0.1)
    assert (base_state(info["job_state"]), info["user_name"]) == ("COMPLETED", "sltest2")
    assert (workdir / "out.txt").read_text() == "sltest2\n"
    shutil.rmtree(workdir)


def test_stale_pid_files_are_not_taken_for_daemons(tmp_path: Path) -> None:
    # A recorded PID that is gone, or now belongs to another process, means "not running".
    cluster = DevCluster(tmp_path / "state")
    run = tmp_path / "state" / "run"
    run.mkdir(parents=True)
    (run / "slurmctld.pid").write_text(f"{os.getpid()}\n")
    (run / "slurmd.pid").write_text("999999999\n")
    (run / "munged.pid").write_text("garbage\n")
    assert cluster.status() == dict.fromkeys(("munged", "slurmctld", "slurmd", "slurmrestd"))


def test_22_05_and_24_11_run_side_by_side(slurm_cluster: DevCluster, slurm_cluster_2411: DevCluster) -> None:
    """Both releases at once, on their own ports: each runs jobs as the same host users, in its own Debian."""
    expected = {"22.05": "12.", "24.11": "13."}
    for cluster in (slurm_cluster, slurm_cluster_2411):
        workdir = user_dir(cluster, "sltest1")
        env = {**os.environ, **cluster.env}  # 24.11: its own client commands come first on PATH
        sbatch = ["sbatch", "--wait", "-D", str(workdir), "-o", str(workdir / "out.txt"),
                  "--wrap", "cat /etc/debian_version; id -u"]
        subprocess.run(["runuser", "-u", "sltest1", "--", *sbatch], env=env, check=True, capture_output=True,
                       timeout=120)
        debian, uid = (workdir / "out.txt").read_text().split()
        assert debian.startswith(expected[cluster.slurm]) and int(uid) == pwd.getpwnam("sltest1").pw_uid
        version = subprocess.run(["sinfo", "--version"], env=env, check=True, capture_output=True, text=True)
        assert version.stdout.split()[-1].startswith(cluster.slurm)
        shutil.rmtree(workdir)


def test_slurmrestd_whose_port_is_still_taken_is_started_again_once_it_is_free(slurm_cluster: DevCluster) -> None:
    # A CI run saw a restarted slurmrestd exit with "Address already in use": its port was not free yet.
    slurm_cluster.kill("slurmrestd")
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def taken() -> bool:  # the old process's connections may hold the port for a moment too
        try:
            holder.bind(("127.0.0.1", slurm_cluster.rest_port))
        except OSError:
            return False
        holder.listen()
        return True
    try:
        wait_until(taken, 60, "the port to be free for the test to hold it")
        threading.Timer(1.5, holder.close).start()
        slurm_cluster.restart_rest()
        assert all(slurm_cluster.status().values())
        assert "Address already in use" in slurm_cluster.log_tail("slurmrestd", 200)
    finally:
        holder.close()
        slurm_cluster.up()  # whatever happened, the session's later tests need slurmrestd
