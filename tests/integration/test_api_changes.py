"""The change feed (GET /slurmlink/v1/changes) of a real `slurmlink api` in front of the real SLURM (issue 13).

- A long poll begun while a pod's job waits in SLURM's queue returns with the pod Running once its container
  starts, and then with it Succeeded: each status once, in order. The API polls SLURM only every 300 s here, so
  what it told came from the job's own files (inotify, or the `stat` fallback) with no `squeue` in between.
- After a kill -9 and a restart of the API, a cursor of the earlier process is answered with a reset and a
  snapshot of every pod.
Timing is not asserted here: the lag from the job's start to the answer is printed (the benchmarks measure it).
"""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.translate.status import pod_phase
from slurmlink.wire.changes import Changes
from slurmlink.wire.names import CHANGES_ROUTE
from tests.harness.feed import changes
from tests.harness.pods import GATE_VOLUME, Client, gated_container, make_pod, open_gate
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, api_config
from tests.harness.waiting import wait_until

QUIET_POLLS = 300.0  # no SLURM poll during a test but the first one


def squeue_runs(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    match = re.search(r'^slurmlink_slurm_commands_total\{command="squeue"\} ([0-9.e+]+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def start_api(cluster: DevCluster, workdir: Path, **overrides: Any) -> ApiProcess:
    process = ApiProcess(api_config(cluster, free_port(), **overrides), workdir)
    process.start()
    return process


@pytest.fixture(params=["inotify", "stat"])
def quiet_api(request: pytest.FixtureRequest, slurm_cluster: DevCluster, tmp_path: Path) -> Iterator[ApiProcess]:
    process = start_api(slurm_cluster, tmp_path, poll_interval=QUIET_POLLS, poll_interval_fast=QUIET_POLLS,
                        watch_files=request.param, watch_stat_interval=0.25)
    yield process
    process.stop()


def phases_until(url: str, uid: str, cursor: str, last: str, deadline: float) -> tuple[list[str], str]:
    """The phases the feed tells for pod `uid`, one long poll after another, until `last`."""
    phases: list[str] = []
    while not phases or phases[-1] != last:
        assert time.monotonic() < deadline, f"the feed told {phases} and not yet {last}"
        answer = changes(url, cursor, 20)
        assert not answer.reset
        assert [p.uid for p in answer.pods].count(uid) <= 1  # once per answer, however often it changed
        phases += [pod_phase(p.containers, p.init_containers).phase for p in answer.pods if p.uid == uid]
        cursor = answer.cursor
    return phases, cursor


def test_a_long_poll_tells_the_start_and_the_end_from_the_jobs_files(quiet_api: ApiProcess) -> None:
    url = quiet_api.url
    client = Client(url)
    pod = make_pod([gated_container()], volumes=[GATE_VOLUME])  # runs until the test has seen it Running
    pod["metadata"]["annotations"] = {"slurm-job.vk.io/flags": "--begin=now+3"}  # queued a while first
    uid = pod["metadata"]["uid"]
    snapshot = changes(url, None, 0)
    assert snapshot.reset
    job_id = client.submit(pod)
    polls_before = squeue_runs(url)
    answer = changes(url, snapshot.cursor, 20)  # the create itself: the pod Pending
    [told] = [p for p in answer.pods if p.uid == uid]
    assert told.jid == job_id and pod_phase(told.containers, told.init_containers).phase == "Pending"

    phases, cursor = phases_until(url, uid, answer.cursor, "Running", time.monotonic() + 60)
    running_at = time.time()
    assert phases[-1] == "Running" and set(phases[:-1]) <= {"Pending"}
    open_gate(quiet_api.config["job_root"], "default", uid)
    later, cursor = phases_until(url, uid, cursor, "Succeeded", time.monotonic() + 60)
    assert set(later[:-1]) <= {"Running"} and later[-1] == "Succeeded"
    assert squeue_runs(url) == polls_before  # all of it from the job's files, no SLURM query

    started = client.status(pod).containers[0]["state"]["terminated"]["startedAt"]
    print(f"container started {started}; the long poll told Running at "
          f"{time.strftime('%H:%M:%S', time.gmtime(running_at))}.{int(running_at % 1 * 1000):03d}")
    # Nothing more to tell: a long poll with a short wait times out with the same cursor.
    assert changes(url, cursor, 0.5) == Changes(cursor=cursor, reset=False, pods=[], removed=[])


def test_a_restarted_api_answers_an_earlier_cursor_with_a_reset(slurm_cluster: DevCluster, tmp_path: Path) -> None:
    api = start_api(slurm_cluster, tmp_path)
    try:
        client = Client(api.url)
        pod = make_pod([{"name": "main", "command": ["true"]}])
        client.submit(pod)
        client.finish(pod)
        before = changes(api.url, None, 0)
        assert pod["metadata"]["uid"] in [p.uid for p in before.pods]

        api.kill()
        api.start()
        after = changes(api.url, before.cursor, 20)
        assert after.reset and after.cursor.split(":")[0] != before.cursor.split(":")[0]
        [told] = [p for p in after.pods if p.uid == pod["metadata"]["uid"]]
        assert pod_phase(told.containers, told.init_containers).phase == "Succeeded"
        # the new cursor is good: nothing since
        assert not changes(api.url, after.cursor, 0).reset
    finally:
        api.stop()


def test_stopping_the_api_ends_its_long_polls_with_an_answer(slurm_cluster: DevCluster, tmp_path: Path) -> None:
    """uvicorn waits for the requests in progress before it exits: a long poll must not hold a stop for a minute."""
    api = start_api(slurm_cluster, tmp_path)
    try:
        cursor = changes(api.url, None, 0).cursor
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(changes, api.url, cursor, 60)
            wait_until(lambda: _long_polls(api.url) >= 1, 30, "the long poll to reach the API")
            api.stop()
            answer = waiting.result(timeout=90)
        assert answer == Changes(cursor=cursor, reset=False, pods=[], removed=[])
    finally:
        api.stop()


def _long_polls(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    match = re.search(r"^slurmlink_api_long_polls ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_malformed_queries_are_refused(slurm_cluster: DevCluster, tmp_path: Path) -> None:
    api = start_api(slurm_cluster, tmp_path)
    try:
        for params in ({"since": "nonsense"}, {"wait": "soon"}, {"wait": "-1"}):
            answer = httpx.get(api.url + CHANGES_ROUTE, params=params, timeout=10)
            assert answer.status_code == 400, (params, answer.text)
    finally:
        api.stop()
