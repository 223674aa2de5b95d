"""The vk's change feed end to end: the Kubernetes stand-in → `slurmlink vk` (a process) → a fake API that
implements the feed's contract (tests/harness/feed_api.py; the test says when a job starts and ends). The vk's
periodic status round is set to 10 minutes, so only the feed can explain a status reaching Kubernetes; the
tests assert what a user watching the pod sees and in which order, never how fast."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from standins.kube import KubeStandin
from tests.harness.feed_api import FeedApi, running, serve_feed_api, terminated
from tests.harness.pod_history import PodHistory
from tests.harness.pods import NODE, pod_manifest
from tests.harness.services import VkProcess, node_kubeconfig, vk_config
from tests.harness.tcp_proxy import CuttableProxy, cuttable_proxy
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import KUBECTL

pytestmark = pytest.mark.timeout(120)
NEVER = 600.0  # the status round's interval: no round happens during a test
# What a user sees of a pod that the API reports waiting, then running, then exited 0.
LIFE = [("Pending", "waiting", "False"), ("Running", "running", "True"), ("Succeeded", "terminated", "False")]


@dataclass
class Setup:
    standin: KubeStandin
    api: FeedApi
    vk: VkProcess
    history: PodHistory
    proxy: CuttableProxy
    workdir: Path

    def kubectl(self, *args: str, input: str | None = None) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.standin.kubeconfig),
               "KUBECACHEDIR": str(self.workdir / "kubecache")}
        subprocess.run([str(KUBECTL), *args], input=input, env=env, check=True, capture_output=True, text=True,
                       timeout=30)

    def apply(self, name: str) -> str:
        """The pod, applied; its uid once the API has it (the vk created it)."""
        self.kubectl("apply", "-f", "-", input=json.dumps(pod_manifest(name, "true")))
        uid = str(self.pod(name)["metadata"]["uid"])
        wait_until(lambda: uid in self.api.uids(), 20, f"the API to have {name}")
        return uid

    def pod(self, name: str) -> dict[str, Any]:
        return wait_until(lambda: self.standin.get("pods", name, "default"), 10, f"pod {name}")  # type: ignore[no-any-return]

    def shows(self, name: str, seen: tuple[str, str, str]) -> None:
        try:
            wait_until(lambda: self.history.of(name)[-1:] == [seen], 20, f"{name} to show {seen}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nhistory {self.history.of(name)}; raw {self.history.views.get(name)}\n"
                                 f"pod {json.dumps(self.standin.get('pods', name, 'default'))[:3000]}\n"
                                 f"vk log:\n{self.vk.log_text()[-3000:]}") from None

    def told_once(self, name: str, *reasons: str) -> None:
        """Each event once (an event follows its status patch: waited for, not expected at once)."""
        wait_until(lambda: all(self.events(name, r) >= 1 for r in reasons), 20, f"{name}'s events {reasons}")
        assert [self.events(name, r) for r in reasons] == [1] * len(reasons), name

    def events(self, name: str, reason: str) -> int:
        with self.standin.client() as client:
            items = client.get("/api/v1/namespaces/default/events").json()["items"]
        return sum(1 for e in items if e["involvedObject"]["name"] == name and e["reason"] == reason)


@contextlib.contextmanager
def _setup(tmp_path: Path) -> Iterator[Setup]:
    with serve_feed_api() as api, cuttable_proxy(api.port) as proxy, \
            KubeStandin(tmp_path / "standin", bookmark_interval=1.0) as standin, PodHistory(standin) as history:
        kubeconfig = node_kubeconfig(standin, tmp_path / "node.kubeconfig", NODE)
        config = vk_config(standin, kubeconfig, proxy.url, status_interval=NEVER)
        config["api"]["changes_wait_seconds"] = 20
        vk = VkProcess(config, tmp_path, standin.kubelet_client_cert)
        vk.start()
        try:
            yield Setup(standin, api, vk, history, proxy, tmp_path)
        finally:
            vk.stop()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with _setup(tmp_path) as opened:
        yield opened


def test_feed_changes_reach_kubernetes_without_a_round(setup: Setup) -> None:
    uid = setup.apply("fd-life")
    pod = setup.api.pod(uid).pod
    setup.shows("fd-life", LIFE[0])
    setup.api.set_containers(uid, running(pod))
    setup.shows("fd-life", LIFE[1])
    shown = setup.pod("fd-life")["status"]
    assert {c["type"]: c["status"] for c in shown["conditions"]}["ContainersReady"] == "True"
    assert shown["containerStatuses"][0]["state"]["running"]["startedAt"] == "2030-01-01T00:00:01Z"
    setup.api.set_containers(uid, terminated(pod))
    setup.shows("fd-life", LIFE[2])
    assert setup.pod("fd-life")["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] == \
        "2030-01-01T00:00:02Z"
    assert setup.history.of("fd-life") == LIFE  # each once, in order
    assert setup.api.status_calls == 0  # no round was asked: the feed alone told
    setup.told_once("fd-life", "Started", "Finished")


def test_delete_cancels_at_once_and_releases_the_pod_when_the_job_is_gone(setup: Setup) -> None:
    uid = setup.apply("fd-delete")
    setup.api.set_containers(uid, running(setup.api.pod(uid).pod))
    setup.shows("fd-delete", LIFE[1])
    setup.kubectl("delete", "pod", "fd-delete", "--wait=false")
    wait_until(lambda: setup.api.state.deletes == [uid], 20, "the API's delete")  # the fake then ends the job
    wait_until(lambda: setup.standin.get("pods", "fd-delete", "default") is None, 20, "the pod to go away")
    assert setup.api.status_calls == 0


def test_a_long_poll_cut_mid_way_loses_no_transition(setup: Setup) -> None:
    uid = setup.apply("fd-cut")
    pod = setup.api.pod(uid).pod
    setup.shows("fd-cut", LIFE[0])
    for containers in (running(pod), terminated(pod)):
        wait_until(lambda: setup.proxy.open_connections() > 0, 20, "the vk's long poll")
        assert setup.proxy.cut(refuse=True) >= 1
        setup.api.set_containers(uid, containers)  # while the vk has no connection
        setup.proxy.resume()
    setup.shows("fd-cut", LIFE[2])
    assert setup.history.of("fd-cut") in (LIFE, [LIFE[0], LIFE[2]])  # never a step back, nothing twice
    assert "change feed" in setup.vk.log_text() and setup.api.status_calls == 0


def test_kill_9_of_the_vk_loses_no_transition(setup: Setup) -> None:
    uid = setup.apply("fd-kill")
    pod = setup.api.pod(uid).pod
    setup.shows("fd-kill", LIFE[0])
    setup.vk.kill()
    setup.api.set_containers(uid, running(pod))  # while no vk runs
    setup.vk.start()
    setup.shows("fd-kill", LIFE[1])
    setup.told_once("fd-kill", "Started")  # a kill between a patch and its event loses the event, as a kubelet's
    setup.vk.kill()
    setup.vk.start()
    setup.api.set_containers(uid, terminated(pod))  # after the restart: the feed tells it
    setup.shows("fd-kill", LIFE[2])
    assert setup.history.of("fd-kill") == LIFE
    setup.told_once("fd-kill", "Started", "Finished")
