"""What a service does with its privileges, run with the capabilities its systemd unit grants.

    python -m tests.deploy.capability_probe api JOB_ROOT USER     (as root: slurmlink api, backend cli)
    python -m tests.deploy.capability_probe proxy JOB_ROOT WORKDIR (as the proxy's user: its file reads)

Each step calls slurmlink's own code (CliBackend, PodFiles), exactly as the service does, and the probe prints
one JSON object: {step: "ok" | the error}. tests/deploy/test_systemd_units.py runs it under `setpriv` with the
unit's CapabilityBoundingSet (and with each capability left out), since PID 1 here cannot start the unit.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slurmlink.core.records import PodDirectory, VolumeFile
from slurmlink.slurm.cli import CliBackend, CliConfig
from slurmlink.slurm.podfiles import PodFiles
from slurmlink.translate.job import BatchJob

# A job's files as the job (the user) leaves them; the probe's own text, nothing from a pod.
AS_THE_JOB = ("mkdir -p status logs volumes/v && printf 0 > status/c.exit && printf hello > logs/c.log"
              " && printf old > volumes/v/token")
SLEEP_MARK = "3599.25"  # an unusual duration, to find the probe's own sleep among the machine's processes


def step(results: dict[str, str], name: str, action: Callable[[], Any]) -> None:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - every failure is a finding, reported by name
        results[name] = f"{type(exc).__name__}: {exc}"
    else:
        results[name] = "ok"


def sleepers() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep",
                                                                                          SLEEP_MARK.encode()]:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def probe_api(job_root: str, user: str) -> dict[str, str]:
    backend = CliBackend(CliConfig(job_root=job_root))
    account = backend._account(user)
    workdir = os.path.join(job_root, "default-probe")
    pod = PodDirectory(workdir=workdir, user=user, job_id="1")
    results: dict[str, str] = {}

    def run(argv: list[str], timeout: float = 30) -> str:
        result = asyncio.run(backend.runner.run(argv, user=user, timeout=timeout))
        assert result.ok, f"{argv[0]} as {user}: exit {result.returncode}: {result.err.strip()}"
        return result.out

    # submit(): the pod directory made for the user, the job script written into it
    job = BatchJob(name="slurmlink-probe", comment="default/probe", workdir=workdir, script="#!/bin/sh\n",
                   stdout=os.path.join(workdir, "job.out"), cpus_per_task=1, memory_mb=None)
    step(results, "prepare_workdir", lambda: backend._prepare_workdir(job, account))
    # every SLURM command runs as the user through runuser
    step(results, "runuser", lambda: run(["sh", "-c", f"cd {workdir} && {AS_THE_JOB} && id -un"]))

    def status() -> None:
        records = asyncio.run(backend.containers(pod))
        assert records["c"].exit_code == 0, f"status read as {records}"

    step(results, "read_status", status)

    def log() -> None:
        assert asyncio.run(backend.read_log(pod, "c")) == b"hello"

    step(results, "read_log", log)
    step(results, "write_volume_files", lambda: asyncio.run(
        backend.write_volume_files(pod, [VolumeFile(path="volumes/v/token", mode=0o640, data=b"new")])))

    def timeout_kills() -> None:
        # In a thread of its own: without the capability the call does not come back while the user's
        # process lives (it holds the command's pipes).
        outcome: dict[str, str] = {}
        threading.Thread(target=lambda: step(outcome, "sleep", lambda: run(["sleep", SLEEP_MARK], timeout=1)),
                         daemon=True).start()
        deadline = time.monotonic() + 10
        while not sleepers() and not outcome and time.monotonic() < deadline:
            time.sleep(0.05)
        while sleepers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not sleepers(), "the timed-out command's process (as the user) outlived its kill"
        while not outcome and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "did not answer within" in outcome.get("sleep", ""), f"the command: {outcome}"

    step(results, "timeout_kill", timeout_kills)
    return results


def probe_proxy(job_root: str, workdir: str) -> dict[str, str]:
    files = PodFiles(job_root)
    uid = os.stat(workdir).st_uid
    results: dict[str, str] = {}

    def status() -> None:
        assert files.read_status(workdir, uid, owned_dirs=True) == {"c.exit": "0"}

    def log() -> None:
        assert files.read_log(workdir, uid, "c", 0, 100, owned_dirs=True) == b"hello"

    step(results, "read_status", status)
    step(results, "read_log", log)
    return results


def main() -> None:
    role, job_root, target = sys.argv[1:4]
    results = probe_api(job_root, target) if role == "api" else probe_proxy(job_root, target)
    print(json.dumps(results), flush=True)
    os._exit(0)  # not waiting for a thread that a surviving process keeps busy


if __name__ == "__main__":
    main()
