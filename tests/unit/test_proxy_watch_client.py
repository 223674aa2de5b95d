"""The API's side of the proxy's file watch (slurmlink/slurm/restwatch.py), over an `ask` that answers as the
proxy's route does (its contract: wire/statuschanges.py; the real proxy is in
tests/integration/test_mode1_file_watch.py): what it names, what it hands on, and what it does when the route is
off. Each call is recorded; the answers come from a queue per user that the test fills."""

from __future__ import annotations

import asyncio

import pytest

from slurmlink.core.records import PodDirectory
from slurmlink.slurm import restwatch
from slurmlink.slurm.rest import Refused
from slurmlink.slurm.restwatch import SERVICE, ProxyWatch
from slurmlink.wire.statuschanges import MAX_JOBS_PER_CALL, StatusChanges

Call = tuple[str, list[str], str | None]


class Proxy:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.queues: dict[str, asyncio.Queue[StatusChanges | Exception]] = {}

    def answers(self, user: str = SERVICE) -> asyncio.Queue[StatusChanges | Exception]:
        return self.queues.setdefault(user, asyncio.Queue())

    async def ask(self, user: str, jobs: list[str], since: str | None, wait: float) -> StatusChanges:
        self.calls.append((user, jobs, since))
        answer = await self.answers(user).get()
        if isinstance(answer, Exception):
            raise answer
        return answer


def pods(n: int, user: str = "alice") -> dict[str, PodDirectory]:
    return {f"uid-{i}": PodDirectory(f"/jobs/ns-uid-{i}", user, str(1000 + i)) for i in range(n)}


async def until(check: object, what: str) -> None:
    for _ in range(500):
        if callable(check) and check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {what}")


def test_the_jobs_told_reach_on_change_as_pods_and_the_cursor_is_kept() -> None:
    async def scenario() -> None:
        proxy, told = Proxy(), asyncio.Queue[set[str]]()

        async def on_change(uids: set[str]) -> None:
            await told.put(uids)

        watch = ProxyWatch(on_change, proxy.ask, shared=True)
        runner = asyncio.create_task(watch.run())
        watch.track_pods(pods(3))
        await until(lambda: proxy.calls, "first call")
        assert proxy.calls[0] == (SERVICE, ["1000", "1001", "1002"], None)
        # new pods are read once at once (the proxy may have told of them before their ids were known here)
        assert await asyncio.wait_for(told.get(), 5) == {"uid-0", "uid-1", "uid-2"}
        await proxy.answers().put(StatusChanges(cursor="e:1", reset=True, jobs=["1000", "1001", "1002"]))
        assert await asyncio.wait_for(told.get(), 5) == {"uid-0", "uid-1", "uid-2"}  # a reset: all read once
        await proxy.answers().put(StatusChanges(cursor="e:2", jobs=["1001", "99"]))  # 99: not one of ours
        assert await asyncio.wait_for(told.get(), 5) == {"uid-1"}
        await until(lambda: len(proxy.calls) == 3, "third call")
        assert proxy.calls[2][2] == "e:2"
        runner.cancel()

    asyncio.run(scenario())


def test_more_jobs_than_one_call_takes_are_named_in_turns_one_long_poll_per_user_without_a_service() -> None:
    async def scenario() -> None:
        proxy = Proxy()

        async def on_change(uids: set[str]) -> None:
            return None

        watch = ProxyWatch(on_change, proxy.ask, shared=False)
        runner = asyncio.create_task(watch.run())
        watch.track_pods({**pods(MAX_JOBS_PER_CALL + 10), "bob-pod": PodDirectory("/jobs/b", "bob", "7")})
        await until(lambda: len(proxy.calls) == 2, "a call per user")
        assert {call[0] for call in proxy.calls} == {"alice", "bob"}
        [alice] = [call for call in proxy.calls if call[0] == "alice"]
        assert len(alice[1]) == MAX_JOBS_PER_CALL
        await proxy.answers("alice").put(StatusChanges(cursor="e:1"))
        await proxy.answers("bob").put(StatusChanges(cursor="e:1"))
        await until(lambda: len(proxy.calls) == 4, "the next calls")
        [_, later] = [call for call in proxy.calls if call[0] == "alice"]
        assert len(later[1]) == 10 and not set(later[1]) & set(alice[1])  # the others' turn
        runner.cancel()

    asyncio.run(scenario())


def test_a_proxy_without_the_watch_is_asked_again_only_after_a_long_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restwatch, "OFF_RECHECK_SECONDS", 0.3)

    async def scenario() -> None:
        proxy = Proxy()

        async def on_change(uids: set[str]) -> None:
            return None

        watch = ProxyWatch(on_change, proxy.ask, shared=True)
        runner = asyncio.create_task(watch.run())
        watch.track_pods(pods(1))
        await proxy.answers().put(Refused(404, "NotFound: this proxy does not watch job files"))
        await until(lambda: len(proxy.calls) == 2, "the call after the pause")
        assert proxy.calls[1][2] is None  # begun afresh
        runner.cancel()

    asyncio.run(scenario())
