"""The SLURM commands' argv and parsing, against output captured from SLURM 22.05.8 on this machine."""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slurmlink.core import states
from slurmlink.core.records import JobInfo, PodDirectory
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.cli import CliBackend, CliConfig
from slurmlink.slurm.commands import SEP, epoch, sacct, sbatch, scancel, sinfo, squeue
from slurmlink.slurm.runner import CommandResult, Runner, is_transient, slurm_message
from slurmlink.translate.job import BatchJob

# `squeue -h -a --states=all -O <squeue.format_option()>` with SLURM_TIME_FORMAT=%s (lines abridged).
SQUEUE_OUT = "".join(
    SEP.join(fields) + "\n"
    for fields in [
        ["4", "x-exit3", "sltest3", "FAILED", "NonZeroExitCode", "768", "1795929871", "1795929871",
         "1795929871", "/tmp/slx", "(null)"],
        ["5", "x-sig", "sltest3", "FAILED", "JobLaunchFailure", "9", "1795929871", "1795929872", "1795929872",
         "/tmp/slx", "a b|c"],
        ["6", "x-sleep", "sltest3", "RUNNING", "None", "0", "1795929871", "1795929872", "NONE", "/tmp/slx",
         "(null)"],
        ["2", "wrap", "sltest1", "COMPLETED", "None", "0", "1795929853", "1795929854", "1795929854",
         "/var/lib/slurmlink/dev-cluster/jobs/t1", "(null)"],
        ["37", "x-sleep2", "sltest3", "PENDING", "BeginTime", "0", "1795930063", "1795933663", "NONE",
         "/tmp/slx", ""],
        ["38", "slurmlink-pend ing", "sltest3", "PENDING", "BeginTime", "0", "1795930258", "1795933858",
         "NONE", "/tmp/slx", "ns/pod name|x"],
        ["8", "x", "sltest3", "FAILED", "BadConstraints", "1", "1795929897", "1795929897", "1795929897",
         "/tmp/slx", "(null)"],
    ]
)  # fmt: skip
SINFO_OUT = "node1\x1fidle\x1f0/16/0/16\x1f23081\x1f0\x1f(null)\x1f(null)\x1f\n"
SBATCH_BAD_PARTITION = (
    "sbatch: error: invalid partition specified: nope\n"
    "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
)
SBATCH_BAD_MEMORY = (
    "sbatch: error: Memory specification can not be satisfied\n"
    "sbatch: error: Batch job submission failed: Requested node configuration is not available\n"
)
SBATCH_NOT_A_SCRIPT = (
    "sbatch: error: This does not look like a batch script.  The first\n"
    "sbatch: error: line must start with #! followed by the path to an interpreter.\n"
    "sbatch: error: For instance: #!/bin/sh\n"
)
SBATCH_NO_CONTROLLER = (
    "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n"
)


def result(out: str = "", err: str = "", rc: int = 0) -> CommandResult:
    return CommandResult(("cmd",), rc, out.encode(), err.encode())


def make_job(**changes: object) -> BatchJob:
    fields: dict[str, object] = {
        "name": "slurmlink-1234", "comment": "ns/pod", "workdir": "/jobs/p", "script": "#!/bin/bash\ntrue\n",
        "stdout": "/jobs/p/job.out", "cpus_per_task": 2, "memory_mb": 512,
    }  # fmt: skip
    fields.update(changes)
    return BatchJob(**fields)  # type: ignore[arg-type]


# ---- squeue ---------------------------------------------------------------------------------------------


def test_squeue_argv_uses_width_zero_fields_with_separator() -> None:
    argv = squeue.argv("/usr/bin/squeue")
    assert argv[:4] == ["/usr/bin/squeue", "-h", "-a", "--states=all"]
    assert argv[4] == "-O"
    assert argv[5].split(",") == [f"{f}:0{SEP}" for f in squeue.FIELDS[:-1]] + ["Comment:0"]
    assert squeue.ENV == {"SLURM_TIME_FORMAT": "%s", "TZ": ":/etc/localtime"}


def test_squeue_parse_real_output() -> None:
    jobs = {job.job_id: job for job in squeue.parse(SQUEUE_OUT)}
    assert len(jobs) == 7
    exit3 = jobs["4"]
    assert (exit3.state, exit3.reason) == ("FAILED", "NonZeroExitCode")
    assert (exit3.exit_code, exit3.signal) == (3, None)
    assert exit3.end_time == datetime.fromtimestamp(1795929871, UTC)
    assert exit3.comment == "" and exit3.workdir == "/tmp/slx" and exit3.user == "sltest3"
    killed = jobs["5"]
    assert (killed.exit_code, killed.signal, killed.comment) == (None, 9, "a b|c")
    running = jobs["6"]
    assert (running.state, running.reason, running.exit_code, running.end_time) == ("RUNNING", "", None, None)
    assert running.start_time == datetime.fromtimestamp(1795929872, UTC)
    assert jobs["2"].exit_code == 0 and jobs["2"].signal is None
    pending = jobs["38"]
    assert pending.name == "slurmlink-pend ing" and pending.comment == "ns/pod name|x"
    # A pending job's StartTime is a forecast (its --begin), not a start.
    assert pending.start_time is None and pending.end_time is None and pending.exit_code is None
    assert pending.submit_time == datetime.fromtimestamp(1795930258, UTC)
    assert jobs["37"].comment == ""
    # A refused sbatch (--mem too large) leaves a FAILED record whose raw status 1 reads as signal 1.
    assert (jobs["8"].reason, jobs["8"].signal) == ("BadConstraints", 1)


# 24.11 prints the exit code column as sacct does, "code:signal" (measured, issue 11).
SQUEUE_2411_OUT = "".join(
    SEP.join(fields) + "\n"
    for fields in [
        ["11", "slurmlink-x", "sltest1", "FAILED", "NonZeroExitCode", "7:0", "1795929871", "1795929871",
         "1795929872", "/w", "ns/p"],
        ["12", "slurmlink-y", "sltest1", "CANCELLED", "None", "0:15", "1795929871", "1795929871",
         "1795929872", "/w", "ns/q"],
        ["13", "slurmlink-z", "sltest1", "COMPLETED", "None", "0:0", "1795929871", "1795929871",
         "1795929872", "/w", "ns/r"],
        ["14", "slurmlink-r", "sltest1", "RUNNING", "None", "0:0", "1795929871", "1795929871", "1795933471",
         "/w", "ns/s"],
    ]
)  # fmt: skip


def test_squeue_parse_2411_code_signal_exit_codes() -> None:
    jobs = {job.job_id: job for job in squeue.parse(SQUEUE_2411_OUT, "slurmlink-")}
    assert len(jobs) == 4
    assert (jobs["11"].exit_code, jobs["11"].signal) == (7, None)
    assert (jobs["12"].exit_code, jobs["12"].signal) == (None, 15)
    assert (jobs["13"].exit_code, jobs["13"].signal) == (0, None)
    assert (jobs["14"].state, jobs["14"].exit_code) == ("RUNNING", None)


def test_squeue_parse_reuses_the_jobs_of_unchanged_lines_and_reads_changed_ones_again() -> None:
    reuse: dict[str, JobInfo] = {}
    first = squeue.parse(SQUEUE_2411_OUT, "slurmlink-", reuse=reuse)
    assert first == squeue.parse(SQUEUE_2411_OUT, "slurmlink-")  # the same answer as without
    lines = SQUEUE_2411_OUT.splitlines(keepends=True)
    # Job 14 ends, job 11 leaves the controller's memory, nothing else changes.
    ended = lines[3].replace("RUNNING", "COMPLETED")
    second = {job.job_id: job for job in squeue.parse("".join([lines[1], lines[2], ended]), "slurmlink-",
                                                      reuse=reuse)}
    by_id = {job.job_id: job for job in first}
    assert second["12"] is by_id["12"] and second["13"] is by_id["13"]  # unchanged lines: not parsed again
    assert (second["14"].state, second["14"].exit_code) == ("COMPLETED", 0)
    assert set(second) == {"12", "13", "14"} and len(reuse) == 3  # what left the list is not kept


def test_squeue_parse_empty_and_garbage() -> None:
    assert squeue.parse("") == []
    assert squeue.parse("\n") == []
    with pytest.raises(SlurmError, match="cannot read squeue"):
        squeue.parse("JOBID PARTITION NAME USER ST\n 1 debug wrap u R 0:01 1 n1\n")


def test_squeue_skips_a_broken_line_among_good_ones() -> None:
    # A foreign job whose name holds a newline splits into two unreadable lines; the rest still count.
    broken = "9" + SEP + "bad\nname" + SEP + "u\n"
    jobs = squeue.parse(broken + SQUEUE_OUT)
    assert {j.job_id for j in jobs} == {"4", "5", "6", "2", "37", "38", "8"}


def test_wait_status_and_times() -> None:
    assert states.decode_wait_status(768) == (3, None)
    assert states.decode_wait_status(0) == (0, None)
    assert states.decode_wait_status(15) == (None, 15)
    assert states.decode_wait_status(9 | 0x80) == (None, 9)  # core dumped
    assert epoch("N/A") is None and epoch("NONE") is None and epoch("Unknown") is None and epoch("0") is None
    assert epoch("1795929871") == datetime.fromtimestamp(1795929871, UTC)


# ---- sbatch ---------------------------------------------------------------------------------------------


def test_sbatch_argv_one_item_per_option() -> None:
    job = make_job(
        time_limit_minutes=30, gres="gpu:2", partition="debug", extra_options=("--qos=normal", "--exclusive"),
        environment={"B": "x,y=z", "A": "1"},
    )  # fmt: skip
    argv = sbatch.argv(job, "/usr/bin/sbatch")
    assert argv == [
        "/usr/bin/sbatch", "--parsable", "--qos=normal", "--exclusive",
        "--job-name=slurmlink-1234", "--comment=ns/pod", "--chdir=/jobs/p", "--output=/jobs/p/job.out",
        "--cpus-per-task=2", "--mem=512M", "--export=A,B", "--time=30", "--gres=gpu:2", "--partition=debug",
    ]  # fmt: skip
    assert sbatch.environment(job) == {"B": "x,y=z", "A": "1"}


def test_sbatch_argv_without_environment_exports_none() -> None:
    argv = sbatch.argv(make_job(comment="ns/name with space"))
    assert "--export=NONE" in argv and "--comment=ns/name with space" in argv
    assert not any(a.startswith(("--time", "--gres", "--partition")) for a in argv)


@pytest.mark.parametrize("option", ["--export=ALL", "--expo=ALL", "--out=/etc/x", "-o/x", "--uid=0", "--e=x"])
def test_sbatch_refuses_options_that_change_identity_files_or_env(option: str) -> None:
    with pytest.raises(SlurmError, match="not allowed"):
        sbatch.argv(make_job(extra_options=(option,)))


@pytest.mark.parametrize("name", ["SBATCH_PARTITION", "SLURM_CONF", "1X", "A-B", "A=B", ""])
def test_sbatch_refuses_environment_names(name: str) -> None:
    with pytest.raises(SlurmError):
        sbatch.environment(make_job(environment={name: "v"}))


def test_sbatch_parse_job_id() -> None:
    assert sbatch.parse(result("123\n")) == "123"
    assert sbatch.parse(result("124;cluster\n", "sbatch: warning: something\n")) == "124"
    with pytest.raises(SlurmError, match="no job id"):
        sbatch.parse(result("Submitted batch job 5\n"))


@pytest.mark.parametrize(
    ("stderr", "message", "transient"),
    [
        (SBATCH_BAD_PARTITION, "invalid partition specified: nope", False),
        (SBATCH_BAD_MEMORY, "Memory specification can not be satisfied", False),
        ("sbatch: error: Invalid --time specification\n", "Invalid --time specification", False),
        (SBATCH_NO_CONTROLLER,
         "Batch job submission failed: Unable to contact slurm controller (connect failure)", True),
        (SBATCH_NOT_A_SCRIPT, "This does not look like a batch script.  The first; line must start with #! "
         "followed by the path to an interpreter.; For instance: #!/bin/sh", False),
    ],
)  # fmt: skip
def test_sbatch_errors_carry_slurms_words(stderr: str, message: str, transient: bool) -> None:
    with pytest.raises(SlurmError) as info:
        sbatch.parse(result(err=stderr, rc=1))
    assert info.value.message == message
    assert info.value.transient is transient


# ---- scancel, sacct -------------------------------------------------------------------------------------


def test_scancel_argv() -> None:
    assert scancel.argv("42") == ["scancel", "42"]
    assert scancel.argv("42", "TERM", "/bin/scancel") == ["/bin/scancel", "--signal=TERM", "--batch", "42"]
    assert scancel.argv("42", "TERM", only_state="RUNNING") == [
        "scancel", "--signal=TERM", "--batch", "--state=RUNNING", "42"]
    assert scancel.argv("42", only_state="PENDING") == ["scancel", "--state=PENDING", "42"]
    for bad_id in ("-u", "42 43", "", "1,2"):
        with pytest.raises(SlurmError):
            scancel.argv(bad_id)
    with pytest.raises(SlurmError):
        scancel.argv("42", "TERM --full")


def test_scancel_parse() -> None:
    scancel.parse(result())  # 22.05: an unknown or finished job exits 0 silently
    kill_error = "scancel: error: Kill job error on job id 4: "
    scancel.parse(result(err=kill_error + "Job/step already completing or completed\n", rc=1))
    with pytest.raises(SlurmError, match="Access/permission denied") as info:
        scancel.parse(result(err=kill_error + "Access/permission denied\n", rc=210))
    assert not info.value.transient


def test_sacct_argv() -> None:
    argv = sacct.argv(["3", "5"], "/usr/bin/sacct")
    assert argv[:5] == ["/usr/bin/sacct", "-X", "-a", "-n", "-P"]
    assert f"--delimiter={SEP}" in argv and argv[-1] == "--jobs=3,5"
    with pytest.raises(SlurmError):
        sacct.argv(["3", "--starttime=now"])


def test_sacct_recent_argv_asks_every_user_over_a_window() -> None:
    argv = sacct.recent_argv(86400, "/usr/bin/sacct")
    assert argv[0] == "/usr/bin/sacct" and "-a" in argv and "-X" in argv
    assert argv[-2:] == ["--starttime=now-86400", "--endtime=now"]


def test_sacct_disabled_is_recognised() -> None:
    with pytest.raises(sacct.AccountingDisabled):
        sacct.parse(result(err="Slurm accounting storage is disabled\n", rc=1))


def test_sacct_parse_lines() -> None:
    rows = [
        ["12", "slurmlink-a", "sltest1", "CANCELLED by 1001", "None", "0:15", "1795929871", "1795929872",
         "1795929900", "/jobs/a", "ns/a"],
        ["13", "slurmlink-b", "sltest2", "FAILED", "NonZeroExitCode", "3:0", "1795929871", "1795929872",
         "1795929873", "/jobs/b", ""],
        ["14", "slurmlink-c", "sltest2", "PENDING", "Priority", "0:0", "1795929871", "Unknown", "Unknown",
         "/jobs/c", ""],
    ]  # fmt: skip
    jobs = sacct.parse(result("".join(SEP.join(r) + "\n" for r in rows)))
    assert (jobs["12"].state, jobs["12"].signal, jobs["12"].exit_code) == ("CANCELLED", 15, None)
    assert (jobs["13"].state, jobs["13"].exit_code, jobs["13"].comment) == ("FAILED", 3, "")
    assert jobs["14"].start_time is None and jobs["14"].exit_code is None
    assert sacct.parse(result("")) == {}
    with pytest.raises(SlurmError) as info:
        sacct.parse(result(err="sacct: error: Problem talking to the database: Connection refused\n", rc=1))
    assert info.value.transient


# ---- sinfo ----------------------------------------------------------------------------------------------


def test_sinfo_real_output() -> None:
    assert sinfo.argv() == ["sinfo", "-h", "-N", "-O", ",".join(f"{f}:0{SEP}" for f in sinfo.FIELDS)]
    capacity = sinfo.parse(SINFO_OUT)
    assert (capacity.cpus, capacity.memory_mb, capacity.gpus) == (16, 23081, {})


def node(name: str, state: str, cpus: str, mem: str = "1000", alloc: str = "0", gres: str = "(null)",
         used: str = "(null)") -> str:  # fmt: skip
    return SEP.join([name, state, cpus, mem, alloc, gres, used, ""]) + "\n"


def test_sinfo_counts_usable_nodes_once_with_gpus() -> None:
    gres, used = "gpu:a100:4(S:0-1),mps:400", "gpu:a100:1(IDX:0),mps:0"
    out = (
        node("a", "mixed", "4/12/0/16", "64000", "16000", gres, used)
        # the same node again, listed for a second partition
        + node("a", "mixed", "4/12/0/16", "64000", "16000", "gpu:a100:4(S:0-1)", "gpu:a100:1(IDX:0)")
        + node("b", "idle+drain", "0/0/8/8", "32000")
        + node("c", "down*", "0/0/8/8", "32000")
        + node("d", "allocated", "8/0/0/8", "32000", "32000", "gpu:2", "gpu:2")
        + node("e", "idle", "0/8/0/8", "8000", "0", "gpu:(null):2", "gpu:(null):0")
        + node("f", "idle*", "0/8/0/8", "8000")
        + node("g", "idle+maint+reserved", "0/8/0/8", "8000")
    )  # fmt: skip
    capacity = sinfo.parse(out)
    assert capacity.cpus == 12 + 8
    assert capacity.memory_mb == 48000 + 8000
    assert capacity.gpus == {"gpu": 3 + 2}


@pytest.mark.parametrize("out", ["", "\n", "node1 idle 0/16/0/16 23081\n", node("a", "idle", "16")])
def test_sinfo_never_reports_zero_by_accident(out: str) -> None:
    with pytest.raises(SlurmError):
        sinfo.parse(out)


# ---- runner ---------------------------------------------------------------------------------------------


def test_slurm_message_and_transient() -> None:
    assert slurm_message("squeue: error: Invalid user: x\n") == "Invalid user: x"
    assert slurm_message("sbatch: warning: w\nsbatch: error: e\n") == "e"
    assert is_transient("squeue: error: Unable to contact slurm controller (connect failure)")
    assert is_transient("sbatch: error: Batch job submission failed: Socket timed out on send/recv operation")
    assert not is_transient(SBATCH_BAD_PARTITION)


def test_runner_clean_env_stdin_and_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SQUEUE_FORMAT", "%all")  # the service's env must not reach the commands
    runner = Runner(env={"SLURM_CONF": "/x/slurm.conf"})
    res = asyncio.run(runner.run(["/bin/sh", "-c", "cat; env"], stdin=b"in\n", env={"EXTRA": "1"}))
    assert res.ok
    lines = res.out.splitlines()
    assert lines[0] == "in"
    assert "SLURM_CONF=/x/slurm.conf" in lines and "EXTRA=1" in lines
    assert not any(line.startswith("SQUEUE_FORMAT=") for line in lines)
    asyncio.run(runner.run(["/bin/sh", "-c", "exit 3"]))
    assert runner.counts["sh"] == 2


def test_runner_timeout_kills_the_group() -> None:
    runner = Runner(timeout=0.3)
    marker = f"/tmp/slurmlink-runner-{os.getpid()}"
    started = time.monotonic()
    with pytest.raises(SlurmError) as info:
        # The grandchild would write the marker after 1 s if the process group survived.
        asyncio.run(runner.run(["/bin/sh", "-c", f"(sleep 1; touch {marker}) & sleep 5"]))
    assert info.value.transient and "0.3" in info.value.message
    assert time.monotonic() - started < 3
    time.sleep(1.3)
    assert not os.path.exists(marker)


def test_runner_user(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = Runner()
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert runner.argv_for(["squeue"], None) == ["squeue"]
    assert runner.argv_for(["squeue"], me) == ["squeue"]
    if os.geteuid() == 0:
        assert runner.argv_for(["sbatch"], "nobody") == ["/usr/sbin/runuser", "-u", "nobody", "--", "sbatch"]
        with pytest.raises(SlurmError, match="no local user"):
            runner.argv_for(["sbatch"], "no-such-user-xyz")
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    service = pwd.struct_passwd(("svc", "x", 4242, 4242, "", "/", "/bin/sh"))
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: service)
    with pytest.raises(SlurmError, match="cannot act for user 'nobody'"):
        runner.argv_for(["sbatch"], "nobody")


# ---- the backend's care with paths (no SLURM needed) ------------------------------------------------------


def test_backend_refuses_paths_outside_job_root(tmp_path: Path) -> None:
    backend = CliBackend(CliConfig(job_root=str(tmp_path / "jobs")))
    me = pwd.getpwuid(os.geteuid()).pw_name
    for workdir in ("/etc", str(tmp_path / "jobs"), str(tmp_path / "jobs/../x"), "relative/dir"):
        with pytest.raises(SlurmError):
            asyncio.run(backend.read_log(PodDirectory(workdir, me, ""), "c"))
    for container in ("../x", ".hidden", "a/b", ""):
        with pytest.raises(SlurmError, match="not a container name"):
            asyncio.run(backend.read_log(PodDirectory(str(tmp_path / "jobs/p"), me, ""), container))


class AnsweringRunner(Runner):
    """sbatch's answer without sbatch: what a submit does around the command, alone."""

    async def run(self, argv, **kwargs):  # type: ignore[no-untyped-def, override]
        return CommandResult(tuple(argv), 0, b"4242\n", b"")


@pytest.mark.parametrize("local", [True, False])
def test_pod_directories_are_made_on_the_event_loop_only_on_a_local_filesystem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local: bool) -> None:
    """There they are page-cache calls, cheaper than a worker thread's hand-over; statuswatch.on_local_filesystem
    tells (tests/unit/test_status_watch.py). The directory and its script are the same either way."""
    monkeypatch.setattr("slurmlink.slurm.cli.on_local_filesystem", lambda path: local)
    handed: list[str] = []
    to_thread = asyncio.to_thread

    async def noting(function, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        handed.append(function.__name__)
        return await to_thread(function, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", noting)
    backend = CliBackend(CliConfig(job_root=str(tmp_path)), runner=AnsweringRunner())
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name  # never root's jobs
    job = BatchJob(name="slurmlink-x", comment="ns/x", workdir=str(tmp_path / "ns-x"), script="#!/bin/sh\ntrue\n",
                   stdout=str(tmp_path / "ns-x" / "job.out"), cpus_per_task=1, memory_mb=64)
    assert asyncio.run(backend.submit(job, user)) == "4242"
    assert handed == ([] if local else ["_prepare_workdir"])
    assert (tmp_path / "ns-x" / "job.sh").read_text() == job.script


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as another user")
def test_backend_reads_only_the_users_own_files(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    root = tmp_path / "jobs"
    workdir = root / "p"
    (workdir / "status").mkdir(parents=True)
    (workdir / "logs").mkdir()
    for path in (root, workdir, workdir / "status", workdir / "logs"):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    (tmp_path / "secret").write_text("s3cret")
    (workdir / "status" / "c1.exit").write_text("3\n")
    (workdir / "status" / "c1.reason").symlink_to(tmp_path / "secret")
    (workdir / "status" / "c2.exit").write_text("0\n")  # root's file, not the user's: ignored
    os.mkfifo(workdir / "status" / "c3.started")
    (workdir / "logs" / "c1.log").write_bytes(b"hello world")
    (workdir / "logs" / "c2.log").symlink_to(tmp_path / "secret")
    for owned in ("status/c1.exit", "status/c3.started", "logs/c1.log"):
        os.lchown(workdir / owned, nobody.pw_uid, nobody.pw_gid)
    backend = CliBackend(CliConfig(job_root=str(root)))

    records = asyncio.run(backend.containers(PodDirectory(str(workdir), "nobody", "")))
    assert set(records) == {"c1"}
    assert records["c1"].exit_code == 3 and records["c1"].reason == ""
    assert asyncio.run(backend.read_log(PodDirectory(str(workdir), "nobody", ""), "c1", 6)) == b"world"
    assert asyncio.run(backend.read_log(PodDirectory(str(workdir), "nobody", ""), "nope")) == b""
    with pytest.raises(SlurmError):
        asyncio.run(backend.read_log(PodDirectory(str(workdir), "nobody", ""), "c2"))
    # A status directory replaced by a symlink (even to a directory inside job_root) is refused.
    (root / "q").mkdir()
    (root / "q" / "status").symlink_to(workdir / "status")
    with pytest.raises(SlurmError):
        asyncio.run(backend.containers(PodDirectory(str(root / "q"), "nobody", "")))
    assert asyncio.run(backend.containers(PodDirectory(str(root / "missing"), "nobody", ""))) == {}
