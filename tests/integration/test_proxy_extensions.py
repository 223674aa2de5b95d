"""The proxy's `/slurmlink/v1/` extensions, service identities and the submission ledger, against the real
slurmrestd of the test SLURM, with jobs that write their own pod directories below a job root that is
root-owned, mode 1733 (like /tmp, without read).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.proxy.ledger import FILE_NAME
from slurmlink.translate import layout
from standins.checkin import CheckinStandin
from tests.harness.ports import free_port
from tests.harness.waiting import wait_until
from tests.integration.proxy_fixtures import ProxyServer, V, bearer, job_ids, job_state, proxy_config

LINES = 1000  # "line 1\n" ... "line 1000\n": 8893 bytes, three chunks
MAX_CHUNK = 4096
FULL_LOG = "".join(f"line {i}\n" for i in range(1, LINES + 1)).encode()


@dataclass
class World:
    cluster: DevCluster
    checkin: CheckinStandin
    job_root: Path
    state_dir: Path
    users_file: Path
    subjects: dict[str, str]

    def token(self, who: str) -> str:
        return self.checkin.mint(self.subjects[who])

    def config(self, **overrides: Any) -> Any:
        options: dict[str, Any] = {
            "files": {"job_root": str(self.job_root), "max_chunk_bytes": MAX_CHUNK, "follow_poll_seconds": 0.2},
            "service_identities": [{"issuer": self.checkin.issuer, "subject": self.subjects["service"],
                                    "account": self.cluster.users[2]}],
            "state_dir": str(self.state_dir),
            "signals": {"slurm_conf": str(self.cluster.conf_path),
                        # 24.11: its own scancel (22.05's cannot talk to its slurmctld)
                        "scancel": str(self.cluster.bin_dir / "scancel") if self.cluster.bin_dir else "scancel"},
        }
        options.update(overrides)
        return proxy_config(self.cluster, self.checkin, self.users_file, **options)


@pytest.fixture(scope="module")
def world(slurm_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    checkin = CheckinStandin().start()
    job_root = slurm_cluster.state_dir / f"proxy-jobs-{uuid.uuid4().hex[:8]}"
    job_root.mkdir()
    job_root.chmod(0o1733)  # anyone may make a directory here, nobody may list it, only owners remove theirs
    subjects = {who: checkin.new_subject() for who in ("alice", "bob", "service")}
    users_file = tmp_path_factory.mktemp("proxy-ext") / "users.txt"
    users_file.write_text(f"{checkin.issuer} {subjects['alice']} {slurm_cluster.users[0]}\n"
                          f"{checkin.issuer} {subjects['bob']} {slurm_cluster.users[1]}\n")
    state_dir = tmp_path_factory.mktemp("proxy-state")
    yield World(slurm_cluster, checkin, job_root, state_dir, users_file, subjects)
    checkin.stop()
    shutil.rmtree(job_root, ignore_errors=True)


@pytest.fixture(scope="module")
def proxy(world: World) -> Iterator[ProxyServer]:
    server = ProxyServer(world.config()).start()
    yield server
    server.stop()


# --- jobs that make their own pod directory -------------------------------------------------------------------

def pod_script(workdir: str, body: str) -> str:
    return (f"#!/bin/bash\nset -e\nmkdir -m 700 {workdir}\ncd {workdir}\nmkdir -m 700 logs status\n"
            f"date -u +%Y-%m-%dT%H:%M:%SZ > status/main.started\n{body}\n")


WRITE_LOG = f"for i in $(seq 1 {LINES}); do echo \"line $i\"; done > logs/main.log\necho 0 > status/main.exit"
SLOW_LOG = "for i in $(seq 1 10); do echo \"tick $i\" >> logs/main.log; sleep 0.2; done\necho 0 > status/main.exit"


def submit(proxy: ProxyServer, token: str, script: str, workdir: str, name: str | None = None) -> str:
    body = {"script": script, "job": {
        "name": name or f"slurmlink-{uuid.uuid4().hex[:12]}", "current_working_directory": workdir,
        "environment": {"PATH": "/usr/bin:/bin"}, "standard_output": "/dev/null", "time_limit": 10}}
    answer = httpx.post(f"{proxy.url}/slurm/{V}/job/submit", headers=bearer(token), json=body, timeout=30)
    assert answer.status_code == 200 and answer.json()["errors"] == [], answer.text
    return str(answer.json()["job_id"])


def new_workdir(world: World) -> str:
    return str(world.job_root / f"pod-{uuid.uuid4().hex[:12]}")


def wait_file(path: str) -> None:
    wait_until(lambda: os.path.exists(path), 60, path)


def get(proxy: ProxyServer, token: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{proxy.url}{path}", headers=bearer(token), params=params, timeout=30)


@pytest.fixture(scope="module")
def finished_job(world: World, proxy: ProxyServer) -> tuple[str, str]:
    """A job of alice's that logged LINES lines and exited 0."""
    workdir = new_workdir(world)
    job_id = submit(proxy, world.token("alice"), pod_script(workdir, WRITE_LOG), workdir)
    wait_file(f"{workdir}/status/main.exit")
    return job_id, workdir


@pytest.fixture(scope="module")
def bobs_job(world: World, proxy: ProxyServer) -> Iterator[tuple[str, str]]:
    """A running job of bob's (in the ledger) that has written a log and keeps running."""
    workdir = new_workdir(world)
    job_id = submit(proxy, world.token("bob"), pod_script(workdir, "echo secret > logs/main.log\nsleep 600"),
                    workdir)
    wait_file(f"{workdir}/logs/main.log")
    yield job_id, workdir
    httpx.delete(f"{proxy.url}/slurm/{V}/job/{job_id}", headers=bearer(world.token("bob")), timeout=30)


def assert_refused(answer: httpx.Response, status: int, words: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] and words in body["reason"], body


# --- whoami ---------------------------------------------------------------------------------------------------

def test_whoami(world: World, proxy: ProxyServer) -> None:
    answer = get(proxy, world.token("alice"), "/slurmlink/v1/whoami")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"user": world.cluster.users[0], "subject": world.subjects["alice"],
                             "issuer": world.checkin.issuer, "role": "user"}
    service = get(proxy, world.token("service"), "/slurmlink/v1/whoami").json()
    assert service == {"user": world.cluster.users[2], "subject": world.subjects["service"],
                       "issuer": world.checkin.issuer, "role": "service"}
    expired = get(proxy, world.checkin.mint(world.subjects["alice"], lifetime=-600), "/slurmlink/v1/whoami")
    assert_refused(expired, 401, "expired")
    unmapped = get(proxy, world.checkin.mint(), "/slurmlink/v1/whoami")  # in the VO, but no account
    assert unmapped.status_code == 401 and unmapped.json()["error"] == "NoAccountMapping"
    assert httpx.get(f"{proxy.url}/slurmlink/v1/whoami", timeout=30).status_code == 401


# --- status and logs ------------------------------------------------------------------------------------------

def test_status_of_a_finished_job(world: World, proxy: ProxyServer, finished_job: tuple[str, str]) -> None:
    job_id, workdir = finished_job
    answer = get(proxy, world.token("alice"), f"/slurmlink/v1/jobs/{job_id}/status")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["job_id"], body["user"], body["workdir"]) == (job_id, world.cluster.users[0], workdir)
    assert set(body["files"]) == {"main.started", "main.exit"} and body["files"]["main.exit"] == "0\n"
    record = layout.container_records(body["files"])["main"]
    assert record.exit_code == 0 and record.started_at is not None


def test_logs_offset_limit_tail(world: World, proxy: ProxyServer, finished_job: tuple[str, str]) -> None:
    job_id, _ = finished_job
    token = world.token("alice")
    logs = f"/slurmlink/v1/jobs/{job_id}/logs/main"
    first = get(proxy, token, logs)
    assert first.status_code == 200 and first.headers["content-type"] == "application/octet-stream"
    assert first.content == FULL_LOG[:MAX_CHUNK]  # never more than the configured chunk
    assert first.headers["x-slurmlink-log-size"] == str(len(FULL_LOG))
    read = first.content
    while len(read) < len(FULL_LOG):  # as a client pages through a log
        more = get(proxy, token, logs, offset=len(read)).content
        assert 0 < len(more) <= MAX_CHUNK
        read += more
    assert read == FULL_LOG
    assert get(proxy, token, logs, offset=10, limit_bytes=20).content == FULL_LOG[10:30]
    assert get(proxy, token, logs, offset=len(FULL_LOG)).content == b""
    assert get(proxy, token, logs, tail_lines=3).content == b"line 998\nline 999\nline 1000\n"
    assert get(proxy, token, logs, tail_lines=3, limit_bytes=9).content == b"line 998\n"
    assert get(proxy, token, logs, tail_lines=0).content == b""
    nothing = get(proxy, token, f"/slurmlink/v1/jobs/{job_id}/logs/other")
    assert (nothing.status_code, nothing.content, nothing.headers["x-slurmlink-log-size"]) == (200, b"", "0")
    for bad in ({"offset": "-1"}, {"limit_bytes": "0"}, {"follow": "yes"}, {"tail": "3"}):
        assert_refused(get(proxy, token, logs, **bad), 400, "")
    assert_refused(get(proxy, token, f"/slurmlink/v1/jobs/{job_id}/logs/.hidden"), 400, "not a container name")


def test_follow_streams_until_the_exit_record(world: World, proxy: ProxyServer) -> None:
    workdir = new_workdir(world)
    token = world.token("alice")
    job_id = submit(proxy, token, pod_script(workdir, SLOW_LOG), workdir)
    wait_file(f"{workdir}/logs/main.log")
    started = time.monotonic()
    with httpx.stream("GET", f"{proxy.url}/slurmlink/v1/jobs/{job_id}/logs/main", headers=bearer(token),
                      params={"follow": "true"}, timeout=60) as answer:
        assert answer.status_code == 200 and "x-slurmlink-log-size" not in answer.headers
        pieces = list(answer.iter_bytes())
    assert b"".join(pieces) == b"".join(f"tick {i}\n".encode() for i in range(1, 11))
    assert len(pieces) > 1, "new bytes arrive as they are written"
    assert time.monotonic() - started < 30
    # follow with a limit stops at the limit
    limited = get(proxy, token, f"/slurmlink/v1/jobs/{job_id}/logs/main", follow="true", limit_bytes=7)
    assert limited.content == b"tick 1\n"


def test_a_pending_job_has_no_files_yet(world: World, proxy: ProxyServer) -> None:
    workdir = new_workdir(world)
    token = world.token("alice")
    job_id = submit(proxy, token, "#!/bin/bash\nsleep 600\n", workdir)  # never makes its directory
    try:
        status = get(proxy, token, f"/slurmlink/v1/jobs/{job_id}/status")
        assert status.status_code == 200 and status.json()["files"] == {}
        log = get(proxy, token, f"/slurmlink/v1/jobs/{job_id}/logs/main")
        assert (log.status_code, log.content) == (200, b"")
    finally:
        httpx.delete(f"{proxy.url}/slurm/{V}/job/{job_id}", headers=bearer(token), timeout=30)


# --- what is refused ------------------------------------------------------------------------------------------

def test_a_user_cannot_read_another_users_job(world: World, proxy: ProxyServer, bobs_job: tuple[str, str]) -> None:
    job_id, workdir = bobs_job
    alice = world.token("alice")
    for path in (f"/slurmlink/v1/jobs/{job_id}/status", f"/slurmlink/v1/jobs/{job_id}/logs/main"):
        answer = get(proxy, alice, path)
        assert_refused(answer, 403, "belongs to another user")
        assert b"secret" not in answer.content
    # the same for a job of bob's that did not go through the proxy's ledger: slurmrestd tells the owner
    plain = submit(proxy, world.token("bob"), "#!/bin/bash\nsleep 600\n", new_workdir(world), name="plain-bob")
    try:
        assert_refused(get(proxy, alice, f"/slurmlink/v1/jobs/{plain}/status"), 403, "belongs to another user")
    finally:
        httpx.delete(f"{proxy.url}/slurm/{V}/job/{plain}", headers=bearer(world.token("bob")), timeout=30)
    assert job_state(world.cluster, job_id) == ("RUNNING", world.cluster.users[1])
    assert Path(workdir, "logs", "main.log").read_bytes() == b"secret\n"
    assert get(proxy, world.token("bob"), f"/slurmlink/v1/jobs/{job_id}/logs/main").content == b"secret\n"


def test_a_job_in_another_users_directory_is_refused(world: World, proxy: ProxyServer,
                                                     bobs_job: tuple[str, str]) -> None:
    # alice's own job, whose working directory is bob's pod directory
    _, bobs_dir = bobs_job
    job_id = submit(proxy, world.token("alice"), "#!/bin/bash\nsleep 600\n", bobs_dir, name="plain-alice")
    try:
        answer = get(proxy, world.token("alice"), f"/slurmlink/v1/jobs/{job_id}/logs/main")
        assert_refused(answer, 403, "does not belong to the job's user")
        assert b"secret" not in answer.content
    finally:
        httpx.delete(f"{proxy.url}/slurm/{V}/job/{job_id}", headers=bearer(world.token("alice")), timeout=30)


@pytest.mark.parametrize("plant", [
    "ln -s /etc/shadow logs/main.log",  # a symlinked log file
    "rm -r logs && ln -s /etc logs",  # a symlinked directory
])
def test_a_symlink_in_the_workdir_is_refused(world: World, proxy: ProxyServer, plant: str) -> None:
    workdir = new_workdir(world)
    token = world.token("alice")
    job_id = submit(proxy, token, pod_script(workdir, f"{plant}\necho 0 > status/main.exit"), workdir)
    wait_file(f"{workdir}/status/main.exit")
    answer = get(proxy, token, f"/slurmlink/v1/jobs/{job_id}/logs/main")
    assert_refused(answer, 403, "symlink")
    assert b"root:" not in answer.content


def test_a_symlinked_status_directory_is_refused(world: World, proxy: ProxyServer) -> None:
    workdir = new_workdir(world)
    token = world.token("alice")
    job_id = submit(proxy, token, pod_script(workdir, "rm -r status && ln -s /etc status"), workdir)
    wait_until(lambda: os.path.islink(f"{workdir}/status"), 60, "the planted symlink")
    assert_refused(get(proxy, token, f"/slurmlink/v1/jobs/{job_id}/status"), 403, "symlink")


@pytest.mark.parametrize("where", ["/tmp", "{root}/a/b", "{root}"])
def test_a_workdir_outside_the_job_root_is_refused(world: World, proxy: ProxyServer, where: str) -> None:
    token = world.token("alice")
    job_id = submit(proxy, token, "#!/bin/bash\ntrue\n", where.format(root=world.job_root))
    for path in (f"/slurmlink/v1/jobs/{job_id}/status", f"/slurmlink/v1/jobs/{job_id}/logs/main"):
        assert_refused(get(proxy, token, path), 403, "directly below the job root")


def test_an_unknown_job_is_404(world: World, proxy: ProxyServer) -> None:
    answer = get(proxy, world.token("alice"), "/slurmlink/v1/jobs/999999999/status")
    assert answer.status_code == 404
    assert answer.json() == {"error": "NotFound", "reason": "job 999999999 is not known to SLURM (any more)"}


def test_extensions_are_404_without_files(world: World, finished_job: tuple[str, str], tmp_path: Path) -> None:
    server = ProxyServer(world.config(files=None, service_identities=[], state_dir=str(tmp_path))).start()
    try:
        token = world.token("alice")
        assert get(server, token, "/slurmlink/v1/whoami").status_code == 200
        assert_refused(get(server, token, f"/slurmlink/v1/jobs/{finished_job[0]}/status"), 404, "files")
    finally:
        server.stop()


# --- the service identity -------------------------------------------------------------------------------------

def test_service_identity_reads_the_queue_but_cannot_submit(world: World, proxy: ProxyServer) -> None:
    service = world.token("service")
    jobs = get(proxy, service, f"/slurm/{V}/jobs")
    assert jobs.status_code == 200 and "jobs" in jobs.json()
    assert get(proxy, service, f"/slurm/{V}/ping/").status_code == 200
    before = job_ids(world.cluster)
    workdir = new_workdir(world)
    body = {"script": "#!/bin/bash\ntrue\n", "job": {"name": "slurmlink-by-service", "environment": {"A": "b"},
                                                     "current_working_directory": workdir}}
    answer = httpx.post(f"{proxy.url}/slurm/{V}/job/submit", headers=bearer(service), json=body, timeout=30)
    assert_refused(answer, 403, "a service identity may only")
    assert not job_ids(world.cluster) - before


def test_service_identity_reads_and_cancels_ledger_jobs_as_the_owner(world: World, proxy: ProxyServer) -> None:
    workdir = new_workdir(world)
    job_id = submit(proxy, world.token("bob"), pod_script(workdir, "echo hello > logs/main.log\nsleep 600"),
                    workdir)
    wait_file(f"{workdir}/logs/main.log")
    service = world.token("service")
    status = get(proxy, service, f"/slurmlink/v1/jobs/{job_id}/status")
    assert status.status_code == 200 and status.json()["user"] == world.cluster.users[1]
    assert get(proxy, service, f"/slurmlink/v1/jobs/{job_id}/logs/main").content == b"hello\n"
    cancel = httpx.delete(f"{proxy.url}/slurm/{V}/job/{job_id}", headers=bearer(service), timeout=30)
    assert cancel.status_code == 200 and cancel.json()["errors"] == [], cancel.text
    # the service's own account could not have cancelled bob's job: it was done as bob
    wait_until(lambda: job_state(world.cluster, job_id) == ("CANCELLED", world.cluster.users[1]), 30,
               "bob's job to be cancelled")


def test_service_identity_cannot_touch_jobs_outside_the_ledger(world: World, proxy: ProxyServer) -> None:
    workdir = new_workdir(world)
    bob = world.token("bob")
    job_id = submit(proxy, bob, pod_script(workdir, "echo private > logs/main.log\nsleep 600"), workdir,
                    name="plain-not-in-ledger")
    try:
        service = world.token("service")
        cancel = httpx.delete(f"{proxy.url}/slurm/{V}/job/{job_id}", headers=bearer(service), timeout=30)
        assert_refused(cancel, 403, "not submitted through this proxy")
        for path in (f"/slurmlink/v1/jobs/{job_id}/status", f"/slurmlink/v1/jobs/{job_id}/logs/main"):
            assert_refused(get(proxy, service, path), 403, "not submitted through this proxy")
        assert job_state(world.cluster, job_id) in {("PENDING", world.cluster.users[1]),
                                                     ("RUNNING", world.cluster.users[1])}
    finally:
        httpx.delete(f"{proxy.url}/slurm/{V}/job/{job_id}", headers=bearer(bob), timeout=30)


def test_the_ledger_survives_a_restart_and_a_torn_line(world: World, finished_job: tuple[str, str]) -> None:
    job_id, _ = finished_job
    ledger = world.state_dir / FILE_NAME
    assert oct(ledger.stat().st_mode & 0o777) == "0o600"
    with ledger.open("ab") as fh:
        # a crash in the middle of an append (of a job id no test SLURM reaches: 77 was a real one on 24.11)
        fh.write(b'{"job_id": "987654321", "user": "sltes')
    server = ProxyServer(world.config(listen={"host": "127.0.0.1", "port": free_port()})).start()
    try:
        answer = get(server, world.token("service"), f"/slurmlink/v1/jobs/{job_id}/logs/main", tail_lines=1)
        assert (answer.status_code, answer.content) == (200, b"line 1000\n")
        # appends after the torn line are whole lines again
        workdir = new_workdir(world)
        new = submit(server, world.token("alice"), pod_script(workdir, "echo 0 > status/main.exit"), workdir)
        assert get(server, world.token("service"), f"/slurmlink/v1/jobs/{new}/status").status_code == 200
    finally:
        server.stop()
    lines = ledger.read_bytes().splitlines()
    assert all(line.startswith(b"{") and line.endswith(b"}") for line in lines)
    assert not any(b'"987654321"' in line for line in lines)


def test_statuses_of_many_jobs_in_one_request(world: World, proxy: ProxyServer, finished_job: tuple[str, str],
                                              bobs_job: tuple[str, str]) -> None:
    mine, theirs = finished_job[0], bobs_job[0]
    answer = get(proxy, world.token("alice"), "/slurmlink/v1/statuses", jobs=f"{mine},{theirs},999999999")
    assert answer.status_code == 200, answer.text
    jobs = answer.json()["jobs"]
    assert jobs[mine]["user"] == world.cluster.users[0] and jobs[mine]["files"]["main.exit"] == "0\n"
    assert jobs[theirs]["error"] == "Forbidden" and "files" not in jobs[theirs]  # bob's stay bob's
    assert jobs["999999999"]["error"] == "NotFound"
    for bad in ("", "1,,2", "1;id", ",".join(["1"] * 501)):
        assert_refused(get(proxy, world.token("alice"), "/slurmlink/v1/statuses", jobs=bad), 400, "jobs=")
    service = get(proxy, world.token("service"), "/slurmlink/v1/statuses", jobs=f"{mine},{theirs}")
    assert service.json()["jobs"][theirs]["user"] == world.cluster.users[1]  # both in the ledger


# --- signalling only the batch script (graceful stop) ----------------------------------------------------------

TRAPPING = "trap 'echo got TERM > logs/main.log; echo 0 > status/main.exit; exit 0' TERM\necho up > logs/main.log\n" \
           "sleep 600 & wait"


def signal(proxy: ProxyServer, token: str, job_id: str, sig: str = "TERM") -> httpx.Response:
    return httpx.post(f"{proxy.url}/slurmlink/v1/jobs/{job_id}/signal", params={"signal": sig},
                      headers=bearer(token), timeout=30)


def test_the_owner_signals_only_the_batch_script(world: World, proxy: ProxyServer) -> None:
    workdir = new_workdir(world)
    job_id = submit(proxy, world.token("alice"), pod_script(workdir, TRAPPING), workdir)
    wait_file(f"{workdir}/logs/main.log")
    wait_until(lambda: job_state(world.cluster, job_id)[0] == "RUNNING", 30, "the job to run")
    answer = signal(proxy, world.token("alice"), job_id)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"job_id": job_id, "signal": "TERM", "user": world.cluster.users[0]}
    wait_file(f"{workdir}/status/main.exit")
    # The script's trap ran and it ended by itself: COMPLETED, not cancelled.
    wait_until(lambda: job_state(world.cluster, job_id)[0] == "COMPLETED", 30, "the job to complete")
    assert Path(workdir, "logs", "main.log").read_text() == "got TERM\n"


def test_signals_to_other_users_jobs_and_outside_the_ledger_are_refused(world: World, proxy: ProxyServer,
                                                                        bobs_job: tuple[str, str]) -> None:
    job_id, _ = bobs_job
    assert_refused(signal(proxy, world.token("alice"), job_id), 403, "belongs to another user")
    assert_refused(signal(proxy, world.token("bob"), job_id, "TERM; id"), 400, "not a signal")
    assert job_state(world.cluster, job_id) == ("RUNNING", world.cluster.users[1])
    workdir = new_workdir(world)
    plain = submit(proxy, world.token("bob"), pod_script(workdir, "sleep 600"), workdir, name="plain-signal")
    try:
        assert_refused(signal(proxy, world.token("service"), plain), 403, "not submitted through this proxy")
        assert job_state(world.cluster, plain)[0] in ("PENDING", "RUNNING")
    finally:
        httpx.delete(f"{proxy.url}/slurm/{V}/job/{plain}", headers=bearer(world.token("bob")), timeout=30)


def test_signals_are_404_without_a_signals_section(world: World, finished_job: tuple[str, str]) -> None:
    server = ProxyServer(world.config(signals=None)).start()
    try:
        assert_refused(signal(server, world.token("alice"), finished_job[0]), 404, "no `signals` section")
    finally:
        server.stop()


def test_open_follows_per_user_are_bounded(world: World, bobs_job: tuple[str, str]) -> None:
    server = ProxyServer(world.config(files={"job_root": str(world.job_root), "max_follows_per_user": 1,
                                             "follow_poll_seconds": 0.2})).start()
    job_id, _ = bobs_job
    url = f"{server.url}/slurmlink/v1/jobs/{job_id}/logs/main"
    try:
        with httpx.Client(timeout=30) as client:
            with client.stream("GET", url, params={"follow": "true"}, headers=bearer(world.token("bob"))) as first:
                assert first.status_code == 200
                chunks = first.iter_bytes()  # kept: a dropped iterator would close the stream
                assert next(chunks) == b"secret\n"  # the follow is open and counted
                second = client.get(url, params={"follow": "true"}, headers=bearer(world.token("bob")))
                assert_refused(second, 429, "already follows 1 logs")
                assert second.headers["retry-after"] == "5"
                assert client.get(url, headers=bearer(world.token("bob"))).content == b"secret\n"  # no follow: fine
            # the first one closed: following works again
            wait_until(lambda: _follow_opens(client, url, world.token("bob")), 10, "a follow to be allowed again")
    finally:
        server.stop()


def _follow_opens(client: httpx.Client, url: str, token: str) -> bool:
    with client.stream("GET", url, params={"follow": "true"}, headers=bearer(token)) as answer:
        return answer.status_code == 200
