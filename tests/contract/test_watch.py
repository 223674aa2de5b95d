"""Watch as a kubelet uses it: from a list's resourceVersion, filtered on spec.nodeName, 410 and relist,
bookmarks, timeouts; and, on the stand-in only, watches that are dropped or expired on purpose."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Pod
from lightkube.types import OnErrorAction, OnErrorResult

from standins.kube import KubeStandin
from tests.contract.cluster import NO_SCHEDULER, Cluster, ContractNode, pod_body

pytestmark = pytest.mark.anyio


async def _collect(stream: AsyncIterator[tuple[str, Any]], until: Callable[[str, Any], bool],
                   timeout: float = 10) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    try:
        async with asyncio.timeout(timeout):
            async for kind, obj in stream:
                seen.append((kind, obj.metadata.name))
                if until(kind, obj):
                    break
    except TimeoutError:
        pytest.fail(f"watch did not deliver the expected event in {timeout}s; saw {seen}")
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    return seen


def _list_rv(kube: Client, ns: str, node: str) -> str:
    listing = kube.list(Pod, namespace=ns, fields={"spec.nodeName": node})
    list(listing)
    return listing.resourceVersion


def _raw_watch_lines(cluster: Cluster, path: str, params: dict[str, str], limit: float = 15,
                     stop: Callable[[dict], bool] = lambda line: False) -> list[dict]:
    lines: list[dict] = []
    deadline = time.monotonic() + limit
    with cluster.raw() as http, http.stream("GET", path, params={"watch": "1", **params},
                                             timeout=limit) as answer:
        if answer.status_code != 200:
            return [{"type": "HTTP", "object": json.loads(answer.read())}]
        for line in answer.iter_lines():
            if line:
                lines.append(json.loads(line))
            if time.monotonic() > deadline or (lines and stop(lines[-1])):
                break
    return lines


async def test_watch_replays_changes_from_the_list_revision(cluster: Cluster, kube: Client, ns: str,
                                                            node: ContractNode) -> None:
    rv = _list_rv(kube, ns, node.name)
    pod = kube.create(Pod.from_dict(pod_body("replayed", node=node.name)), namespace=ns)
    kube.patch(Pod.Status, "replayed", {"status": {"phase": "Running"}}, namespace=ns)
    kube.delete(Pod, "replayed", namespace=ns, grace_period=0)
    client = cluster.async_client()
    try:
        stream = client.watch(Pod, namespace=ns, fields={"spec.nodeName": node.name}, resource_version=rv)
        seen = await _collect(stream, lambda kind, obj: kind == "DELETED")
    finally:
        await client.close()
    kinds = [kind for kind, name in seen if name == "replayed"]
    assert kinds[0] == "ADDED" and kinds[-1] == "DELETED" and "MODIFIED" in kinds
    assert pod.metadata.uid


async def test_binding_makes_a_pod_appear_on_the_node_watch(cluster: Cluster, kube: Client, ns: str,
                                                            node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("late", **NO_SCHEDULER)), namespace=ns)
    rv = _list_rv(kube, ns, node.name)
    client = cluster.async_client()
    try:
        stream = client.watch(Pod, namespace=ns, fields={"spec.nodeName": node.name}, resource_version=rv)
        watching = asyncio.create_task(_collect(stream, lambda kind, obj: obj.metadata.name == "late"))
        await asyncio.sleep(0.3)
        # Raw: the real answer to a binding is a Status, which lightkube cannot decode as a Binding.
        with cluster.raw() as http:
            answer = http.post(f"/api/v1/namespaces/{ns}/pods/late/binding", json={
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "late"},
                "target": {"kind": "Node", "name": node.name}})
        assert answer.status_code == 201 and answer.json()["kind"] == "Status"
        seen = await watching
    finally:
        await client.close()
    assert ("ADDED", "late") in seen  # it starts to match the selector: ADDED, not MODIFIED


def test_binding_a_bound_pod_is_409(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("bound", node=node.name)), namespace=ns)
    with cluster.raw() as http:
        answer = http.post(f"/api/v1/namespaces/{ns}/bindings", json={
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bound"},
            "target": {"kind": "Node", "name": node.name}})
    assert answer.status_code == 409 and answer.json()["reason"] == "Conflict"


def test_watch_from_a_too_old_revision_is_410(cluster: Cluster, ns: str) -> None:
    lines = _raw_watch_lines(cluster, f"/api/v1/namespaces/{ns}/pods", {"resourceVersion": "1"})
    status = lines[0]["object"]
    assert lines[0]["type"] in ("ERROR", "HTTP") and status["kind"] == "Status"
    assert status["code"] == 410 and status["reason"] in ("Expired", "Gone")


async def test_lightkube_relists_after_410(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("survivor", node=node.name)), namespace=ns)
    errors: list[int] = []

    def on_error(exc: Exception, count: int) -> OnErrorResult:
        if isinstance(exc, ApiError) and exc.status.code == 410 and count < 3:
            errors.append(410)
            return OnErrorResult(OnErrorAction.RETRY)  # lightkube forgets the revision: a fresh list+watch
        return OnErrorResult(OnErrorAction.RAISE)
    client = cluster.async_client()
    try:
        stream = client.watch(Pod, namespace=ns, fields={"spec.nodeName": node.name}, resource_version="1",
                              on_error=on_error)
        seen = await _collect(stream, lambda kind, obj: obj.metadata.name == "survivor")
    finally:
        await client.close()
    assert errors == [410] and ("ADDED", "survivor") in seen


def test_timeout_seconds_ends_the_watch(cluster: Cluster, ns: str) -> None:
    started = time.monotonic()
    _raw_watch_lines(cluster, f"/api/v1/namespaces/{ns}/pods", {"timeoutSeconds": "1"})
    assert time.monotonic() - started < 8


def test_bookmarks_carry_a_newer_revision(cluster: Cluster, kube: Client, ns: str) -> None:
    listing = kube.list(Pod, namespace=ns)
    list(listing)
    lines = _raw_watch_lines(cluster, f"/api/v1/namespaces/{ns}/pods", {
        "resourceVersion": listing.resourceVersion, "allowWatchBookmarks": "true", "timeoutSeconds": "4"},
        stop=lambda line: line["type"] == "BOOKMARK")
    bookmarks = [line["object"] for line in lines if line["type"] == "BOOKMARK"]
    assert bookmarks, lines
    assert int(bookmarks[-1]["metadata"]["resourceVersion"]) >= int(listing.resourceVersion)


def test_initial_events_end_with_an_annotated_bookmark(cluster: Cluster, kube: Client, ns: str) -> None:
    kube.create(Pod.from_dict(pod_body("initial", **NO_SCHEDULER)), namespace=ns)
    lines = _raw_watch_lines(cluster, f"/api/v1/namespaces/{ns}/pods", {
        "sendInitialEvents": "true", "allowWatchBookmarks": "true", "resourceVersionMatch": "NotOlderThan",
        "timeoutSeconds": "10"}, stop=lambda line: line["type"] == "BOOKMARK")
    assert lines[0]["type"] == "ADDED" and lines[0]["object"]["metadata"]["name"] == "initial"
    assert lines[-1]["type"] == "BOOKMARK"
    assert lines[-1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"] == "true"


# --- stand-in only: faults on purpose ----------------------------------------------------------------------------
async def _watch_through(cluster: Cluster, kube: Client, ns: str, node: ContractNode, fault: Callable[[], Any],
                         name: str, on_error: Any = None) -> list[tuple[str, str]]:
    rv = _list_rv(kube, ns, node.name)
    client = cluster.async_client()
    try:
        kwargs = {"on_error": on_error} if on_error else {}
        stream = client.watch(Pod, namespace=ns, fields={"spec.nodeName": node.name}, resource_version=rv, **kwargs)
        watching = asyncio.create_task(_collect(stream, lambda kind, obj: obj.metadata.name == name))
        await asyncio.sleep(0.3)
        fault()
        await asyncio.sleep(0.3)
        kube.create(Pod.from_dict(pod_body(name, node=node.name)), namespace=ns)
        return await watching
    finally:
        await client.close()


async def test_watch_resumes_after_a_clean_drop(cluster: Cluster, standin: KubeStandin, kube: Client, ns: str,
                                                node: ContractNode) -> None:
    seen = await _watch_through(cluster, kube, ns, node, lambda: standin.drop_watches(), "after-drop")
    assert ("ADDED", "after-drop") in seen


async def test_watch_resumes_after_a_cut_connection(cluster: Cluster, standin: KubeStandin, kube: Client, ns: str,
                                                    node: ContractNode) -> None:
    def retry(exc: Exception, count: int) -> OnErrorResult:
        return OnErrorResult(OnErrorAction.RETRY, sleep=0.1) if count < 5 else OnErrorResult(OnErrorAction.RAISE)
    seen = await _watch_through(cluster, kube, ns, node, lambda: standin.drop_watches(abrupt=True), "after-cut",
                                on_error=retry)
    assert ("ADDED", "after-cut") in seen


async def test_expired_watches_force_a_relist(cluster: Cluster, standin: KubeStandin, kube: Client, ns: str,
                                              node: ContractNode) -> None:
    expired: list[int] = []

    def relist(exc: Exception, count: int) -> OnErrorResult:
        if isinstance(exc, ApiError) and exc.status.code == 410:
            expired.append(count)
            return OnErrorResult(OnErrorAction.RETRY)
        return OnErrorResult(OnErrorAction.RAISE)

    def expire_and_drop() -> None:
        standin.expire_next_watches(2)
        standin.drop_watches()
    seen = await _watch_through(cluster, kube, ns, node, expire_and_drop, "after-expiry", on_error=relist)
    assert len(expired) == 2 and ("ADDED", "after-expiry") in seen


def test_compaction_makes_old_revisions_410(cluster: Cluster, standin: KubeStandin, kube: Client, ns: str) -> None:
    listing = kube.list(Pod, namespace=ns)
    list(listing)
    kube.create(Pod.from_dict(pod_body("bump", **NO_SCHEDULER)), namespace=ns)
    standin.compact()
    lines = _raw_watch_lines(cluster, f"/api/v1/namespaces/{ns}/pods", {"resourceVersion": listing.resourceVersion})
    assert lines[0]["type"] == "ERROR" and lines[0]["object"]["code"] == 410


def test_latency_is_added(cluster: Cluster, standin: KubeStandin, kube: Client, ns: str) -> None:
    standin.latency = 0.3
    try:
        started = time.monotonic()
        list(kube.list(Pod, namespace=ns))
        assert time.monotonic() - started >= 0.3
    finally:
        standin.latency = 0.0

