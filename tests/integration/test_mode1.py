"""Mode 1 beyond the shared end-to-end pods (test_api_e2e.py runs those in both modes): accounts from tokens,
batched status with 304s, slurmrestd or the proxy going away, tokens that expire, and restarts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.identity.refresh import Credentials
from slurmlink.slurm.rest import RestBackend, RestConfig
from standins.checkin import DEFAULT_CLIENT
from tests.harness.cluster import TEST_REST_VERSION, TEST_SLURM
from tests.harness.pods import Client, exit_codes, make_pod, squeue_jobs, terminated
from tests.harness.services import ApiProcess
from tests.harness.waiting import wait_until
from tests.integration.mode1 import Mode1, TokenClient, token_secret, with_config

JOB_LIST = "GET /slurm/{v}/jobs/"
STATUSES = "GET /slurmlink/v1/statuses"
ONE_STATUS = "GET /slurmlink/v1/jobs/{id}/status"
WATCH = "GET /slurmlink/v1/status-changes"  # the file watch's long poll (its answers are followed by a read)


def sh(script: str, **extra: object) -> dict[str, object]:
    return {"name": "main", "command": ["sh", "-c", script], **extra}


def env_of(cluster: DevCluster) -> dict[str, str]:
    return {**os.environ, **cluster.env}


def jobs_named(cluster: DevCluster, pod: dict[str, object]) -> list[list[str]]:
    return squeue_jobs(env_of(cluster), f"slurmlink-{pod['metadata']['uid']}")  # type: ignore[index]


def proxy_requests(mode1: Mode1, route: str) -> dict[str, float]:
    """The proxy's request counts on one route, by HTTP status."""
    counts: dict[str, float] = {}
    for line in mode1.proxy.admin_get("/metrics").text.splitlines():
        if line.startswith("slurmlink_proxy_requests_total{") and f'route="{route}"' in line:
            status = re.search(r'status="(\d+)"', line)
            if status:
                counts[status.group(1)] = counts.get(status.group(1), 0) + float(line.rsplit(" ", 1)[1])
    return counts


def test_jobs_run_as_the_accounts_the_proxy_maps_the_tokens_to(mode1: Mode1, slurm_cluster: DevCluster) -> None:
    client = mode1.client()
    pods = {who: make_pod([sh("id -un")], namespace=ns) for who, ns in (("alice", "default"), ("bob", "team-b"))}
    job_ids = {who: client.submit(pod) for who, pod in pods.items()}
    for who, pod in pods.items():
        phase, _ = client.finish(pod)
        assert phase.phase == "Succeeded"
        assert client.logs(pod, "main") == f"{mode1.accounts[who]}\n".encode()
        # SLURM's own record of the finished job (this cluster keeps job completions in a text file).
        record = wait_until(lambda j=job_ids[who]: next(
            (line for line in slurm_cluster.jobcomp_path.read_text().splitlines() if f"JobId={j} " in line), None),
            30, f"the completion record of job {job_ids[who]}")
        assert f"UserId={mode1.accounts[who]}(" in record


def test_a_refused_token_fails_the_pod_with_the_proxys_reason(mode1: Mode1) -> None:
    client = TokenClient(mode1.api.url, {"default": mode1.checkin.mint(mode1.subjects["alice"], lifetime=-600)})
    pod = make_pod([sh("true")])
    assert client.submit(pod) == ""
    phase, _ = client.finish(pod, timeout=10)
    assert (phase.phase, phase.reason) == ("Failed", "TokenRefused")
    assert "expired" in phase.message.lower()


def test_status_is_one_list_call_per_interval_and_304_while_nothing_changes(mode1: Mode1) -> None:
    client = mode1.client()
    pods = [make_pod([sh("sleep 2")]) for _ in range(20)]
    for pod in pods:
        client.submit(pod)
    # Polls counted first: a poll that ends between the two readings then counts on both sides (read the other
    # way round, under load a whole poll could fit between them and count as calls without a poll).
    polls_before = mode1.api.metric("slurmlink_api_poll_seconds_count")
    before = {route: sum(proxy_requests(mode1, route).values())
              for route in (JOB_LIST, STATUSES, ONE_STATUS, WATCH)}
    for pod in pods:
        assert client.finish(pod)[0].phase == "Succeeded"
    if TEST_SLURM == "22.05":  # 24.11 says "unchanged" with a 200 and a warning (tests/unit/test_rest_listing.py)
        # The file watch tells the ends before SLURM has finished completing the jobs; once the queue is quiet,
        # a poll costs a 304.
        wait_until(lambda: proxy_requests(mode1, JOB_LIST).get("304", 0) > 0, 60, "a poll answered 304")
    calls = {route: sum(proxy_requests(mode1, route).values()) - before[route] for route in before}
    polls = mode1.api.metric("slurmlink_api_poll_seconds_count") - polls_before
    # One list call per poll (the service identity sees every job), and the container records of all the
    # running pods in one more request, whatever the number of pods; and one read (of files, not SLURM) at most
    # per answer of the file watch. The API also reads each new pod once when the watch begins to watch it
    # (restwatch.py). The watch's reads run one at a time: when the counting starts, one may be in flight and one
    # batch may wait (for pods submitted, or files told, before it), counted here without what caused them.
    assert 0 < calls[JOB_LIST] <= polls + 1, (calls, polls)
    assert 0 < calls[STATUSES] <= polls + 1 + calls[WATCH] + 2, (calls, polls)
    assert calls[ONE_STATUS] == 0


def test_slurmrestd_down_pods_keep_their_state_and_resume(mode1: Mode1, slurm_cluster: DevCluster) -> None:
    client = mode1.client()
    running = make_pod([sh("echo up; sleep 12")])
    client.submit(running)
    client.wait_phase(running, ("Running",))
    pid = slurm_cluster.status()["slurmrestd"]
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(lambda: slurm_cluster.status()["slurmrestd"] is None, 20, "slurmrestd to stop")
        answer = httpx.get(f"{mode1.proxy.url}/slurm/{TEST_REST_VERSION}/jobs", timeout=30,
                           headers={"Authorization": f"Bearer {mode1.checkin.mint(mode1.subjects['alice'])}"})
        assert answer.status_code in (502, 503)
        assert "slurmrestd" in answer.json()["reason"]
        late = make_pod([sh("echo late")])
        refused = client.create(late)
        assert refused.status_code == 503, refused.text  # the caller retries: nothing was submitted
        time.sleep(3)  # several failed polls
        assert client.phase(running).phase == "Running"  # not Failed, not Pending
    finally:
        slurm_cluster.up()
    wait_until(lambda: client.create(late).status_code == 200, 60, "the retried create to be taken")
    for pod in (running, late):
        phase, status = client.finish(pod)
        assert phase.phase == "Succeeded" and exit_codes(status) == {"main": 0}
        assert len(jobs_named(slurm_cluster, pod)) == 1


def test_proxy_restart_loses_no_retried_request(mode1: Mode1, slurm_cluster: DevCluster) -> None:
    client = mode1.client()
    running = make_pod([sh("echo up; sleep 8")])
    client.submit(running)
    client.wait_phase(running, ("Running",))
    mode1.proxy.kill()
    try:
        waiting = make_pod([sh("echo after")])
        assert client.create(waiting).status_code == 503
        time.sleep(2)
        assert client.phase(running).phase == "Running"
    finally:
        mode1.proxy.start()
    wait_until(lambda: client.create(waiting).status_code == 200, 60, "the retried create to be taken")
    for pod in (running, waiting):
        assert client.finish(pod)[0].phase == "Succeeded"
        assert len(jobs_named(slurm_cluster, pod)) == 1
    assert client.logs(waiting, "main") == b"after\n"


def test_after_the_token_expires_the_service_identity_tracks_and_cancels(mode1: Mode1,
                                                                          slurm_cluster: DevCluster) -> None:
    # 40 s of life: used for 10 s (the backend stops sending a token 30 s before it expires).
    client = TokenClient(mode1.api.url, {"default": mode1.checkin.mint(mode1.subjects["alice"], lifetime=40)})
    finishing = make_pod([sh("echo begun; sleep 14; echo done")])
    lasting = make_pod([sh("echo begun; exec sleep 300")], terminationGracePeriodSeconds=2)
    client.submit(finishing)
    client.submit(lasting)
    client.wait_phase(lasting, ("Running",))
    time.sleep(11)  # the token is no longer usable
    phase, status = client.finish(finishing, timeout=60)
    assert phase.phase == "Succeeded" and exit_codes(status) == {"main": 0}
    assert client.logs(finishing, "main") == b"begun\ndone\n"
    client.delete(lasting)  # ApiCallError unless the API answered 200
    phase, status = client.finish(lasting, timeout=60)
    assert phase.phase == "Failed" and terminated(status, "main")["reason"] == "Killed"
    [(_, state, user)] = jobs_named(slurm_cluster, lasting)
    assert user == mode1.accounts["alice"] and state in ("FAILED", "CANCELLED")


def test_a_refresh_token_keeps_a_pod_tracked_without_a_service_identity(mode1: Mode1, tmp_path: Path) -> None:
    api = with_config(mode1, tmp_path, service_token_file=None)
    api.start()
    try:
        sub = mode1.subjects["alice"]
        refreshes = mode1.checkin.count("token")
        secret = token_secret(mode1.checkin.mint(sub, lifetime=45),
                              refresh_token=mode1.checkin.issue_refresh_token(sub),
                              client_id=DEFAULT_CLIENT[0], client_secret=DEFAULT_CLIENT[1])
        client = Client(api.url)
        pod = make_pod([sh("sleep 3; echo fine")])
        pod["metadata"]["annotations"] = {"slurmlink.io/token-secret": secret["metadata"]["name"]}
        assert client.submit(pod, secrets=[secret]).isdigit()
        assert client.finish(pod)[0].phase == "Succeeded"
        assert client.logs(pod, "main") == b"fine\n"
        assert mode1.checkin.count("token") > refreshes
    finally:
        api.stop()


def test_killed_api_recovers_every_pod_without_a_second_job(mode1: Mode1, slurm_cluster: DevCluster,
                                                           tmp_path: Path) -> None:
    api = with_config(mode1, tmp_path)
    api.start()
    client = mode1.client()
    client.http = httpx.Client(base_url=api.url, timeout=60)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pods = [make_pod([sh(f"sleep {seconds}; exit {code}")]) for seconds, code in ((0, 0), (4, 3), (10, 0))]
    for pod in pods:
        pod["metadata"]["creationTimestamp"] = now
        client.submit(pod)
    api.kill()
    time.sleep(2)
    restarted = ApiProcess(api.config, tmp_path)
    restarted.start()
    try:
        for pod, code in zip(pods, (0, 3, 0), strict=True):
            # After a restart the caller resends what it has; the service identity already found the jobs.
            phase, status = client.finish(pod)
            assert exit_codes(status) == {"main": code}
            assert client.submit(pod).isdigit()  # a create resent after the restart is the same job
            assert len(jobs_named(slurm_cluster, pod)) == 1
    finally:
        restarted.stop()


def test_cancelling_what_slurm_no_longer_knows_is_not_an_error(mode1: Mode1) -> None:
    async def scenario() -> None:
        backend = RestBackend(RestConfig(url=mode1.proxy.url))
        try:
            user = await backend.user_for_token(Credentials(mode1.checkin.mint(mode1.subjects["alice"])))
            assert user == mode1.accounts["alice"]
            for only_state, signal_name in ((None, None), ("PENDING", None), ("RUNNING", "TERM")):
                await backend.cancel("99999999", user, signal_name, only_state)  # SLURM: invalid job id
        finally:
            await backend.close()

    asyncio.run(scenario())


def test_slurmrestd_restarted_with_other_versions_under_running_services(mode1: Mode1,
                                                                          slurm_cluster: DevCluster) -> None:
    """A SLURM upgrade or downgrade under a running proxy and API: 24.11's slurmrestd comes back serving
    only v0.0.40, then v0.0.40-v0.0.42 again. Pods from before end right, new pods run, the proxy says
    which version it now uses."""
    if slurm_cluster.slurm != "24.11" or os.environ.get("SLURMLINK_TEST_REST_VERSION"):
        pytest.skip("needs SLURM 24.11 (v0.0.40-v0.0.42) and api_version auto")
    client = mode1.client()
    before = make_pod([sh("echo before; sleep 6")])
    client.submit(before)
    client.wait_phase(before, ("Running",))
    try:
        slurm_cluster.restart_rest(["v0.0.40"])
        wait_until(lambda: mode1.proxy.admin_get("/healthz").json().get("api_version") == "v0.0.40", 60,
                   "the proxy to use v0.0.40")
        after = make_pod([sh("echo after")])
        wait_until(lambda: client.create(after).status_code == 200, 60, "a new pod to be taken")
        for pod in (before, after):
            phase, status = client.finish(pod)
            assert phase.phase == "Succeeded" and exit_codes(status) == {"main": 0}, (phase, status)
    finally:
        slurm_cluster.restart_rest()
    again = make_pod([sh("echo again")])
    wait_until(lambda: client.create(again).status_code == 200, 60, "a pod after the second restart")
    phase, status = client.finish(again)
    assert phase.phase == "Succeeded" and exit_codes(status) == {"main": 0}, (phase, status)
    assert len(jobs_named(slurm_cluster, again)) == 1
