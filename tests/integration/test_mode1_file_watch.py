"""Mode 1's file watch with the real parts (issue 13): `slurmlink api --backend rest` → `slurmlink proxy` → the test
SLURM's slurmrestd, each a process of its own; only Check-in is a stand-in.

- The API polls SLURM only every 300 s here (and not sooner after a create), so a pod's start and end can reach its
  change feed only through the proxy's file watch: the long poll of `/slurmlink/v1/status-changes` the API holds,
  then a read of the job's files (`/statuses`). No request reaches slurmrestd meanwhile (the proxy's own metrics).
- The route tells a user only of their own jobs: another user's token, naming the job, is told nothing of it; a
  forged token gets a 401.
- Killed (-9) and restarted while the API holds its long poll, the proxy answers the API's old cursor with a reset,
  and what the job wrote while the proxy was away still reaches the feed, again without a SLURM query.
- With `files.watch: off` the route answers 404 with the reason, and the API keeps to its SLURM polls.
Timing is not asserted (the benchmarks measure it): only what was told, and where it came from.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.wire.names import STATUS_CHANGES_ROUTE
from slurmlink.wire.statuschanges import StatusChanges
from standins.checkin import new_key
from tests.harness.feed import changes, phases_until
from tests.harness.pods import make_pod
from tests.harness.waiting import wait_until
from tests.integration.mode1 import Mode1, start_mode1
from tests.integration.proxy_fixtures import bearer, job_state

QUIET_POLLS = 300.0  # no SLURM poll during a test but the API's first one
QUIET = {"poll_interval": QUIET_POLLS, "poll_interval_fast": QUIET_POLLS}


@pytest.fixture(scope="module", params=["inotify", "stat"])
def quiet(request: pytest.FixtureRequest, slurm_cluster: DevCluster,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mode1]:
    """The mode-1 stack whose API does not poll SLURM during the tests; the proxy watches with `request.param`."""
    stack = start_mode1(slurm_cluster, tmp_path_factory.mktemp("mode1-watch"), api=QUIET,
                        files={"watch": request.param, "watch_stat_interval": 0.25})
    yield stack
    stack.stop()


def slurm_requests(stack: Mode1) -> float:
    """Requests the proxy sent on to slurmrestd (or refused on the way): every route of /slurm and /slurmdb."""
    total = 0.0
    for line in stack.proxy.admin_get("/metrics").text.splitlines():
        match = re.match(r'slurmlink_proxy_requests_total\{(.*)\} ([0-9.e+]+)$', line)
        if match and re.search(r'route="[A-Z|]+ /slurm(db)?/', match.group(1)):
            total += float(match.group(2))
    return total


def watch_calls(stack: Mode1, status: str = "200") -> float:
    return stack.proxy.metric("slurmlink_proxy_requests_total", route=f"GET {STATUS_CHANGES_ROUTE}", status=status)


def status_changes(stack: Mode1, token: str, jobs: list[str], since: str | None = None,
                   wait: float = 0) -> httpx.Response:
    params: dict[str, Any] = {"jobs": ",".join(jobs), "wait": wait}
    if since:
        params["since"] = since
    return httpx.get(stack.proxy.url + STATUS_CHANGES_ROUTE, params=params, headers=bearer(token), timeout=wait + 30)


def sleeping_pod(seconds: int) -> dict[str, Any]:
    # (slurmrestd cannot hold a job back with --begin: it runs as soon as SLURM starts it)
    return make_pod([{"name": "main", "command": ["sh", "-c", f"sleep {seconds}"]}])


def test_a_pods_start_and_end_reach_the_feed_through_the_proxys_file_watch(quiet: Mode1, slurm_cluster: DevCluster
                                                                          ) -> None:
    url = quiet.api.url
    client = quiet.client()
    pod = sleeping_pod(2)
    uid = pod["metadata"]["uid"]
    cursor = changes(url, None, 0).cursor
    job_id = client.submit(pod)
    wait_until(lambda: watch_calls(quiet) >= 1, 60, "the API to hold the proxy's long poll")
    before = slurm_requests(quiet)
    answer = changes(url, cursor, 20)  # the create itself: Pending
    assert [p.uid for p in answer.pods] == [uid]

    try:
        phases, cursor = phases_until(url, uid, answer.cursor, "Running", time.monotonic() + 90)
        assert phases[-1] == "Running" and set(phases[:-1]) <= {"Pending"}
        later, cursor = phases_until(url, uid, cursor, "Succeeded", time.monotonic() + 90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; SLURM has job {job_id} {job_state(slurm_cluster, job_id)}; the API answers "
                             f"{client.status(pod).to_wire()}") from exc
    assert set(later[:-1]) <= {"Running"} and later[-1] == "Succeeded"
    assert slurm_requests(quiet) == before  # all of it from the job's files: slurmrestd was not asked


def test_the_route_tells_a_user_only_of_their_own_jobs(quiet: Mode1) -> None:
    alice = quiet.checkin.mint(quiet.subjects["alice"])
    bob = quiet.checkin.mint(quiet.subjects["bob"])
    before = StatusChanges.model_validate(status_changes(quiet, alice, []).json())
    assert before.reset
    client = quiet.client()
    pod = make_pod([{"name": "main", "command": ["true"]}])
    job_id = client.submit(pod)
    client.finish(pod)

    theirs = StatusChanges.model_validate(status_changes(quiet, alice, [job_id], before.cursor).json())
    assert job_id in theirs.jobs and not theirs.reset  # (with her earlier jobs that wrote since)
    answer = status_changes(quiet, bob, [job_id], before.cursor, wait=1)  # told nothing of it, though it changed
    assert answer.status_code == 200
    others = StatusChanges.model_validate(answer.json())
    assert others.jobs == [] and "another user" in others.refused[job_id]
    forged = quiet.checkin.sign(quiet.checkin.access_claims(quiet.subjects["alice"]), key=new_key())
    refused = status_changes(quiet, forged, [job_id], before.cursor)
    assert refused.status_code == 401 and "jobs" not in refused.json()


def test_a_proxy_killed_and_restarted_under_the_long_poll_loses_nothing(quiet: Mode1, slurm_cluster: DevCluster
                                                                        ) -> None:
    url = quiet.api.url
    client = quiet.client()
    pod = sleeping_pod(4)
    uid = pod["metadata"]["uid"]
    cursor = changes(url, None, 0).cursor
    job_id = client.submit(pod)
    _, cursor = phases_until(url, uid, cursor, "Running", time.monotonic() + 90)

    quiet.proxy.kill()  # the API's long poll is cut; the job goes on and writes its end meanwhile
    wait_until(lambda: job_state(slurm_cluster, job_id)[0] in ("COMPLETED", ""), 90, f"job {job_id} to end")
    quiet.proxy.start()  # the same port and state (its ledger); its metrics begin at 0
    later, _ = phases_until(url, uid, cursor, "Succeeded", time.monotonic() + 120)
    assert set(later[:-1]) <= {"Running"}
    assert slurm_requests(quiet) == 0  # the restarted proxy was asked for files only
    assert watch_calls(quiet) >= 1


@pytest.fixture(scope="module")
def unwatched(slurm_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mode1]:
    """The mode-1 stack with the proxy's file watch off; the API polls SLURM as shipped (every 2 s)."""
    stack = start_mode1(slurm_cluster, tmp_path_factory.mktemp("mode1-unwatched"), api={"poll_interval": 2.0},
                        files={"watch": "off"})
    yield stack
    stack.stop()


def test_with_the_watch_off_the_route_says_so_and_the_api_keeps_to_its_polls(unwatched: Mode1) -> None:
    alice = unwatched.checkin.mint(unwatched.subjects["alice"])
    answer = status_changes(unwatched, alice, [])
    assert answer.status_code == 404 and "files.watch: off" in answer.json()["reason"]
    client = unwatched.client()
    pod = make_pod([{"name": "main", "command": ["true"]}])
    client.submit(pod)
    phase, _ = client.finish(pod)
    assert phase.phase == "Succeeded"
    wait_until(lambda: "file watch is not available" in unwatched.api.log_text(), 30,
               "the API to say it keeps to its polls")
