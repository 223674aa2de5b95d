# ruff: noqa: F811 - the `chain` fixture is imported and then named as a parameter
"""kill -9 of the vk, and separately of the API, with pods pending in SLURM, running, finishing and being deleted:
after the restart every pod ends in its job's state, no pod is submitted twice, none is left Terminating."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slurmlink.devcluster import DevCluster
from tests.harness.pods import NODE, pod_manifest
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, api_config
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import Chain, open_chain

pytestmark = pytest.mark.timeout(120)


def _exit_code(pod: dict) -> int:
    return int(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"])


def _big(name: str, script: str, cluster: DevCluster) -> dict[str, Any]:
    """A pod asking for more than half the test node's CPUs: two of them never run at once in SLURM."""
    manifest = pod_manifest(name, script)
    manifest["spec"]["containers"][0]["resources"] = {"requests": {"cpu": str(cluster.cpus // 2 + 2)}}
    return manifest


def _wait_running(chain: Chain, names: list[str]) -> None:
    """All at once: a short pod checked last must not have ended already."""
    wait_until(lambda: all(chain.phase(name) == "Running" for name in names), 30, f"{names} to be Running")


def _start_blocked(chain: Chain, pending: str) -> dict[str, str]:
    """Once the blocker (applied beside the others) runs and holds the CPUs, `pending` is submitted and waits in
    SLURM (reason Resources) until the blocker ends."""
    chain.apply(_big(pending, "echo ran after the blocker", chain.cluster))

    def waits_for_resources() -> bool:
        statuses = ((chain.pod(pending) or {}).get("status") or {}).get("containerStatuses") or []
        return bool(statuses) and (statuses[0]["state"].get("waiting") or {}).get("reason") == "Resources"
    wait_until(waits_for_resources, 20, f"{pending} to wait in SLURM for resources")
    uid = chain.pod(pending)["metadata"]["uid"]
    assert [state for _id, state, _user in chain.jobs(uid)] == ["PENDING"]
    return {pending: uid}


def _wait_ended_in_slurm(chain: Chain, uids: list[str]) -> None:
    wait_until(lambda: all(state in ("COMPLETED", "FAILED") for uid in uids for _id, state, _user in chain.jobs(uid)),
               15, "the short jobs to end in SLURM")


def _assert_one_job_each(chain: Chain, uids: dict[str, str]) -> None:
    for name, uid in uids.items():
        assert len(chain.jobs(uid)) == 1, (name, chain.jobs(uid))


def _assert_nothing_terminating(chain: Chain, names: list[str]) -> None:
    stuck = [name for name in names if ((chain.pod(name) or {}).get("metadata") or {}).get("deletionTimestamp")]
    assert not stuck, stuck


def test_kill_9_then_restart_adopts_every_pod_once(chain: Chain) -> None:
    names = ["rs-running", "rs-finishing", "rs-fails", "rs-deleted", "rs-blocker"]
    chain.apply(pod_manifest("rs-running", "sleep 8; echo done"), pod_manifest("rs-finishing", "sleep 6"),
                pod_manifest("rs-fails", "sleep 6; exit 4"), pod_manifest("rs-deleted", "sleep 300"),
                _big("rs-blocker", "sleep 8; echo blocker", chain.cluster))
    _wait_running(chain, names)
    uids = {name: chain.pod(name)["metadata"]["uid"] for name in names}
    uids |= _start_blocked(chain, "rs-pending")
    assert chain.phase("rs-finishing") == chain.phase("rs-fails") == "Running"
    chain.vk.kill()
    try:
        # While the vk is away: a new pod is bound (and waits), another is deleted (and stays Terminating).
        chain.apply(pod_manifest("rs-new", "echo new"))
        wait_until(lambda: (chain.pod("rs-new") or {}).get("spec", {}).get("nodeName"), 10, "rs-new to be bound")
        chain.kubectl("delete", "pod", "rs-deleted", "--wait=false")
        assert chain.pod("rs-deleted")["metadata"].get("deletionTimestamp")
        _wait_ended_in_slurm(chain, [uids["rs-finishing"], uids["rs-fails"]])  # while nobody watches
    finally:
        chain.vk.start()
    uids["rs-new"] = chain.pod("rs-new")["metadata"]["uid"]
    ended = {name: chain.wait_phase(name, ("Succeeded", "Failed"), timeout=40)
             for name in ("rs-running", "rs-finishing", "rs-fails", "rs-new", "rs-blocker", "rs-pending")}
    assert {name: pod["status"]["phase"] for name, pod in ended.items()} == {
        "rs-running": "Succeeded", "rs-finishing": "Succeeded", "rs-fails": "Failed", "rs-new": "Succeeded",
        "rs-blocker": "Succeeded", "rs-pending": "Succeeded"}
    assert _exit_code(ended["rs-fails"]) == 4
    chain.wait_gone("rs-deleted", timeout=40)
    wait_until(lambda: all(state != "RUNNING" for _id, state, _user in chain.jobs(uids["rs-deleted"])), 20,
               "the deleted pod's job to be cancelled")
    _assert_one_job_each(chain, uids)
    _assert_nothing_terminating(chain, list(uids))
    assert chain.kubectl("logs", "rs-running").stdout == "done\n"
    assert chain.kubectl("logs", "rs-pending").stdout == "ran after the blocker\n"


@pytest.fixture()
def api_chain(slurm_cluster: DevCluster, tmp_path: Path) -> Iterator[Chain]:
    """A chain with an API of its own: killing it disturbs no other test."""
    (tmp_path / "api").mkdir()
    (tmp_path / "vk").mkdir()
    api = ApiProcess(api_config(slurm_cluster, free_port()), tmp_path / "api")
    api.start()
    try:
        with open_chain(slurm_cluster, api, tmp_path / "vk") as opened:
            yield opened
    finally:
        api.stop()


def test_api_kill_9_then_restart_ends_every_pod_once(api_chain: Chain) -> None:
    chain = api_chain
    chain.apply(pod_manifest("ak-done", "echo early"), pod_manifest("ak-running", "sleep 8; echo done"),
                pod_manifest("ak-finishing", "sleep 6; exit 5"), pod_manifest("ak-deleted", "sleep 300"),
                _big("ak-blocker", "sleep 8; echo blocker", chain.cluster))
    _wait_running(chain, ["ak-running", "ak-finishing", "ak-deleted", "ak-blocker"])
    chain.wait_phase("ak-done", ("Succeeded",), timeout=10)
    uids = {name: chain.pod(name)["metadata"]["uid"] for name in ("ak-done", "ak-running", "ak-finishing",
                                                                   "ak-deleted", "ak-blocker")}
    uids |= _start_blocked(chain, "ak-pending")
    assert chain.phase("ak-finishing") == "Running"
    chain.api.kill()
    try:
        # While the API is away: a new pod comes (its /create cannot get through), another is deleted (its job
        # cannot be cancelled yet, so it must stay Terminating), ak-finishing ends. The node turns NotReady, so
        # no scheduler binds to it now: ak-new names the node itself.
        chain.apply(pod_manifest("ak-new", "echo new", nodeName=NODE))
        chain.kubectl("delete", "pod", "ak-deleted", "--wait=false")
        _wait_ended_in_slurm(chain, [uids["ak-finishing"]])
        time.sleep(1)  # a few more failed /status and /delete calls
        deleting = chain.pod("ak-deleted")
        assert deleting is not None and deleting["metadata"].get("deletionTimestamp")  # Terminating, not confirmed
        assert [state for _id, state, _user in chain.jobs(uids["ak-deleted"])] == ["RUNNING"]
        assert chain.phase("ak-running") == "Running" and chain.phase("ak-blocker") == "Running"
        assert chain.phase("ak-pending") == "Pending" and chain.phase("ak-new") == "Pending"
    finally:
        chain.api.start()  # the same port
    uids["ak-new"] = chain.pod("ak-new")["metadata"]["uid"]
    ended = {name: chain.wait_phase(name, ("Succeeded", "Failed"), timeout=40)
             for name in ("ak-done", "ak-running", "ak-finishing", "ak-new", "ak-blocker", "ak-pending")}
    assert {name: (pod["status"]["phase"], _exit_code(pod)) for name, pod in ended.items()} == {
        "ak-done": ("Succeeded", 0), "ak-running": ("Succeeded", 0), "ak-finishing": ("Failed", 5),
        "ak-new": ("Succeeded", 0), "ak-blocker": ("Succeeded", 0), "ak-pending": ("Succeeded", 0)}
    chain.wait_gone("ak-deleted", timeout=40)
    # Cancelled only now, by SIGTERM to its script (exit 143: SLURM says FAILED) or scancel (CANCELLED).
    wait_until(lambda: [state for _id, state, _user in chain.jobs(uids["ak-deleted"])] in (["FAILED"], ["CANCELLED"]),
               20, "the deleted pod's job to be cancelled")
    events = chain.kubectl("get", "events", "--field-selector", "involvedObject.name=ak-deleted", "-o",
                           "jsonpath={.items[*].reason}").stdout.split()
    assert {"CancelFailed", "Killing"} <= set(events), events
    events = chain.kubectl("get", "events", "--field-selector", "involvedObject.name=ak-new", "-o",
                           "jsonpath={.items[*].reason}").stdout.split()
    assert {"SubmitRetrying", "Submitted"} <= set(events), events
    _assert_one_job_each(chain, uids)
    _assert_nothing_terminating(chain, list(uids))
    assert chain.kubectl("logs", "ak-running").stdout == "done\n"
    assert chain.kubectl("logs", "ak-pending").stdout == "ran after the blocker\n"
