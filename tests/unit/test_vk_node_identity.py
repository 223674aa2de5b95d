"""The node's identity, pure parts: kubeletVersion from the cluster's, and what the node watch calls a loss."""

from __future__ import annotations

import pytest
import yaml

from slurmlink import __version__, examples
from slurmlink.vk import nodespec
from slurmlink.vk.lease import lease_body
from slurmlink.vk.nodewatch import NodeWatcher


@pytest.mark.parametrize(("git_version", "expected"), [
    ("v1.36.0", "v1.36.0"), ("v1.31.4+k3s1", "v1.31.4"), ("v1.36.0-slurmlink-standin", "v1.36.0"),
    ("v1.33.2-eks-1234", "v1.33.2"), (None, nodespec.FALLBACK_CLUSTER_VERSION), ("garbage", "v1.30.0")])
def test_kubelet_version_follows_the_cluster(git_version: str | None, expected: str) -> None:
    assert nodespec.kubelet_version(None, git_version) == f"{expected}+slurmlink.{__version__}"


def test_kubelet_version_configured_wins() -> None:
    assert nodespec.kubelet_version("v1.29.9-site", "v1.36.0") == "v1.29.9-site"


def test_lease_is_owned_by_the_current_node_only_when_known() -> None:
    owned = lease_body("n", "uid-2", 40, "2026-01-01T00:00:00.000000Z")
    assert owned["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "uid-2"}]
    assert lease_body("n", "", 40, "2026-01-01T00:00:00.000000Z")["metadata"]["ownerReferences"] == []


def _watcher(uid: str, lost: list[str]) -> NodeWatcher:
    return NodeWatcher(None, "n", 60, lambda: uid, lost.append)  # type: ignore[arg-type]


def test_node_watch_reports_our_node_deleted_or_replaced() -> None:
    lost: list[str] = []
    watcher = _watcher("mine", lost)
    watcher._judge("ADDED", "mine")
    watcher._judge("MODIFIED", "mine")
    assert lost == []
    watcher._judge("DELETED", "mine")
    watcher._judge("MODIFIED", "someone-elses")
    assert lost == ["node n was deleted", "node n now has uid someone-elses, not ours (mine)"]


def test_node_watch_ignores_events_while_unregistered() -> None:
    lost: list[str] = []
    watcher = _watcher("", lost)
    watcher._judge("DELETED", "old")
    watcher._judge("ADDED", "new")
    assert lost == []


def test_the_kubectl_example_targets_the_example_node() -> None:
    node = yaml.safe_load(examples.config_path("vk").read_text())["node"]["name"]
    pod = next(d for d in yaml.safe_load_all(examples.pod_path("kubectl-pod").read_text()) if d["kind"] == "Pod")
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/hostname": node}
    assert {"key": "virtual-node.interlink/no-schedule", "operator": "Exists", "effect": "NoSchedule"} in \
        pod["spec"]["tolerations"]
    secret = pod["metadata"]["annotations"]["slurmlink.io/token-secret"]
    assert {"name": secret, "secret": {"secretName": secret}} in pod["spec"]["volumes"]
