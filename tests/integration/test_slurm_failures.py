"""SLURM's own failures under running pods, in both modes, on whichever release the session runs (22.05, or 24.11
with SLURMLINK_TEST_SLURM=24.11): slurmctld killed with -9 and started again from its saved state, slurmd killed
while jobs run, munged stopped; and the job states an administrator makes (held, requeued).

While SLURM cannot be asked the API says so (/healthz 503 naming SLURM's error) and no pod turns Failed; afterwards
every pod ends as its job really did. These change the session's cluster: each test puts it back as it found it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from slurmlink.devcluster import DevCluster
from tests.harness.pods import Client, exit_codes, make_pod, terminated
from tests.harness.waiting import wait_until


@pytest.fixture(scope="module", params=["mode2", "mode1"])
def stack(request: pytest.FixtureRequest) -> tuple[Client, str, str]:
    """A client of `slurmlink api`, the URL of that API (for /healthz) and the mode."""
    if request.param == "mode2":
        api = request.getfixturevalue("api")
        return Client(api.url), api.url, "mode2"
    mode1 = request.getfixturevalue("mode1")
    return mode1.client(), mode1.api.url, "mode1"


@pytest.fixture()
def cluster(slurm_cluster: DevCluster) -> Iterator[DevCluster]:
    """The session's cluster, every daemon running and the node usable again after the test."""
    yield slurm_cluster
    for daemon in ("munged", "slurmctld", "slurmd"):
        slurm_cluster.start(daemon)
    slurm_cluster.resume_node()
    slurm_cluster.up()


def sh(script: str, name: str = "main") -> dict[str, object]:
    return {"name": name, "command": ["sh", "-c", script]}


def scontrol(cluster: DevCluster, *args: str) -> str:
    return subprocess.run(["scontrol", *args], env={**os.environ, **cluster.env}, capture_output=True, text=True,
                          check=True, timeout=30).stdout


def health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/healthz", timeout=10)


def unhealthy_saying(url: str, *words: str) -> str:
    """/healthz answers 503 with SLURM's error (one of `words`, if any are given)."""
    response = health(url)
    error = str(response.json().get("last_error", ""))
    return error if response.status_code == 503 and error and (
        not words or any(w in error.lower() for w in words)) else ""


class PhaseWatch:
    """Every phase a pod was seen in, so that a test can say it was never Failed on the way."""

    def __init__(self, client: Client, pods: list[dict[str, Any]]) -> None:
        self.client, self.pods = client, pods
        self.seen: dict[str, set[str]] = {p["metadata"]["uid"]: set() for p in pods}

    def look(self) -> None:
        for pod in self.pods:
            self.seen[pod["metadata"]["uid"]].add(self.client.phase(pod).phase)

    def until(self, check: Any, timeout: float, what: str) -> Any:
        def watched() -> Any:
            self.look()
            return check()
        try:
            return wait_until(watched, timeout, what, interval=0.3)
        except AssertionError as timed_out:
            now = {p["metadata"]["name"]: self.client.phase(p) for p in self.pods}
            raise AssertionError(f"{timed_out}; phases seen {self.seen}, now {now}") from None

    def phases(self, pod: dict[str, Any]) -> set[str]:
        return self.seen[pod["metadata"]["uid"]]


def saved_after(cluster: DevCluster, moment: float) -> bool:
    """slurmctld wrote its job state after `moment`."""
    state = cluster.state_dir / "ctld" / "job_state"
    return state.exists() and state.stat().st_mtime > moment


def save_job_state_now(cluster: DevCluster) -> str:
    """Make slurmctld write its job state as it is now and wait until it has; returns the id of the held job
    that made it (cancel it afterwards). A save from before a job started brings that job back PENDING after a
    kill -9: SLURM then launches it a second time, the node refuses (it already ran), and SLURM holds it
    ("launch failed requeued held"). That happened once in a CI run, where the job started late under load."""
    moment = time.time()
    held = subprocess.run(["sbatch", "--parsable", "--hold", "--job-name=state-save", "--output=/dev/null",
                           "--wrap=true"], env={**os.environ, **cluster.env}, capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()
    wait_until(lambda: saved_after(cluster, moment), 30, "slurmctld to save its job state")
    return held


def test_slurmctld_killed_and_restarted_from_its_state(stack: tuple[Client, str, str], cluster: DevCluster) -> None:
    client, url, mode = stack
    running = make_pod([sh("echo up; sleep 10; echo bye")])
    # Every CPU of the node: pending until the running pod's job has ended.
    pending = make_pod([{**sh("echo late"), "resources": {"requests": {"cpu": str(cluster.cpus)}}}])
    jobs = {p["metadata"]["uid"]: client.submit(p) for p in (running, pending)}
    client.wait_phase(running, ("Running",))
    assert client.phase(pending).phase == "Pending"
    save_trigger = save_job_state_now(cluster)
    try:
        watch = PhaseWatch(client, [running, pending])

        cluster.kill("slurmctld")
        # mode 2: squeue's "Unable to contact slurm controller"; mode 1: what slurmrestd says (v0.0.38: "Failed
        # while looking for jobs", 24.11: "Unable to contact slurm controller"), after its own 9 s wait per request.
        words = ("contact slurm controller",) if mode == "mode2" else ()
        watch.until(lambda: unhealthy_saying(url, *words), 90, "/healthz to say SLURM cannot be asked")
        watch.look()
        cluster.start("slurmctld")

        # The job ended while slurmctld was away; SLURM learns it from slurmstepd's retries of its completion
        # message or from the node's next registration, both slower on a loaded machine: this waits for the
        # outcome, not for a time.
        phase, status = watch.until(lambda: (p := client.phase(running)).phase in ("Succeeded", "Failed") and
                                    (p, client.status(running)), 240, "the running pod to end")
        assert (phase.phase, exit_codes(status)) == ("Succeeded", {"main": 0})
        assert client.logs(running, "main") == b"up\nbye\n"
        phase, status = watch.until(lambda: (p := client.phase(pending)).phase in ("Succeeded", "Failed") and
                                    (p, client.status(pending)), 90, "the pending pod to run and end")
        assert (phase.phase, exit_codes(status)) == ("Succeeded", {"main": 0})
        for pod in (running, pending):
            assert client.status(pod).jid == jobs[pod["metadata"]["uid"]]
        assert "Failed" not in watch.phases(running) | watch.phases(pending)
        wait_until(lambda: health(url).status_code == 200, 60, "/healthz to be well again")
    finally:
        subprocess.run(["scancel", save_trigger], env={**os.environ, **cluster.env}, check=False, timeout=30)


def test_slurmd_killed_the_job_fails_with_the_node_or_is_requeued(stack: tuple[Client, str, str],
                                                                   cluster: DevCluster) -> None:
    client, _, _ = stack
    # The site's policy decides: JobRequeue=1 (SLURM's default) requeues a batch job whose node failed; a job
    # that may not be requeued ends NODE_FAIL. slurmlink passes neither --requeue nor --no-requeue.
    lost = make_pod([sh("echo one; sleep 30")])
    again = make_pod([sh("echo run; sleep 8; echo done")])
    jobs = {p["metadata"]["name"]: client.submit(p) for p in (lost, again)}
    for pod in (lost, again):
        client.wait_phase(pod, ("Running",))
    scontrol(cluster, "update", f"jobid={jobs[lost['metadata']['name']]}", "requeue=0")
    watch = PhaseWatch(client, [again])

    cluster.kill("slurmd")
    # What slurmctld does itself once slurmd stays silent for SlurmdTimeout (60 s here), done now.
    scontrol(cluster, "update", f"nodename={cluster.node_name}", "state=down", "reason=slurmd killed by a test")
    phase, status = watch.until(lambda: (p := client.phase(lost)).phase == "Failed" and (p, client.status(lost)),
                                60, "the pod of the job that may not be requeued to fail")
    assert phase.reason == "NodeFailure", phase
    assert "NODE_FAIL" in terminated(status, "main")["message"]
    waiting = watch.until(lambda: (p := client.phase(again)).phase == "Pending" and p, 60,
                          "the requeued pod to be pending again")
    assert waiting.reason in ("Requeued", "BeginTime", "NodeDown", "Pending"), waiting

    cluster.start("slurmd")
    cluster.resume_node()
    # The requeued job runs again once its old credential expired (AuthInfo cred_expire: 20 s on the dev cluster).
    phase, status = watch.until(lambda: (p := client.phase(again)).phase in ("Succeeded", "Failed") and
                                (p, client.status(again)), 90, "the requeued pod to end")
    assert (phase.phase, exit_codes(status)) == ("Succeeded", {"main": 0}), (phase, status)
    assert client.logs(again, "main").endswith(b"run\ndone\n")
    assert "Failed" not in watch.phases(again)


def test_munge_stopped_and_started_again(stack: tuple[Client, str, str], cluster: DevCluster) -> None:
    client, url, mode = stack
    pod = make_pod([sh("echo up; sleep 6; echo bye")])
    client.submit(pod)
    client.wait_phase(pod, ("Running",))
    watch = PhaseWatch(client, [pod])

    cluster.kill("munged", signal.SIGTERM)
    try:
        if mode == "mode2":  # mode 2: every command needs munge; mode 1 reaches SLURM with JWTs
            watch.until(lambda: unhealthy_saying(url, "munge", "authentication"), 60,
                        "/healthz to name munge")
            refused = client.create(make_pod([sh("true")]))
            assert refused.status_code == 503 and "munge" in refused.text.lower(), refused.text
        else:
            watch.look()
    finally:
        cluster.start("munged")

    phase, status = watch.until(lambda: (p := client.phase(pod)).phase in ("Succeeded", "Failed") and
                                (p, client.status(pod)), 90, "the pod to end")
    assert (phase.phase, exit_codes(status)) == ("Succeeded", {"main": 0}), (phase, status)
    assert "Failed" not in watch.phases(pod)
    wait_until(lambda: health(url).status_code == 200, 60, "/healthz to be well again")


def test_held_pod_is_pending_with_slurms_reason(stack: tuple[Client, str, str], cluster: DevCluster) -> None:
    client, _, _ = stack
    pod = make_pod([sh("echo released")])
    # Pending until the node is back, so that the hold comes first (--hold is refused in a pod's flags, and
    # mode 1 takes no --begin).
    scontrol(cluster, "update", f"nodename={cluster.node_name}", "state=drain", "reason=held-job test")
    job_id = client.submit(pod)
    assert job_id.isdigit()
    scontrol(cluster, "hold", job_id)
    cluster.resume_node()
    held = wait_until(lambda: (p := client.phase(pod)).reason == "JobHeldAdmin" and p, 30, "the hold to show")
    assert held.phase == "Pending" and "JobHeldAdmin" in held.message
    assert client.phase(pod).reason == "JobHeldAdmin"  # the node is back, the hold holds
    scontrol(cluster, "release", job_id)
    phase, _ = client.finish(pod)
    assert phase.phase == "Succeeded"
    assert client.logs(pod, "main") == b"released\n"


def test_requeued_pod_goes_back_to_pending_then_runs_again(stack: tuple[Client, str, str], cluster: DevCluster) -> None:
    client, _, _ = stack
    pod = make_pod([sh("echo run $SLURM_RESTART_COUNT; sleep 5; echo done")])
    job_id = client.submit(pod)
    client.wait_phase(pod, ("Running",))
    watch = PhaseWatch(client, [pod])
    scontrol(cluster, "requeue", job_id)
    waiting = watch.until(lambda: (p := client.phase(pod)).phase == "Pending" and p, 30, "the pod to be pending")
    assert waiting.reason in ("Requeued", "BeginTime", "Pending"), waiting
    # It runs again once its old credential expired (AuthInfo cred_expire: 20 s on the dev cluster); a start
    # forced earlier would fail ("Job credential revoked").
    phase, status = watch.until(lambda: (p := client.phase(pod)).phase in ("Succeeded", "Failed") and
                                (p, client.status(pod)), 90, "the requeued pod to end")
    assert (phase.phase, exit_codes(status)) == ("Succeeded", {"main": 0}), (phase, status)
    assert client.logs(pod, "main").endswith(b"run 1\ndone\n")
    assert client.status(pod).jid == job_id
    assert "Failed" not in watch.phases(pod)
