# ruff: noqa: F811 - the `chain` fixture is imported and then named as a parameter
"""kill -9 of the vk with pods pending, running, finishing and being deleted: after the restart every pod
ends in its job's state, no pod is submitted twice, none is left Terminating."""

from __future__ import annotations

import time

import pytest

from tests.integration.conftest import wait_until
from tests.integration.vk_harness import Chain, chain, pod_manifest  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def _exit_code(pod: dict) -> int:
    return int(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"])


def test_kill_9_then_restart_adopts_every_pod_once(chain: Chain) -> None:
    chain.apply(pod_manifest("rs-running", "sleep 5; echo done"), pod_manifest("rs-finishing", "sleep 1"),
                pod_manifest("rs-fails", "sleep 1; exit 4"), pod_manifest("rs-deleted", "sleep 300"))
    for name in ("rs-running", "rs-finishing", "rs-fails", "rs-deleted"):
        chain.wait_phase(name, ("Running",), timeout=30)
    uids = {name: chain.pod(name)["metadata"]["uid"] for name in ("rs-running", "rs-finishing", "rs-fails",
                                                                   "rs-deleted")}
    chain.vk.kill()
    try:
        # While the vk is away: a new pod is bound (and waits), another is deleted (and stays Terminating).
        chain.apply(pod_manifest("rs-new", "echo new"))
        wait_until(lambda: (chain.pod("rs-new") or {}).get("spec", {}).get("nodeName"), 10, "rs-new to be bound")
        chain.kubectl("delete", "pod", "rs-deleted", "--wait=false")
        assert chain.pod("rs-deleted")["metadata"].get("deletionTimestamp")
        time.sleep(2.5)  # rs-finishing and rs-fails end while nobody watches
    finally:
        chain.vk.start()
    uids["rs-new"] = chain.pod("rs-new")["metadata"]["uid"]
    ended = {name: chain.wait_phase(name, ("Succeeded", "Failed"), timeout=40)
             for name in ("rs-running", "rs-finishing", "rs-fails", "rs-new")}
    assert {name: pod["status"]["phase"] for name, pod in ended.items()} == {
        "rs-running": "Succeeded", "rs-finishing": "Succeeded", "rs-fails": "Failed", "rs-new": "Succeeded"}
    assert _exit_code(ended["rs-fails"]) == 4
    chain.wait_gone("rs-deleted", timeout=40)
    wait_until(lambda: all(state != "RUNNING" for _id, state, _user in chain.jobs(uids["rs-deleted"])), 20,
               "the deleted pod's job to be cancelled")
    for name, uid in uids.items():
        assert len(chain.jobs(uid)) == 1, (name, chain.jobs(uid))
    assert chain.kubectl("logs", "rs-running").stdout == "done\n"
