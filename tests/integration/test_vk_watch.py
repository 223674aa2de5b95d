# ruff: noqa: F811 - the `chain` fixture is imported and then named as a parameter
"""The pod watch against dropped, cut and expired watches: no pod update is lost, and a pod deleted while
the vk could not watch is treated as deleted (its job cancelled)."""

from __future__ import annotations

import pytest

from tests.harness.pods import pod_manifest
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import Chain

pytestmark = pytest.mark.timeout(120)


def test_pods_created_across_dropped_and_expired_watches_all_run(chain: Chain) -> None:
    gone_before = chain.vk.metric("slurmlink_vk_watch_restarts_total", why="gone")
    chain.standin.expire_next_watches(2, "pods")  # the pod watch's, not the node watch's
    chain.standin.drop_watches()
    chain.apply(pod_manifest("w-after-expiry", "echo one"))
    chain.standin.drop_watches(abrupt=True)
    chain.apply(pod_manifest("w-after-cut", "echo two"))
    chain.standin.compact()
    chain.standin.drop_watches()
    chain.apply(pod_manifest("w-after-compaction", "echo three"))
    for name in ("w-after-expiry", "w-after-cut", "w-after-compaction"):
        assert chain.wait_phase(name, ("Succeeded", "Failed"), timeout=40)["status"]["phase"] == "Succeeded"
    assert chain.vk.metric("slurmlink_vk_watch_restarts_total", why="gone") >= gone_before + 2


def test_pod_deleted_while_the_watch_was_down_is_cancelled(chain: Chain) -> None:
    chain.apply(pod_manifest("w-vanishing", "sleep 300"))
    pod = chain.wait_phase("w-vanishing", ("Running",), timeout=30)
    uid = pod["metadata"]["uid"]
    wait_until(lambda: [j for j in chain.jobs(uid) if j[1] == "RUNNING"], 20, "the job to run")
    # Every watch now answers 410 (the vk relists again and again), and the pod goes at once (grace 0):
    # no DELETED event reaches the vk; only the relist shows the pod is missing.
    chain.standin.expire_next_watches(1000, "pods")
    chain.standin.drop_watches()
    try:
        chain.kubectl("delete", "pod", "w-vanishing", "--grace-period=0", "--force", "--wait=false")
        wait_until(lambda: all(state != "RUNNING" for _id, state, _user in chain.jobs(uid)), 30,
                   "the vanished pod's job to be cancelled")
    finally:
        chain.standin.expire_next_watches(0)
    chain.apply(pod_manifest("w-after", "echo back"))
    assert chain.wait_phase("w-after", ("Succeeded", "Failed"), timeout=40)["status"]["phase"] == "Succeeded"
