# ruff: noqa: F811 - fixtures imported and then named as parameters
"""The change feed through the real chain: the Kubernetes stand-in → `slurmlink vk` → `slurmlink api` (mode 2)
→ the test SLURM, with the vk's status round set to 10 minutes, so only the feed can explain what Kubernetes
shows. Skipped where the API has no feed yet (it answers 404)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.wire import names
from tests.harness.pod_history import PodHistory, View
from tests.harness.pods import GATE_VOLUME, gated_container, open_gate, pod_manifest
from tests.harness.services import ApiProcess
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import Chain, open_chain, wait_node_ready

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]
NEVER = 600.0
PHASES = ("Pending", "Running", "Succeeded")
RUNNING: View = ("Running", "running", "True")
SUCCEEDED: View = ("Succeeded", "terminated", "False")


def _in_order(views: list[View]) -> bool:
    """Never a step back, nothing twice: each view once, phases only forward."""
    ranks = [PHASES.index(phase) for phase, _state, _ready in views]
    return len(set(views)) == len(views) and ranks == sorted(ranks)


def _gated(name: str) -> dict[str, Any]:
    return pod_manifest(name, "", containers=[gated_container()], volumes=[GATE_VOLUME])


def _open_gate(chain: Chain, uid: str) -> None:
    open_gate(chain.cluster.job_root, "default", uid)


def _shows(history: PodHistory, name: str, view: View) -> None:
    """Wait until the watch has seen the pod show `view` last (the stand-in has it a moment before)."""
    wait_until(lambda: history.of(name)[-1:] == [view], 60, f"{name} to show {view}")


def _skip_without_feed(api: ApiProcess) -> None:
    if api.get(f"{names.CHANGES_ROUTE}?wait=0").status_code in (404, 405):
        pytest.skip("this API has no change feed")


def _events(chain: Chain, name: str, reason: str) -> int:
    with chain.standin.client() as client:
        items = client.get("/api/v1/namespaces/default/events").json()["items"]
    return sum(1 for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason)


def test_a_pod_s_life_and_deletion_reach_kubernetes_through_the_feed(slurm_cluster: DevCluster, api: ApiProcess,
                                                                   tmp_path: Path) -> None:
    _skip_without_feed(api)
    with open_chain(slurm_cluster, api, tmp_path, status_interval=NEVER) as chain, \
            PodHistory(chain.standin) as history:
        wait_node_ready(chain)
        chain.apply(_gated("feed-life"), pod_manifest("feed-delete", "sleep 300"))
        _shows(history, "feed-life", RUNNING)
        _open_gate(chain, chain.pod("feed-life")["metadata"]["uid"])  # type: ignore[index]
        _shows(history, "feed-life", SUCCEEDED)
        views = history.of("feed-life")
        assert _in_order(views) and RUNNING in views, views  # Running and Ready were told, not skipped
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


def test_kill_9_of_the_vk_while_pods_start_and_end(slurm_cluster: DevCluster, api: ApiProcess,
                                                  tmp_path: Path) -> None:
    _skip_without_feed(api)
    names_ = ["feed-k1", "feed-k2", "feed-k3"]
    with open_chain(slurm_cluster, api, tmp_path, status_interval=NEVER) as chain, \
            PodHistory(chain.standin) as history:
        wait_node_ready(chain)
        chain.apply(*(_gated(name) for name in names_))
        chain.wait_phase(names_[0], ("Running",), 60)
        # told, event included (a kill between the patch and its event loses the event, as with a kubelet)
        wait_until(lambda: _events(chain, names_[0], "Started") == 1, 30, "the Started event")
        uids = [chain.pod(name)["metadata"]["uid"] for name in names_]  # type: ignore[index]
        chain.vk.kill()
        _open_gate(chain, uids[0])
        wait_until(lambda: any(state == "COMPLETED" for _id, state, _user in chain.jobs(uids[0])), 60,
                   "a job to end while no vk runs")
        chain.vk.start()
        for uid in uids[1:]:  # the others end after the restart, whether they started before it or after
            _open_gate(chain, uid)
        for name in names_:
            _shows(history, name, SUCCEEDED)
        for name, uid in zip(names_, uids, strict=True):
            views = history.of(name)
            assert _in_order(views), (name, views)
            # the event follows its patch: waited for. Started: at most once (a pod the vk patched Running
            # just before the kill may have lost its event, as with a kubelet); feed-k1's was seen before it.
            wait_until(lambda name=name: _events(chain, name, "Finished") == 1, 30, f"{name}'s Finished event")
            assert _events(chain, name, "Started") <= 1, name
            assert _events(chain, names_[0], "Started") == 1
            assert len(chain.jobs(uid)) == 1, name  # adopted, not submitted again
