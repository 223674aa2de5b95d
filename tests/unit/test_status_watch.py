"""Noticing the job's writes in a pod's status/ directory (slurmlink/slurm/statuswatch.py), with real files in a
temporary directory and the kernel's inotify, written the way prelude.sh's `sl_put` writes them (a hidden
temporary file renamed into place)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from slurmlink.core.records import PodDirectory
from slurmlink.slurm.statuswatch import (
    _EVENT,
    IN_Q_OVERFLOW,
    InotifyWatch,
    StatusWatch,
    StatWatch,
    _libc_inotify,
    choose_method,
    filesystem_of,
    make_watch,
    on_local_filesystem,
)

T = TypeVar("T")
Batches = asyncio.Queue[set[str]]  # the pods of each read a watch asked for
needs_inotify = pytest.mark.skipif(_libc_inotify() is None, reason="no inotify in this libc")

MOUNTS = """\
/dev/sda1 / ext4 rw 0 0
server:/export /shared nfs4 rw 0 0
tmpfs /shared/scratch tmpfs rw 0 0
lustre@tcp:/fs /lus lustre rw 0 0
auto.home /home autofs rw 0 0
mfsmaster:/ /mfs fuse.mfs rw 0 0
"""


def test_the_filesystem_of_a_path_is_that_of_its_longest_mount_point(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(MOUNTS)
    assert filesystem_of("/shared/jobs", str(mounts)) == "nfs4"
    assert filesystem_of("/shared/scratch/jobs", str(mounts)) == "tmpfs"
    assert filesystem_of("/sharedother", str(mounts)) == "ext4"
    assert filesystem_of("/lus", str(mounts)) == "lustre"
    assert filesystem_of("/x", str(tmp_path / "none")) == ""
    assert not on_local_filesystem("/shared/jobs", str(mounts))
    assert not on_local_filesystem("/lus/jobs", str(mounts))
    assert on_local_filesystem("/shared/scratch/jobs", str(mounts))
    assert on_local_filesystem("/var/lib/jobs", str(mounts))
    for unknown in ("/home/jobs", "/mfs/jobs"):  # an automount point, a FUSE filesystem not known to be local
        assert not on_local_filesystem(unknown, str(mounts))


def test_auto_watches_a_local_job_root_with_inotify_and_an_explicit_choice_is_kept(tmp_path: Path) -> None:
    assert choose_method("stat", str(tmp_path)) == "stat"
    assert choose_method("off", str(tmp_path)) == "off"
    assert choose_method("auto", str(tmp_path)) in ("inotify", "stat")


def put(status: Path, name: str, value: str) -> None:
    """prelude.sh's sl_put: a temporary file renamed into place."""
    temporary = status / f".{name}.{os.getpid()}"
    temporary.write_text(value + "\n")
    os.replace(temporary, status / name)


async def told(batches: Batches, *uids: str, timeout: float = 10) -> set[str]:
    """The pods told until all of `uids` are among them."""
    union: set[str] = set()
    while not union >= set(uids):
        union |= await asyncio.wait_for(batches.get(), timeout)
    return union


def watching(method: str, steps: Callable[[StatusWatch, Batches], Awaitable[T]]) -> T:
    """`steps` with a running watch of `method` (its stat look every 0.05 s); each read it asks for puts its
    pods in `batches`."""
    async def scenario() -> T:
        batches: Batches = asyncio.Queue()

        async def on_change(uids: set[str]) -> None:
            await batches.put(uids)

        watch = make_watch(method, on_change, 0.05)
        assert watch is not None
        runner = asyncio.create_task(watch.run())
        try:
            return await steps(watch, batches)
        finally:
            runner.cancel()
            watch.close()

    return asyncio.run(scenario())


def drain(batches: Batches) -> list[set[str]]:
    taken = []
    while not batches.empty():
        taken.append(batches.get_nowait())
    return taken


def watch_scenario(tmp_path: Path, method: str) -> None:
    pod_a, pod_b = tmp_path / "ns-a", tmp_path / "ns-b"
    pod_a.mkdir()  # a new submission: its job has not started
    (pod_b / "status").mkdir(parents=True)  # a job that wrote before the watch began
    put(pod_b / "status", "main.started", "2026-12-05T01:00:00Z")

    async def steps(watch: StatusWatch, batches: Batches) -> None:
        watch.track({"a": str(pod_a), "b": str(pod_b)})
        await told(batches, "b")  # read once at first
        drain(batches)
        (pod_a / "status").mkdir()  # the job starts: its script makes status/ and writes in it
        put(pod_a / "status", "main.started", "2026-12-05T01:00:00Z")
        assert "a" in await told(batches, "a")
        put(pod_a / "status", "main.exit", "0")  # the container ends
        assert "a" in await told(batches, "a")
        watch.track({"b": str(pod_b)})  # a's records are final: no longer watched
        assert set(watch.watched) == {"b"}
        await asyncio.sleep(0.3)  # b's first looks (stat: two) are told before its next write
        drain(batches)
        put(pod_b / "status", "main.exit", "0")
        assert "b" in await told(batches, "b")

    watching(method, steps)


@needs_inotify
def test_inotify_tells_the_pod_whose_status_files_were_replaced(tmp_path: Path) -> None:
    watch_scenario(tmp_path, "inotify")


def test_stat_tells_the_pod_whose_status_directory_changed(tmp_path: Path) -> None:
    watch_scenario(tmp_path, "stat")


@needs_inotify
def test_inotify_reads_a_new_pod_only_once_its_job_has_written(tmp_path: Path) -> None:
    """A burst of creates must not cost a read of each new pod: before its status/ exists there is nothing to
    read, and its making shows through the pod directory's watch."""
    (tmp_path / "ns-new").mkdir()
    (tmp_path / "ns-started" / "status").mkdir(parents=True)

    async def steps(watch: StatusWatch, batches: Batches) -> list[set[str]]:
        watch.add_pods({"new": PodDirectory(str(tmp_path / "ns-new"), "u", "1")})
        watch.add_pods({"started": PodDirectory(str(tmp_path / "ns-started"), "u", "2")})
        first = [await told(batches, "started")]
        await asyncio.sleep(0.2)  # ten times the settling time: a read of "new" would have come
        return first + drain(batches)

    assert all("new" not in batch for batch in watching("inotify", steps))


@needs_inotify
def test_inotify_ignores_the_job_scripts_temporary_files(tmp_path: Path) -> None:
    (tmp_path / "ns-a" / "status").mkdir(parents=True)
    (tmp_path / "ns-b" / "status").mkdir(parents=True)

    async def steps(watch: StatusWatch, batches: Batches) -> set[str]:
        watch.track({"a": str(tmp_path / "ns-a"), "b": str(tmp_path / "ns-b")})
        await told(batches, "a")
        drain(batches)
        (tmp_path / "ns-a" / "status" / ".main.exit.77").write_text("0\n")  # not renamed yet
        put(tmp_path / "ns-b" / "status", "main.started", "now")
        return await told(batches, "b")

    assert watching("inotify", steps) == {"b"}


def test_the_watches_are_of_the_kind_asked_for() -> None:
    async def scenario() -> tuple[type[StatusWatch], ...]:
        async def on_change(uids: set[str]) -> None:
            return None

        kinds = []
        for method in ("stat", "inotify"):
            watch = make_watch(method, on_change, 0.5)
            assert watch is not None
            kinds.append(type(watch))
            watch.close()
        assert make_watch("off", on_change, 0.5) is None
        return tuple(kinds)

    stat, inotify = asyncio.run(scenario())
    assert stat is StatWatch
    assert inotify is (InotifyWatch if _libc_inotify() is not None else StatWatch)


@needs_inotify
def test_inotify_sees_pod_directories_appear_one_by_one_as_pods_are_added(tmp_path: Path) -> None:
    """Pods added one at a time (creates: add_pods), their directories made later, in another order; the
    parent's watch outlives the moments when no pod is awaited in it."""
    pods = {uid: PodDirectory(str(tmp_path / f"ns-{uid}"), "someone", uid) for uid in ("a", "b", "c")}

    async def steps(watch: StatusWatch, batches: Batches) -> None:
        watch.add_pods({"a": pods["a"]})
        watch.add_pods({"b": pods["b"]})
        await told(batches, "a", "b")  # each read once at first
        for uid in ("b", "a", "c"):  # their jobs start (mode 1: a job makes its pod's directory)
            if uid == "c":  # no pod is awaited now; the parent stays watched
                watch.add_pods({"c": pods["c"]})
                await told(batches, "c")
            (tmp_path / f"ns-{uid}" / "status").mkdir(parents=True)
            put(tmp_path / f"ns-{uid}" / "status", "main.started", "2026-12-05T01:00:00Z")
            assert uid in await told(batches, uid)
        assert set(watch.watched) == {"a", "b", "c"}
        put(tmp_path / "ns-a" / "status", "main.exit", "0")
        assert "a" in await told(batches, "a")

    watching("inotify", steps)


@needs_inotify
def test_inotify_tells_a_status_directory_made_after_the_pod_directory_appeared(tmp_path: Path) -> None:
    """Mode 1: the job makes its pod directory, watched once the parent's watch shows it; status/ comes later."""
    async def steps(watch: StatusWatch, batches: Batches) -> None:
        assert isinstance(watch, InotifyWatch)
        watch.add_pods({"a": PodDirectory(str(tmp_path / "ns-a"), "someone", "1")})
        await told(batches, "a")  # its directory is not there: read once
        (tmp_path / "ns-a").mkdir()
        await wait_for(lambda: watch._wds.get("a"))  # the pod directory's watch is in place
        (tmp_path / "ns-a" / "status").mkdir()
        put(tmp_path / "ns-a" / "status", "main.started", "2026-12-05T01:00:00Z")
        assert "a" in await told(batches, "a")

    watching("inotify", steps)


@needs_inotify
def test_after_lost_events_every_pod_is_read_and_a_status_directory_made_meanwhile_is_watched(tmp_path: Path) -> None:
    """The kernel's queue overflowed (IN_Q_OVERFLOW): the making of status/ may be among what was lost."""
    async def steps(watch: StatusWatch, batches: Batches) -> None:
        assert isinstance(watch, InotifyWatch)
        (tmp_path / "ns-a").mkdir()
        watch.add_pods({"a": PodDirectory(str(tmp_path / "ns-a"), "someone", "1")})
        (tmp_path / "ns-a" / "status").mkdir()
        os.read(watch.fd, 64 * 1024)  # its event is lost: read here, before the event loop lets the watch read
        await asyncio.sleep(0.1)
        assert not batches.qsize()
        watch._handle(_EVENT.pack(-1, IN_Q_OVERFLOW, 0, 0))
        assert "a" in await told(batches, "a")
        put(tmp_path / "ns-a" / "status", "main.started", "2026-12-05T01:00:00Z")
        assert "a" in await told(batches, "a")  # status/ is watched now

    watching("inotify", steps)


async def wait_for(check: Callable[[], object], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)
