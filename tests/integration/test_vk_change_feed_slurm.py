# ruff: noqa: F811 - fixtures imported and then named as parameters
"""The change feed through the real chain: the Kubernetes stand-in → `slurmlink vk` → `slurmlink api` (mode 2)
→ the test SLURM, with the vk's status round set to 10 minutes, so only the feed can explain what Kubernetes
shows. Skipped where the API has no feed yet (it answers 404)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.wire import names
from tests.harness.pod_history import PodHistory, View
from tests.harness.pods import pod_manifest
from tests.harness.services import ApiProcess
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import open_chain, wait_node_ready

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]
NEVER = 600.0
PHASES = ("Pending", "Running", "Succeeded")


def _in_order(views: list[View]) -> bool:
    """Never a step back, nothing twice: each view once, phases only forward."""
    ranks = [PHASES.index(phase) for phase, _state, _ready in views]
    return len(set(views)) == len(views) and ranks == sorted(ranks)


def test_a_pod_s_life_and_deletion_reach_kubernetes_through_the_feed(slurm_cluster: DevCluster, api: ApiProcess,
                                                                   tmp_path: Path) -> None:
    if api.get(f"{names.CHANGES_ROUTE}?wait=0").status_code in (404, 405):
        pytest.skip("this API has no change feed")
    with open_chain(slurm_cluster, api, tmp_path, status_interval=NEVER) as chain, \
            PodHistory(chain.standin) as history:
        wait_node_ready(chain)
        chain.apply(pod_manifest("feed-life", "sleep 2; echo done"), pod_manifest("feed-delete", "sleep 300"))
        chain.wait_phase("feed-life", ("Succeeded",), 60)
        views = history.of("feed-life")
        assert views[-1] == ("Succeeded", "terminated", "False") and _in_order(views), views
        assert ("Running", "running", "True") in views  # Running and Ready were told, not skipped
        shown = chain.pod("feed-life")["status"]["containerStatuses"][0]["state"]["terminated"]  # type: ignore[index]
        assert shown["startedAt"] and shown["finishedAt"] and shown["exitCode"] == 0

        chain.wait_phase("feed-delete", ("Running",), 60)
        uid = chain.pod("feed-delete")["metadata"]["uid"]  # type: ignore[index]
        chain.kubectl("delete", "pod", "feed-delete", "--wait=false")
        chain.wait_gone("feed-delete", 60)  # cancelled, ended in SLURM, told by the feed, then released
        assert all(state != "RUNNING" for _id, state, _user in chain.jobs(uid))
        assert chain.vk.metric("slurmlink_vk_api_calls_total", route="/status") == 0  # no round was asked
        wait_until(lambda: chain.vk.metric("slurmlink_vk_api_calls_total", route=names.CHANGES_ROUTE,
                                           outcome="ok") > 0, 5, "the feed's answers in the vk's metrics")
