"""The cli backend against a real SLURM 22.05 (the `slurm_cluster` session fixture)."""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from slurmlink.core.naming import JOB_NAME_PREFIX
from slurmlink.core.records import JobInfo, PodDirectory
from slurmlink.devcluster import DevCluster
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.cli import CliBackend, CliConfig
from slurmlink.slurm.commands import SEP, squeue
from slurmlink.translate.job import BatchJob
from tests.harness.waiting import wait_until_async

pytestmark = pytest.mark.slurm
T = TypeVar("T")

# What translate's scripts do, reduced to the layout's files for one container "c1".
STATUS_SCRIPT = """#!/bin/bash
set -eu
mkdir -p logs status
date -u +%Y-%m-%dT%H:%M:%SZ > status/c1.started
{ echo "user=$(id -un)"; echo "greeting=$GREETING"; echo "home=$HOME"; echo "path=$PATH"; } > logs/c1.log
env > logs/env.log
echo 0 > status/c1.exit.tmp && mv status/c1.exit.tmp status/c1.exit
date -u +%Y-%m-%dT%H:%M:%SZ > status/c1.finished
"""
# Stops gracefully on SIGTERM to the batch script (scancel --signal=TERM --batch).
SLEEP_SCRIPT = """#!/bin/bash
mkdir -p status
trap 'echo Killed > status/c1.reason; echo 143 > status/c1.exit; kill $child; exit 143' TERM
sleep 300 & child=$!
wait $child
"""


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def backend(slurm_cluster: DevCluster) -> CliBackend:
    return CliBackend(CliConfig(job_root=str(slurm_cluster.job_root), env=slurm_cluster.env,
                                bin_dir=str(slurm_cluster.bin_dir or "")))


def new_job(cluster: DevCluster, script: str, **changes: object) -> BatchJob:
    uid = uuid.uuid4().hex[:12]
    workdir = f"{cluster.job_root}/it-{uid}"
    fields: dict[str, object] = {
        "name": f"{JOB_NAME_PREFIX}{uid}", "comment": f"itest/pod {uid}", "workdir": workdir,
        "script": script, "stdout": f"{workdir}/job.out", "cpus_per_task": 1, "memory_mb": 100,
        "time_limit_minutes": 10,
    }  # fmt: skip
    fields.update(changes)
    return BatchJob(**fields)  # type: ignore[arg-type]


async def wait_state(backend: CliBackend, name: str, states: set[str], timeout: float = 60) -> JobInfo:
    async def check() -> JobInfo | None:
        job = next((j for j in await backend.jobs() if j.name == name), None)
        return job if job is not None and job.state in states else None

    return await wait_until_async(check, timeout, f"job {name} to reach {states}")


def test_submit_runs_as_the_user_and_reports_its_containers(
    backend: CliBackend, slurm_cluster: DevCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURMLINK_SERVICE_SECRET", "must-not-leak")  # the service's env stays out of jobs
    user = slurm_cluster.users[0]
    job = new_job(slurm_cluster, STATUS_SCRIPT, environment={"GREETING": "hello, world=1"})

    async def scenario() -> None:
        job_id = await backend.submit(job, user)
        assert job_id.isdigit()
        [seen] = [j for j in await backend.jobs() if j.name == job.name]
        assert (seen.job_id, seen.user, seen.comment) == (job_id, user, job.comment)
        done = await wait_state(backend, job.name, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
        assert done.state == "COMPLETED", await backend.read_log(PodDirectory(job.workdir, user, job_id), "c1")
        assert (done.exit_code, done.signal, done.workdir) == (0, None, job.workdir)
        assert done.submit_time and done.start_time and done.end_time

        records = await backend.containers(PodDirectory(job.workdir, user, job_id))
        assert set(records) == {"c1"}
        assert records["c1"].exit_code == 0 and records["c1"].started_at and records["c1"].finished_at
        log = (await backend.read_log(PodDirectory(job.workdir, user, job_id), "c1")).decode()
        home = pwd.getpwnam(user).pw_dir
        assert f"user={user}\n" in log and "greeting=hello, world=1\n" in log and f"home={home}\n" in log
        assert "/usr/bin" in log.split("path=")[1]
        assert (await backend.read_log(PodDirectory(job.workdir, user, job_id), "c1", offset=len(log))) == b""
        env = (await backend.read_log(PodDirectory(job.workdir, user, job_id), "env")).decode()
        assert "SLURMLINK_SERVICE_SECRET" not in env

    run(scenario())
    account = pwd.getpwnam(user)
    info = os.stat(job.workdir)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (account.pw_uid, 0o700)
    script = Path(job.workdir, "job.sh")
    assert script.read_text() == STATUS_SCRIPT and script.stat().st_uid == account.pw_uid


def test_invalid_partition_carries_slurms_message(backend: CliBackend, slurm_cluster: DevCluster) -> None:
    job = new_job(slurm_cluster, STATUS_SCRIPT, partition="nope")
    with pytest.raises(SlurmError) as info:
        run(backend.submit(job, slurm_cluster.users[0]))
    assert info.value.message == "invalid partition specified: nope"
    assert not info.value.transient


def test_cancel_a_running_job(backend: CliBackend, slurm_cluster: DevCluster) -> None:
    user = slurm_cluster.users[1]
    graceful = new_job(slurm_cluster, SLEEP_SCRIPT)
    hard = new_job(slurm_cluster, SLEEP_SCRIPT)

    async def scenario() -> None:
        ids = [await backend.submit(graceful, user), await backend.submit(hard, user)]
        for job in (graceful, hard):
            await wait_state(backend, job.name, {"RUNNING"})
            status_dir = f"{job.workdir}/status"

            async def started(path: str = status_dir) -> bool:
                return await asyncio.to_thread(os.path.isdir, path)

            await wait_until_async(started, 60, "the script to start")
        # Someone else may not cancel it.
        with pytest.raises(SlurmError, match="Access/permission denied"):
            await backend.cancel(ids[0], slurm_cluster.users[0])
        await backend.cancel(ids[0], user, signal="TERM")  # the script's trap records why it ended
        await backend.cancel(ids[1], user)
        ended = await wait_state(backend, graceful.name, {"COMPLETED", "FAILED", "CANCELLED"})
        assert ended.state != "RUNNING"
        records = await backend.containers(PodDirectory(graceful.workdir, user, ids[0]))
        assert (records["c1"].reason, records["c1"].exit_code) == ("Killed", 143)
        assert (await wait_state(backend, hard.name, {"CANCELLED"})).state == "CANCELLED"
        await backend.cancel(ids[1], user)  # cancelling again is fine

    run(scenario())


def test_capacity(backend: CliBackend, slurm_cluster: DevCluster) -> None:
    capacity = run(backend.capacity())
    assert 0 < capacity.cpus <= slurm_cluster.cpus
    assert capacity.memory_mb > 0


def test_one_status_interval_costs_one_squeue_for_50_jobs(
    backend: CliBackend, slurm_cluster: DevCluster
) -> None:
    user = slurm_cluster.users[2]
    # Held back by --begin, so they queue without taking the node.
    jobs = [new_job(slurm_cluster, STATUS_SCRIPT, extra_options=("--begin=now+1hour",)) for _ in range(50)]

    async def scenario() -> None:
        sem = asyncio.Semaphore(8)

        async def submit(job: BatchJob) -> str:
            async with sem:
                return await backend.submit(job, user)

        ids = await asyncio.gather(*(submit(j) for j in jobs))
        try:
            await backend.jobs()  # the first list also looks in accounting, once (the service's recovery)
            before = dict(backend.runner.counts)
            started = time.perf_counter()
            found = {j.name: j for j in await backend.jobs()}
            elapsed = time.perf_counter() - started
            assert {j.name for j in jobs} <= set(found)
            assert all(found[j.name].state == "PENDING" for j in jobs)
            assert all(found[j.name].reason == "BeginTime" for j in jobs)
            after = backend.runner.counts
            spent = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
            assert spent == {"squeue": 1}
            print(f"\nsqueue with {len(found)}+ jobs: {elapsed * 1000:.1f} ms")
        finally:
            await asyncio.gather(*(backend.cancel(i, user) for i in ids))

    run(scenario())


def test_finished_without_accounting_costs_one_command_once(backend: CliBackend) -> None:
    # The dev cluster runs without slurmdbd: sacct refuses, the backend answers {} and stops asking.
    assert run(backend.finished([])) == {}
    assert backend.runner.counts["sacct"] == 0
    assert run(backend.finished(["1", "2"])) == {}
    assert run(backend.finished(["3"])) == {}
    assert backend.runner.counts["sacct"] == 1 and backend.accounting is False


def test_submit_refuses_bad_workdirs_and_root(backend: CliBackend, slurm_cluster: DevCluster) -> None:
    user = slurm_cluster.users[0]
    for workdir in ("/tmp/elsewhere", f"{slurm_cluster.job_root}/../etc", str(slurm_cluster.job_root)):
        with pytest.raises(SlurmError, match="not inside the job root"):
            run(backend.submit(new_job(slurm_cluster, STATUS_SCRIPT, workdir=workdir), user))
    with pytest.raises(SlurmError, match="root"):
        run(backend.submit(new_job(slurm_cluster, STATUS_SCRIPT), "root"))
    # A workdir that is a user's symlink to another place is refused, not followed.
    link = Path(slurm_cluster.job_root, f"it-link-{uuid.uuid4().hex[:8]}")
    link.symlink_to("/tmp")
    try:
        with pytest.raises(SlurmError):
            run(backend.submit(new_job(slurm_cluster, STATUS_SCRIPT, workdir=str(link)), user))
    finally:
        link.unlink()



def test_the_time_env_changes_no_time_squeue_prints(slurm_cluster: DevCluster, backend: CliBackend) -> None:
    """squeue.ENV sets TZ to the zone file an unset TZ means (a cheaper squeue): a finished job's line, times
    included, is the same with it and without it."""
    job = new_job(slurm_cluster, STATUS_SCRIPT)

    async def scenario() -> tuple[str, str]:
        job_id = await backend.submit(job, slurm_cluster.users[0])
        await wait_state(backend, job.name, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})
        argv = [*squeue.argv(backend.bin["squeue"]), f"--jobs={job_id}"]
        with_tz = await backend.runner.run(argv, env=squeue.ENV)
        without = await backend.runner.run(argv, env={k: v for k, v in squeue.ENV.items() if k != "TZ"})
        assert with_tz.ok and without.ok
        return with_tz.out, without.out

    with_tz, without = run(scenario())
    assert squeue.ENV["TZ"] == ":/etc/localtime"
    assert with_tz == without and job.name in with_tz and with_tz.count(SEP) >= 10
