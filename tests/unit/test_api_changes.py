"""The API's side of issue 13 over the in-memory SLURM (tests/harness/memory_slurm.py): the change feed as the
service fills it, the job's files read between polls (no SLURM query), and polls that come sooner only while
a job is awaited. With the real SLURM: tests/integration/test_api_changes.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from slurmlink.api.config import ApiConfig
from slurmlink.api.service import PodService
from slurmlink.core.records import ContainerRecord
from slurmlink.slurm.statuswatch import StatWatch
from slurmlink.translate.status import pod_phase
from slurmlink.wire.interlink import PodStatus, parse_create
from tests.harness.memory_slurm import MemorySlurm
from tests.harness.pods import make_pod

STARTED = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)


def make_service(**config: object) -> tuple[PodService, MemorySlurm]:
    backend = MemorySlurm(first_job_id=7)
    settings = {"users": {"default": "nobody"}, "job_root": "/tmp/jobs", "watch_files": "off", **config}
    service = PodService(ApiConfig.model_validate(settings), backend)
    service.recovered.set()
    return service, backend


def phase(status: PodStatus) -> str:
    return pod_phase(status.containers, status.init_containers).phase


def test_every_change_of_a_pods_status_is_one_revision_and_removal_is_told() -> None:
    async def scenario() -> None:
        service, backend = make_service()
        pod = make_pod([{"name": "main", "command": ["true"]}], name="p", uid="u-1")
        await service.create(parse_create({"pod": pod}))
        delta, pods = await service.changes(None, 0)
        assert delta.reset and [p.uid for p in pods] == ["u-1"] and phase(pods[0]) == "Pending"
        cursor = delta.cursor

        await service.poller.poll_once()  # nothing changed: no revision
        assert service.registry.changes.cursor == cursor

        backend.start("7")
        backend.write_records("7", ContainerRecord(name="main", started_at=STARTED))
        await service.poller.poll_once()
        delta, pods = await service.changes(cursor, 0)
        assert not delta.reset and [phase(p) for p in pods] == ["Running"]

        backend.write_records("7", ContainerRecord(name="main", started_at=STARTED, finished_at=STARTED,
                                                   exit_code=0))
        backend.finish("7")
        await service.poller.poll_once()
        delta, pods = await service.changes(delta.cursor, 0)
        assert [phase(p) for p in pods] == ["Succeeded"]

        service.registry.forget("u-1")
        removed, pods = await service.changes(delta.cursor, 0)
        assert pods == [] and [(r.namespace, r.name, r.uid) for r in removed.removed] == [("default", "p", "u-1")]

    asyncio.run(scenario())


def test_files_showing_a_start_make_the_pod_running_without_a_slurm_query() -> None:
    async def scenario() -> None:
        service, backend = make_service()
        pod = make_pod([{"name": "main", "command": ["sleep", "9"]}], name="p", uid="u-1")
        await service.create(parse_create({"pod": pod}))
        cursor = service.registry.changes.cursor
        gate = asyncio.Event()
        list_jobs = backend.jobs

        async def held_list(*, fresh: bool = False):  # type: ignore[no-untyped-def]
            listing = await list_jobs(fresh=fresh)  # taken now: the job is pending
            await gate.wait()
            return listing

        backend.jobs = held_list  # type: ignore[method-assign]
        poll = asyncio.create_task(service.poller.poll_once())
        await asyncio.sleep(0.01)

        backend.start("7")
        backend.write_records("7", ContainerRecord(name="main", started_at=STARTED))
        calls = dict(backend.calls)
        await service.poller.refresh(["u-1"])
        assert {k for k, v in backend.calls.items() if v != calls.get(k)} == {"containers"}  # no SLURM query
        delta, pods = await service.changes(cursor, 0)
        assert [phase(p) for p in pods] == ["Running"]
        assert not service.poller.awaiting()  # started: no more hurried polls for it

        gate.set()
        await poll  # its list said pending, but was taken before the files showed the start
        assert phase(service.statuses([pod])[0]) == "Running"
        assert service.registry.changes.cursor == delta.cursor  # no flap told to anyone

        backend.jobs = list_jobs  # type: ignore[method-assign]
        await service.poller.poll_once()  # SLURM's own word now
        assert service.registry.entries["u-1"].job.state == "RUNNING"  # type: ignore[union-attr]
        assert service.registry.entries["u-1"].started_by_files == 0.0

    asyncio.run(scenario())


def test_an_older_read_of_the_records_never_replaces_a_newer_one() -> None:
    async def scenario() -> None:
        service, backend = make_service()
        pod = make_pod([{"name": "main", "command": ["sleep", "9"]}], name="p", uid="u-1")
        await service.create(parse_create({"pod": pod}))
        backend.start("7")
        backend.write_records("7", ContainerRecord(name="main", started_at=STARTED))
        gate = asyncio.Event()
        read = backend.containers

        async def slow_first_read(directory):  # type: ignore[no-untyped-def]
            records = await read(directory)
            await gate.wait()
            return records

        backend.containers = slow_first_read  # type: ignore[method-assign]
        poll = asyncio.create_task(service.poller.poll_once())  # reads "running", then waits
        await asyncio.sleep(0.01)
        backend.containers = read  # type: ignore[method-assign]
        backend.write_records("7", ContainerRecord(name="main", started_at=STARTED, finished_at=STARTED,
                                                   exit_code=0))
        await service.poller.refresh(["u-1"])  # reads "ended" and applies it
        gate.set()
        await poll
        assert service.registry.entries["u-1"].records["main"].exit_code == 0

    asyncio.run(scenario())


def test_polls_come_sooner_only_while_a_job_is_awaited() -> None:
    async def scenario() -> list[float]:
        service, backend = make_service(poll_interval=2.0, poll_interval_fast=0.25)
        poller = service.poller
        assert poller.next_delay() == 2.0  # nothing awaited
        pod = make_pod([{"name": "main", "command": ["sleep", "9"]}], name="p", uid="u-1")
        await service.create(parse_create({"pod": pod}))
        delays = [poller.next_delay() for _ in range(6)]
        backend.start("7")
        await poller.poll_once()
        delays.append(poller.next_delay())  # started: back to the interval at once
        return delays

    assert asyncio.run(scenario()) == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]


def test_a_burst_of_creates_restarts_the_hurried_polls_only_where_no_file_shows_the_starts() -> None:
    async def scenario(files_watched: bool) -> list[float]:
        service, backend = make_service(poll_interval=2.0, poll_interval_fast=0.25)
        poller = service.poller
        # as PodService sets it when it watches the job files with stat (not immediate)
        poller.watch = StatWatch(service.poller.refresh, 1.0) if files_watched else None
        delays = []
        for i in range(4):
            pod = make_pod([{"name": "main", "command": ["sleep", "9"]}], name=f"p{i}", uid=f"u-{i}")
            await service.create(parse_create({"pod": pod}))
            delays.append(poller.next_delay())  # a poll after each create
        for job_id in ("7", "8", "9", "10"):
            backend.start(job_id)
        await poller.poll_once()
        delays.append(poller.next_delay())  # nothing awaited: the interval, and the next create hurries again
        pod = make_pod([{"name": "main", "command": ["sleep", "9"]}], name="p9", uid="u-9")
        await service.create(parse_create({"pod": pod}))
        delays.append(poller.next_delay())
        return delays

    assert asyncio.run(scenario(files_watched=True)) == [0.25, 0.5, 1.0, 2.0, 2.0, 0.25]
    assert asyncio.run(scenario(files_watched=False)) == [0.25, 0.25, 0.25, 0.25, 2.0, 0.25]


def test_where_inotify_shows_the_starts_creates_do_not_hurry_the_polls_and_a_delete_still_does(
        tmp_path: Path) -> None:
    async def scenario() -> tuple[list[float], bool, bool]:
        service, _ = make_service(poll_interval=2.0, poll_interval_fast=0.25, watch_files="inotify",
                                  job_root=str(tmp_path))
        stat_service, _ = make_service(watch_files="stat", job_root=str(tmp_path))
        poller = service.poller
        delays = [poller.next_delay()]  # the poll at start: nothing awaited
        for i in range(3):
            pod = make_pod([{"name": "main", "command": ["sleep", "9"]}], name=f"p{i}", uid=f"u-{i}")
            await service.create(parse_create({"pod": pod}))
            delays.append(poller.next_delay())  # awaited, but the files will show the start: the interval
        await service.delete(pod)  # a cancelled pending job writes nothing: SLURM must tell, soon
        delays.append(poller.next_delay())
        assert service.watch is not None
        service.watch._full = True  # type: ignore[attr-defined]  # inotify's watch limit reached (ENOSPC)
        more = make_pod([{"name": "main", "command": ["sleep", "9"]}], name="p9", uid="u-9")
        await service.create(parse_create({"pod": more}))  # its files may not be watched: hurried again
        delays.append(poller.next_delay())
        await service.close()
        await stat_service.close()
        assert poller.watch is not None and stat_service.poller.watch is not None
        return delays, poller.watch.immediate, stat_service.poller.watch.immediate

    assert asyncio.run(scenario()) == ([2.0, 2.0, 2.0, 2.0, 0.25, 0.5], False, False)  # hurried already: backing off


def test_a_deleted_pods_job_is_awaited_until_it_ends() -> None:
    async def scenario() -> tuple[bool, bool]:
        service, backend = make_service()
        pod = make_pod([{"name": "main", "command": ["sleep", "9"]}], name="p", uid="u-1")
        await service.create(parse_create({"pod": pod}))
        backend.start("7")
        await service.poller.poll_once()
        await service.delete(pod)
        during = service.poller.awaiting()
        backend.finish("7", "CANCELLED")
        await service.poller.poll_once()
        await service.close()
        return during, service.poller.awaiting()

    assert asyncio.run(scenario()) == (True, False)
