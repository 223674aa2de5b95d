"""A pod's status told (by the change feed or a round) while the vk's previous patch of that pod is still on
its way is patched right after it, not lost.

Found by bench/vk_scale.py (1,000 pods, 2 cores under load): the worker cleared the pod's "changed" flag after
its patch returned, so an answer taken during the patch was never patched, and the rounds saw nothing new
after it. A pod whose end came so stayed Running in Kubernetes for good; one whose start came so was never
shown Running. The stand-in (standins/kube) adds latency to every request, as a busy apiserver would."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, cast

import pytest

from slurmlink.vk.config import KubeConfigSection, VkConfig
from slurmlink.vk.controller import PodController
from slurmlink.vk.events import EventRecorder
from slurmlink.vk.kube import make_client
from slurmlink.vk.state import PodState
from slurmlink.vk.statusround import StatusRounds
from slurmlink.wire.interlink import PodStatus
from standins.kube import KubeStandin
from tests.harness.feed_api import running, terminated
from tests.harness.services import node_kubeconfig
from tests.harness.waiting import wait_until_async

pytestmark = pytest.mark.timeout(60)
NODE = "vk-node"
LATENCY = 0.5  # seconds the stand-in takes to answer each request: the patch is on its way that long


@pytest.fixture
def standin() -> Iterator[KubeStandin]:
    with KubeStandin() as kube:
        yield kube


def test_an_answer_taken_during_a_patch_is_patched_after_it(standin: KubeStandin) -> None:
    pod = standin.create("pods", {"metadata": {"name": "p"}, "spec": {
        "nodeName": NODE, "restartPolicy": "Never", "containers": [{"name": "main", "image": "debian"}]}},
        "default")
    uid = pod["metadata"]["uid"]

    def status(containers: list[dict[str, Any]]) -> PodStatus:
        return PodStatus(name="p", uid=uid, namespace="default", jid="7", containers=containers)

    async def main() -> None:
        kube = make_client(KubeConfigSection(kubeconfig=str(node_kubeconfig(
            standin, standin.workdir / "node.kubeconfig", NODE))))
        config = VkConfig.model_validate({"node": {"name": NODE}})
        controller = PodController(config, kube, cast(Any, None), EventRecorder(kube, NODE))
        rounds = StatusRounds(config, cast(Any, None), controller)
        state = controller.pods[uid] = PodState.of(pod)
        state.submitted, state.send_full, state.job_id = True, False, "7"
        controller.adopted.set()
        worker = asyncio.create_task(controller.worker())
        try:
            standin.faults.latency = LATENCY
            rounds._take(state, status(running(pod)))  # the feed: the container started

            async def patching() -> bool:  # the worker took the pod: its Running patch is on its way
                return uid in controller.queue._active
            await wait_until_async(patching, 5, "the worker to patch the pod", interval=0.01)
            rounds._take(state, status(terminated(pod)))  # the feed again, before that patch returned

            async def phase_is_succeeded() -> bool:
                return (standin.get("pods", "p", "default") or {}).get("status", {}).get("phase") == "Succeeded"
            await wait_until_async(phase_is_succeeded, 10 * LATENCY + 5, "the pod to be patched Succeeded")
        finally:
            standin.faults.latency = 0.0
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await kube.close()

    asyncio.run(main())
