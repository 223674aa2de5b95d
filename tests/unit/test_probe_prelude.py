"""The prelude's probe and hook machinery under a real bash, without SLURM (the job script is plain bash; the
host runtime runs the containers): timeouts, startup failures, and preStop within the grace period."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slurmlink.translate import layout
from slurmlink.translate.script import build_job
from slurmlink.translate.site import SiteConfig

# The container waits (at most 30 s) until the job has noted something about it, then ends.
WAIT_FOR_A_NOTE = "for i in $(seq 300); do [ -s status/c.events ] && exit 0; sleep 0.1; done; exit 1"


def pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u-1"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x", **container}], **spec}}


@contextmanager
def job(p: dict[str, Any]) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "pod"
        script = build_job(p, workdir=str(workdir), site=SiteConfig(runtime="host")).script
        process = subprocess.Popen(["bash", "-c", script], cwd=tmp, env={"PATH": os.environ["PATH"]},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            yield process, workdir
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def record(workdir: Path) -> Any:
    files = {f.name: f.read_text() for f in (workdir / "status").iterdir() if not f.name.startswith(".")}
    return layout.container_records(files)["c"]


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_check_slower_than_its_timeout_fails() -> None:
    probe = {"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 1, "periodSeconds": 1}
    with job(pod({"command": ["sh", "-c", WAIT_FOR_A_NOTE], "readinessProbe": probe})) as (process, workdir):
        assert process.wait(60) == 0
        [note] = record(workdir).notes
    assert (note.type, note.reason, note.message) == ("Warning", "Unhealthy",
                                                      "Readiness probe failed: timed out after 1s")


def test_a_failed_startup_probe_kills_the_container_and_never_restarts_it_under_never() -> None:
    probe = {"exec": {"command": ["sh", "-c", "echo not yet; exit 1"]}, "periodSeconds": 1, "failureThreshold": 2}
    container = {"command": ["sh", "-c", "while :; do sleep 0.1; done"], "startupProbe": probe,
                 "readinessProbe": {"exec": {"command": ["true"]}}}
    with job(pod(container, terminationGracePeriodSeconds=5)) as (process, workdir):
        process.wait(60)
        done = record(workdir)
    assert done.exit_code == 143 and done.restarts == 0
    assert (done.startup, done.ready) == (False, False)  # never started, so never ready
    assert [(n.reason, n.message) for n in done.notes] == [
        ("Unhealthy", "Startup probe failed: not yet"), ("Unhealthy", "Startup probe failed: not yet"),
        ("Killing", "Container c failed startup probe")]


def test_pre_stop_gets_at_most_the_grace_period_before_sigterm() -> None:
    hook = {"preStop": {"exec": {"command": ["sh", "-c", "touch hook-began; sleep 30; touch hook-ended"]}}}
    container = {"command": ["sh", "-c", "trap 'touch got-term; exit 0' TERM; while :; do sleep 0.1; done"],
                 "lifecycle": hook}
    with job(pod(container, terminationGracePeriodSeconds=2)) as (process, workdir):
        wait_for(workdir / "status" / "c.started")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, process.stderr.read() if process.stderr else ""
        notes = [(n.reason, n.message) for n in record(workdir).notes]
        assert (workdir / "hook-began").exists() and (workdir / "got-term").exists()
        assert not (workdir / "hook-ended").exists()  # cut off when the grace period was spent
    assert notes == [("FailedPreStopHook", 'Exec lifecycle hook for Container "c" failed - error: timed out after '
                                          '2s, message: ""')]
