"""The vk's change feed consumer against a real HTTP server that implements the feed's contract
(tests/harness/feed_api.py): snapshot, long poll, reset after an API restart, reconnect with the cursor kept,
the fall-back to the status rounds where the API has no feed, and ordering between the feed and a round."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from slurmlink.vk import changefeed
from slurmlink.vk.changefeed import ChangeFeed
from slurmlink.vk.config import KubeConfigSection, VkConfig
from slurmlink.vk.controller import PodController
from slurmlink.vk.events import EventRecorder
from slurmlink.vk.kube import make_client
from slurmlink.vk.state import PodState
from slurmlink.vk.statusround import StatusRounds
from slurmlink.wire.client import ApiCallError, InterlinkClient, RouteUnsupported, create_body
from standins.kube import KubeStandin
from tests.harness.feed_api import FeedApi, running, serve_feed_api, terminated
from tests.harness.pods import NODE, pod_manifest
from tests.harness.waiting import wait_until_async

pytestmark = pytest.mark.timeout(60)
WAIT = 5.0  # a long poll's wait here; every test's poll is answered by a change long before it


def _pod(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"containers": [{"name": "main", "image": "debian"}]}}


class Parts:
    """A controller that knows the pods (as the watch would have told it), the rounds and the feed; no
    Kubernetes is needed: the tests look at what the controller would patch (state.remote, its queue)."""

    def __init__(self, url: str, kube: Any = None) -> None:
        self.api = InterlinkClient(url, timeout=5)
        self.controller = PodController(VkConfig(), kube, self.api, EventRecorder(kube, NODE))
        self.rounds = StatusRounds(self.controller.config, self.api, self.controller)
        self.feed = ChangeFeed(self.api, self.rounds, WAIT)

    async def submit(self, name: str) -> PodState:
        pod = _pod(name)
        await self.api.create(create_body(pod))
        state = self.controller.pods[pod["metadata"]["uid"]] = PodState.of(pod)
        state.submitted, state.send_full = True, False
        return state

    def queued(self) -> set[str]:
        return set(self.controller.queue._queued)


def _run(test: Callable[[Parts], Awaitable[None]], api: FeedApi, kube: Any = None) -> None:
    async def main() -> None:
        parts = Parts(api.url, kube() if kube else None)
        try:
            await test(parts)
        finally:
            await parts.api.close()
    asyncio.run(main())


def _state_of(state: PodState) -> str:
    assert state.remote is not None
    return next(iter(state.remote.containers[0]["state"]))


# --- the client ---------------------------------------------------------------------------------------------

def test_client_snapshot_then_long_poll_then_quiet_timeout() -> None:
    with serve_feed_api() as api:
        async def test(parts: Parts) -> None:
            await parts.submit("a")
            snapshot = await parts.api.changes("", WAIT)
            assert snapshot.reset and [p.uid for p in snapshot.pods] == ["uid-a"]
            poll = asyncio.create_task(parts.api.changes(snapshot.cursor, WAIT))
            await asyncio.sleep(0)  # the poll is on its way before the change (asserted by its answer only)
            await asyncio.to_thread(api.set_containers, "uid-a", running(api.pod("uid-a").pod))
            answer = await poll
            assert not answer.reset and answer.cursor != snapshot.cursor
            assert [(p.uid, next(iter(p.containers[0]["state"]))) for p in answer.pods] == [("uid-a", "running")]
            quiet = await parts.api.changes(answer.cursor, 0.2)
            assert (quiet.cursor, quiet.pods, quiet.removed, quiet.reset) == (answer.cursor, [], [], False)
        _run(test, api)


def test_client_changed_twice_is_answered_once_with_the_latest() -> None:
    with serve_feed_api() as api:
        async def test(parts: Parts) -> None:
            await parts.submit("a")
            cursor = (await parts.api.changes("", WAIT)).cursor
            pod = api.pod("uid-a").pod
            api.set_containers("uid-a", running(pod))
            api.set_containers("uid-a", terminated(pod))
            answer = await parts.api.changes(cursor, WAIT)
            assert [(p.uid, next(iter(p.containers[0]["state"]))) for p in answer.pods] == [("uid-a", "terminated")]
        _run(test, api)


@pytest.mark.parametrize("feed, method, status", [(False, "GET", 404), (True, "POST", 405)])
def test_client_no_feed_is_unsupported(feed: bool, method: str, status: int) -> None:
    with serve_feed_api(feed, method) as api:
        async def test(parts: Parts) -> None:
            with pytest.raises(RouteUnsupported) as caught:
                await parts.api.changes("", WAIT)
            assert caught.value.status == status
        _run(test, api)


# --- the consumer -------------------------------------------------------------------------------------------

def test_feed_answers_take_the_rounds_path() -> None:
    with serve_feed_api() as api:
        async def test(parts: Parts) -> None:
            state = await parts.submit("a")
            await parts.feed.poll()  # the snapshot
            assert _state_of(state) == "waiting" and parts.queued() == {"uid-a"}
            state.remote_changed = False
            poll = asyncio.create_task(parts.feed.poll())
            await asyncio.to_thread(api.set_containers, "uid-a", running(state.pod))
            await poll
            assert _state_of(state) == "running" and state.remote_changed and state.fed == 2
        _run(test, api)


def test_reset_after_an_api_restart_is_the_truth_for_the_pods_it_lists() -> None:
    with serve_feed_api() as api:
        async def test(parts: Parts) -> None:
            state = await parts.submit("a")
            await parts.feed.poll()
            old_epoch = parts.feed.cursor.split(":")[0]
            api.restart()
            api.set_containers("uid-a", terminated(state.pod, 3))  # ended while the API was away
            await parts.feed.poll()
            assert parts.feed.cursor.split(":")[0] != old_epoch
            assert _state_of(state) == "terminated" and state.remote_changed
        _run(test, api)


def test_reconnect_keeps_the_cursor_and_loses_no_change() -> None:
    api = FeedApi().start()
    try:
        async def test(parts: Parts) -> None:
            state = await parts.submit("a")
            await parts.feed.poll()
            cursor = parts.feed.cursor
            await asyncio.to_thread(api.stop)
            api.set_containers("uid-a", running(state.pod))  # while the connection is down
            with pytest.raises(ApiCallError) as caught:
                await parts.feed.poll()
            assert caught.value.status == 0 and parts.feed.cursor == cursor and not parts.feed.live
            await asyncio.to_thread(api.start)
            await parts.feed.poll()
            assert _state_of(state) == "running" and parts.feed.live
        _run(test, api)
    finally:
        api.stop()


def test_without_a_feed_the_rounds_report_and_the_feed_is_asked_again_later(monkeypatch: Any) -> None:
    monkeypatch.setattr(changefeed, "UNSUPPORTED_RETRY_SECONDS", 0.2)
    with serve_feed_api(feed=False) as api:
        async def test(parts: Parts) -> None:
            state = await parts.submit("a")
            parts.controller.adopted.set()
            task = asyncio.create_task(parts.feed.run())
            try:
                await wait_until_async(_async(lambda: api.status_calls == 0 and not parts.feed.live), 5, "no feed")
                api.set_containers("uid-a", running(state.pod))
                await parts.rounds.round()
                assert _state_of(state) == "running" and state.fed == 0
            finally:
                task.cancel()
        _run(test, api)


def test_a_round_answer_never_overrides_a_newer_feed_answer() -> None:
    with serve_feed_api() as api:
        async def test(parts: Parts) -> None:
            state = await parts.submit("a")
            await parts.feed.poll()
            api.status_gate = threading.Event()
            slow_round = asyncio.create_task(parts.rounds.round())  # answers "waiting", but late
            await wait_until_async(_async(lambda: api.status_calls == 1), 5, "the round to be asked")
            api.set_containers("uid-a", running(state.pod))
            await parts.feed.poll()
            assert _state_of(state) == "running"
            api.status_gate.set()
            await slow_round
            assert _state_of(state) == "running"  # the older answer came last, and was not taken
            await parts.rounds.round()  # a round asked after the feed's answer is taken again
            assert _state_of(state) == "running"
        _run(test, api)


def test_a_feed_answer_overtaken_by_a_round_is_not_taken_and_a_snapshot_follows() -> None:
    with serve_feed_api() as api:
        async def test(parts: Parts) -> None:
            state = await parts.submit("a")
            await parts.feed.poll()
            api.feed_gate = threading.Event()
            slow_poll = asyncio.create_task(parts.feed.poll())
            await asyncio.sleep(0.1)  # the poll waits in the API (a change before it arrives only answers sooner)
            computed = api.feed_answers
            await asyncio.to_thread(api.set_containers, "uid-a", running(state.pod))  # the feed's answer: late
            await wait_until_async(_async(lambda: api.feed_answers > computed), 5, "the feed's answer computed")
            api.set_containers("uid-a", terminated(state.pod))
            await parts.rounds.round()  # sees the newer state first
            assert _state_of(state) == "terminated" and state.rounded == 1
            api.feed_gate.set()
            await slow_poll
            assert _state_of(state) == "terminated"  # the older answer came last, and was not taken
            assert parts.feed.cursor == ""  # a snapshot next, newer than both
            api.feed_gate = None
            await parts.feed.poll()
            assert _state_of(state) == "terminated" and state.fed == parts.rounds.feed_answers
        _run(test, api)


def test_a_round_answer_is_taken_when_the_feed_told_nothing_meanwhile() -> None:
    with serve_feed_api() as api:
        async def test(parts: Parts) -> None:
            state = await parts.submit("a")
            await parts.feed.poll()
            api.set_containers("uid-a", running(state.pod))  # the feed is not polled: the safety net acts
            await parts.rounds.round()
            assert _state_of(state) == "running"
        _run(test, api)


def test_a_removed_pod_being_deleted_is_released() -> None:
    with serve_feed_api() as api:
        async def test(parts: Parts) -> None:
            state = await parts.submit("a")
            await parts.feed.poll()
            state.pod["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
            parts.controller.queue._queued.clear()
            api.remove("uid-a")
            await parts.feed.poll()
            assert state.remote is None and parts.queued() == {"uid-a"}
        _run(test, api)


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()
    return run


def test_an_answer_before_create_returned_is_kept_for_after_it() -> None:
    with serve_feed_api() as api:
        async def test(parts: Parts) -> None:
            await parts.feed.poll()
            pod = _pod("a")
            state = parts.controller.pods["uid-a"] = PodState.of(pod)  # the vk's /create is still on its way
            await parts.api.create(create_body(pod))
            await parts.feed.poll()
            assert _state_of(state) == "waiting" and state.remote_changed and not parts.queued()
        _run(test, api)


class HeldPatches:
    """The vk's client of the Kubernetes stand-in, whose status patches wait until `release` is set: a patch
    that is on its way while an answer comes in."""

    def __init__(self, standin: KubeStandin) -> None:
        self.kube = make_client(KubeConfigSection(kubeconfig=str(standin.kubeconfig)))
        self.patching, self.release = asyncio.Event(), asyncio.Event()

    async def patch(self, *args: Any, **kwargs: Any) -> Any:
        self.patching.set()
        await self.release.wait()
        return await self.kube.patch(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kube, name)


def test_an_answer_taken_while_a_patch_is_on_its_way_is_patched_after_it() -> None:
    """The feed told Running while the worker's patch of Pending was on its way: Running must follow it (the
    pod once stayed Pending until its next change, as the flag that asks for a patch was cleared after it)."""
    with serve_feed_api() as api, KubeStandin() as standin:
        manifest = pod_manifest("held", "true")
        manifest["spec"]["nodeName"] = NODE  # bound, as the vk's pods are
        pod = standin.create("pods", manifest, "default")

        def phase() -> str:
            return str(((standin.get("pods", "held", "default") or {}).get("status") or {}).get("phase") or "")

        async def test(parts: Parts) -> None:
            kube = cast(HeldPatches, parts.controller.kube)
            state = parts.controller.pods[pod["metadata"]["uid"]] = PodState.of(pod)
            await parts.api.create(create_body(pod))
            state.submitted = True
            await parts.feed.poll()  # the snapshot: waiting
            parts.controller.adopted.set()
            worker = asyncio.create_task(parts.controller.worker())
            try:
                await asyncio.wait_for(kube.patching.wait(), 10)  # Pending, held on its way
                api.set_containers(state.uid, running(pod))
                await parts.feed.poll()
                assert _state_of(state) == "running"
                kube.release.set()
                await wait_until_async(_async(lambda: phase() == "Running"), 10, "Running to be patched")
            finally:
                worker.cancel()
                await kube.kube.close()
        _run(test, api, lambda: HeldPatches(standin))
