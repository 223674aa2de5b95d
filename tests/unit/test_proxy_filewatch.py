"""The proxy's file watch (slurmlink/proxy/filewatch.py) on real files and a real ledger, without HTTP: who is told
of which job, the cursor across a restart, the jobs it refuses to watch, and stopping. The HTTP route, its gates
and the mode-1 API holding it are tested through the real processes in tests/integration/test_mode1_file_watch.py.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from slurmlink.proxy import filewatch
from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.filewatch import FileWatch
from slurmlink.proxy.ledger import Ledger
from slurmlink.proxy.roles import SERVICE, Caller
from slurmlink.slurm.podfiles import PodFiles
from slurmlink.slurm.statuswatch import _libc_inotify
from tests.harness.jobfiles import put

METHODS = ["stat", pytest.param("inotify", marks=pytest.mark.skipif(_libc_inotify() is None,
                                                                     reason="no inotify in this libc"))]
ALICE, BOB = "nobody", "daemon"  # two local accounts that are not root
ALICE_CALLS = Caller(user=ALICE, subject="alice", issuer="https://issuer")
BOB_CALLS = Caller(user=BOB, subject="bob", issuer="https://issuer")
SERVICE_CALLS = Caller(user="bin", subject="api", issuer="https://issuer", role=SERVICE)


def run(tmp_path: Path, method: str, scenario: Callable[[FileWatch, Ledger, Path], Awaitable[None]]) -> None:
    root = tmp_path / "jobs"
    root.mkdir()
    root.chmod(0o1733)
    ledger = Ledger(str(tmp_path / "state"))

    async def main() -> None:
        watch = FileWatch(PodFiles(str(root)), ledger, method, 0.05)
        task = asyncio.create_task(watch.run())
        try:
            await scenario(watch, ledger, root)
        finally:
            task.cancel()
            watch.release()

    asyncio.run(main())


def job_writes(pod: Path, user: str, record: str, value: str) -> None:
    """As the job script does: its pod directory and status/ (its own), then one record renamed into place."""
    uid = pwd.getpwnam(user).pw_uid
    for directory in (pod, pod / "status"):
        if not directory.exists():
            directory.mkdir(mode=0o700)
            os.chown(directory, uid, uid)
    put(pod / "status", record, value)


async def told(watch: FileWatch, caller: Caller, jobs: list[str], cursor: str, wait: float = 20) -> tuple[
        list[str], str]:
    answer = await watch.changes(caller, jobs, cursor, wait)
    assert not answer.reset
    return answer.jobs, answer.cursor


@pytest.mark.parametrize("method", METHODS)
def test_each_caller_is_told_of_its_own_jobs_and_a_service_of_all(tmp_path: Path, method: str) -> None:
    async def scenario(watch: FileWatch, ledger: Ledger, root: Path) -> None:
        mine = ledger.record("101", ALICE, "slurmlink-a", str(root / "ns-a"))
        ledger.record("102", BOB, "slurmlink-b", str(root / "ns-b"))
        watch.submitted(mine)  # watched from its submission, before any caller names it
        first = await watch.changes(ALICE_CALLS, [], None, 0)
        assert first.reset and first.jobs == []
        alice_waits = asyncio.create_task(told(watch, ALICE_CALLS, [], first.cursor))
        service_waits = asyncio.create_task(told(watch, SERVICE_CALLS, ["102"], first.cursor))
        bob = await watch.changes(BOB_CALLS, ["102"], first.cursor, 0)
        assert bob.jobs == [] and bob.refused == {}
        job_writes(root / "ns-a", ALICE, "main.started", "2026-12-05T01:00:00Z")  # alice's job starts
        jobs, cursor = await alice_waits
        assert jobs == ["101"]
        assert (await service_waits)[0] == ["101"]
        # bob is never told of alice's job: once bob's own job writes, his answer names only it
        job_writes(root / "ns-b", BOB, "main.started", "2026-12-05T01:00:01Z")
        jobs, _ = await told(watch, BOB_CALLS, ["102"], first.cursor)
        assert jobs == ["102"]
        # alice's job ends: told once more, from the cursor she had
        job_writes(root / "ns-a", ALICE, "main.exit", "0")
        jobs, cursor = await told(watch, ALICE_CALLS, ["101"], cursor)
        assert jobs == ["101"]
        # then nothing new (`stat` looks once more at a directory that just changed: it may tell it again)
        for _ in range(5):
            answer = await watch.changes(ALICE_CALLS, ["101"], cursor, 0.5)
            assert answer.jobs in ([], ["101"])
            if not answer.jobs:
                break
            cursor = answer.cursor
        assert answer.jobs == [] and answer.cursor == cursor

    run(tmp_path, method, scenario)


def test_jobs_not_in_the_ledger_or_of_another_user_are_refused_and_never_told(tmp_path: Path) -> None:
    async def scenario(watch: FileWatch, ledger: Ledger, root: Path) -> None:
        ledger.record("201", ALICE, "slurmlink-a", str(root / "ns-a"))
        ledger.record("202", BOB, "slurmlink-b", "/etc")  # not a pod directory
        answer = await watch.changes(BOB_CALLS, ["201", "202", "999"], None, 0)
        assert answer.reset and answer.jobs == []
        assert set(answer.refused) == {"201", "202", "999"}
        assert "another user" in answer.refused["201"]
        assert "not submitted through this proxy" in answer.refused["999"]
        assert set(watch.jobs) == set()  # nothing of them watched

    run(tmp_path, "stat", scenario)


def test_a_cursor_of_another_proxy_gets_a_reset_with_every_job_named(tmp_path: Path) -> None:
    async def scenario(watch: FileWatch, ledger: Ledger, root: Path) -> None:
        ledger.record("301", ALICE, "slurmlink-a", str(root / "ns-a"))
        ledger.record("302", ALICE, "slurmlink-c", str(root / "ns-c"))
        answer = await watch.changes(ALICE_CALLS, ["301", "302"], "0123456789abcdef:42", 30)
        assert answer.reset and answer.jobs == ["301", "302"]
        assert answer.cursor.startswith(watch.epoch + ":")
        with pytest.raises(Refusal) as refused:
            await watch.changes(ALICE_CALLS, [], "not-a-cursor", 0)
        assert refused.value.status == 400

    run(tmp_path, "stat", scenario)


def test_closing_answers_the_long_polls_at_once(tmp_path: Path) -> None:
    async def scenario(watch: FileWatch, ledger: Ledger, root: Path) -> None:
        cursor = (await watch.changes(ALICE_CALLS, [], None, 0)).cursor
        waiting = asyncio.create_task(watch.changes(ALICE_CALLS, [], cursor, 60))
        while not watch.long_polls:
            await asyncio.sleep(0.01)
        watch.close()
        answer = await asyncio.wait_for(waiting, 5)
        assert answer.jobs == [] and answer.cursor == cursor

    run(tmp_path, "stat", scenario)


def test_a_caller_holds_a_bounded_number_of_long_polls(tmp_path: Path) -> None:
    async def scenario(watch: FileWatch, ledger: Ledger, root: Path) -> None:
        cursor = (await watch.changes(ALICE_CALLS, [], None, 0)).cursor
        held = [asyncio.create_task(watch.changes(ALICE_CALLS, [], cursor, 60)) for _ in range(8)]
        while sum(watch.long_polls.values()) < 8:
            await asyncio.sleep(0.01)
        with pytest.raises(Refusal) as refused:
            await watch.changes(ALICE_CALLS, [], cursor, 60)
        assert refused.value.status == 429
        assert (await watch.changes(BOB_CALLS, [], cursor, 0)).jobs == []  # another caller is not held back
        watch.close()
        await asyncio.gather(*held)

    run(tmp_path, "stat", scenario)


def test_one_account_cannot_fill_the_watch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filewatch, "MAX_WATCHED_PER_OWNER", 2)

    async def scenario(watch: FileWatch, ledger: Ledger, root: Path) -> None:
        for job_id, user in (("401", ALICE), ("402", ALICE), ("403", ALICE), ("404", BOB)):
            ledger.record(job_id, user, "slurmlink-x", str(root / f"ns-{job_id}"))
        answer = await watch.changes(ALICE_CALLS, ["401", "402", "403"], None, 0)
        assert answer.jobs == ["401", "402"] and "of one account" in answer.refused["403"]
        assert (await watch.changes(BOB_CALLS, ["404"], None, 0)).jobs == ["404"]

    run(tmp_path, "stat", scenario)
