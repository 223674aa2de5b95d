"""The status watch as the proxy uses it for mode 1 (slurmlink/slurm/statuswatch.py), on real files: a pod
directory the job makes only when it starts, and directories that are not the owner's own (another account's,
a symlink in place of the pod's directory), which are never watched. Both methods (inotify, stat)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from slurmlink.slurm.statuswatch import StatusWatch, _libc_inotify, make_watch
from tests.harness.jobfiles import put

METHODS = ["stat", pytest.param("inotify", marks=pytest.mark.skipif(_libc_inotify() is None,
                                                                     reason="no inotify in this libc"))]
OWNER, OTHER = 4242, 4343  # uids of no one: root makes and gives the directories


@asynccontextmanager
async def running(method: str) -> AsyncIterator[tuple[StatusWatch, asyncio.Queue[set[str]]]]:
    batches: asyncio.Queue[set[str]] = asyncio.Queue()

    async def on_change(uids: set[str]) -> None:
        await batches.put(uids)

    watch = make_watch(method, on_change, 0.05)
    assert watch is not None
    runner = asyncio.create_task(watch.run())
    try:
        yield watch, batches
    finally:
        runner.cancel()
        watch.close()


async def told(batches: asyncio.Queue[set[str]], *uids: str, timeout: float = 10) -> set[str]:
    """The pods told until all of `uids` are among them."""
    union: set[str] = set()
    while not union >= set(uids):
        union |= await asyncio.wait_for(batches.get(), timeout)
    return union


def drain(batches: asyncio.Queue[set[str]]) -> set[str]:
    seen: set[str] = set()
    while not batches.empty():
        seen |= batches.get_nowait()
    return seen


def job_starts(pod: Path, owner: int | None = None) -> None:
    """What the job script does in mode 1: make its pod directory and status/, then write a record."""
    pod.mkdir(exist_ok=True)
    (pod / "status").mkdir(exist_ok=True)
    if owner is not None:
        os.chown(pod, owner, owner)
        os.chown(pod / "status", owner, owner)
    put(pod / "status", "main.started", "2026-12-05T01:00:00Z")


def scenario(coroutine: Callable[[], object]) -> None:
    asyncio.run(coroutine())  # type: ignore[arg-type]


@pytest.mark.parametrize("method", METHODS)
def test_a_pod_directory_made_after_the_watch_began_is_told(method: str, tmp_path: Path) -> None:
    async def run() -> None:
        async with running(method) as (watch, batches):
            pod = tmp_path / "ns-late"
            watch.track({"late": str(pod)}, owners={"late": OWNER})
            await told(batches, "late")  # read once at first, as every pod
            drain(batches)
            job_starts(pod, OWNER)
            assert "late" in await told(batches, "late")
            drain(batches)
            put(pod / "status", "main.exit", "0")
            assert "late" in await told(batches, "late")

    scenario(run)


@pytest.mark.parametrize("method", METHODS)
def test_a_directory_of_another_account_or_a_symlink_is_never_watched(method: str, tmp_path: Path) -> None:
    async def run() -> None:
        async with running(method) as (watch, batches):
            foreign, real, linked, control = (tmp_path / n for n in ("ns-foreign", "elsewhere", "ns-link", "ns-ok"))
            for pod in (foreign, real, control):
                job_starts(pod, OTHER if pod != control else OWNER)
            linked.symlink_to(real)  # the owner's symlink to a directory it may not read
            watch.track({"foreign": str(foreign), "link": str(linked), "ok": str(control)},
                        owners={"foreign": OWNER, "link": OWNER, "ok": OWNER})
            await told(batches, "foreign", "link", "ok")  # each read once at first (the read refuses them)
            drain(batches)
            put(foreign / "status", "main.exit", "0")
            put(real / "status", "main.exit", "0")
            put(control / "status", "main.exit", "0")  # written last: once it is told, the others would be
            seen = await told(batches, "ok")
            assert seen | drain(batches) == {"ok"}

    scenario(run)
