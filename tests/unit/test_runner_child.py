"""The command runner against real subprocesses (slurmlink/slurm/runner.py): what it writes, what it captures,
when it gives up, and that it leaves no process or file descriptor behind. Its environment and its timeout
killing the process group are in test_slurm_commands.py."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.runner import Runner


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_large_stdin_is_written_in_full_and_both_outputs_are_captured_apart() -> None:
    data = os.urandom(1 << 20)  # far more than a pipe holds: written as the command reads
    result = asyncio.run(Runner().run(["/bin/sh", "-c", "cat; echo oops >&2; exit 3"], stdin=data))
    assert (result.returncode, result.stdout, result.stderr) == (3, data, b"oops\n")
    assert not result.ok and result.argv == ("/bin/sh", "-c", "cat; echo oops >&2; exit 3")


def test_a_command_that_reads_no_stdin_is_still_answered() -> None:
    result = asyncio.run(Runner().run(["/bin/sh", "-c", "echo refused >&2; exit 1"], stdin=b"x" * (1 << 20)))
    assert (result.returncode, result.err) == (1, "refused\n")


def test_a_command_that_closes_its_output_early_is_waited_for() -> None:
    # Its pipes close long before it exits: the exit status comes from a wait, not from the pipes.
    result = asyncio.run(Runner().run(["/bin/sh", "-c", "echo early; exec >&- 2>&-; sleep 0.3; exit 4"]))
    assert (result.returncode, result.out) == (4, "early\n")


def test_an_exit_after_the_output_closed_is_awaited_on_the_loop_not_in_a_thread() -> None:
    # What runuser does after its command: the output is closed, the exit comes when its PAM session is.
    async def run() -> int:
        loop = asyncio.get_running_loop()

        def no_thread(*args: object) -> None:
            raise AssertionError("a worker thread was asked to wait for the exit")

        loop.run_in_executor = no_thread  # type: ignore[method-assign,assignment]
        return (await Runner().run(["/bin/sh", "-c", "exec >&- 2>&-; sleep 0.2; exit 5"])).returncode

    assert asyncio.run(run()) == 5


def test_a_killed_command_reports_its_signal() -> None:
    result = asyncio.run(Runner().run(["/bin/sh", "-c", "kill -KILL $$"]))
    assert result.returncode == -9


def test_what_cannot_start_is_a_slurm_error(tmp_path: Path) -> None:
    with pytest.raises(SlurmError, match="cannot run /no/such/sbatch"):
        asyncio.run(Runner().run(["/no/such/sbatch"]))
    with pytest.raises(SlurmError, match="cannot run /bin/true"):
        asyncio.run(Runner().run(["/bin/true"], cwd=str(tmp_path / "gone")))


def test_a_cancelled_caller_kills_the_command_and_its_group(tmp_path: Path) -> None:
    marker = tmp_path / "survived"

    async def cancel_it() -> None:
        task = asyncio.create_task(Runner().run(["/bin/sh", "-c", f"(sleep 0.5; touch {marker}) & sleep 5"]))
        await asyncio.sleep(0.2)  # started and running
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())
    # The group's grandchild would have written the marker at 0.5 s; a sleeping look is the only way to see
    # that something did not happen.
    asyncio.run(asyncio.sleep(0.8))
    assert not marker.exists()


def test_many_commands_at_once_leave_no_descriptor_or_child_behind() -> None:
    async def many() -> list[tuple[bytes, int]]:
        runner = Runner()
        results = await asyncio.gather(*(runner.run(["/bin/sh", "-c", "cat; echo $$ >&2"], stdin=b"%d" % i)
                                         for i in range(40)))
        with pytest.raises(SlurmError):
            await runner.run(["/bin/sleep", "5"], timeout=0.1)
        return [(r.stdout, int(r.stderr)) for r in results]

    before = _open_fds()
    outputs = asyncio.run(many())
    assert [out for out, _ in outputs] == [b"%d" % i for i in range(40)]
    assert _open_fds() <= before  # the loop's own descriptors are gone with it too
    for _, pid in outputs:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped already


def test_the_same_under_uvloop() -> None:
    """The proxy runs its commands (scancel) on uvloop, whose readers and executor the runner uses as well."""
    uvloop = pytest.importorskip("uvloop")

    async def both() -> tuple[bytes, int]:
        runner = Runner()
        result = await runner.run(["/bin/sh", "-c", "cat; exit 2"], stdin=b"x" * (1 << 20))
        with pytest.raises(SlurmError, match="did not answer"):
            await runner.run(["/bin/sleep", "5"], timeout=0.1)
        return result.stdout, result.returncode

    assert uvloop.run(both()) == (b"x" * (1 << 20), 2)
