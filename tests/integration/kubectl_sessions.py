"""kubectl exec sessions as the exec suites of both modes drive them: a terminal of a given size, sessions held
open in the background, and the job steps they run (test_vk_exec.py, test_vk_mode1_interactive.py)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable

from tests.harness.waiting import wait_until
from tests.integration.vk_harness import KUBECTL, Chain


def kubectl_env(chain: Chain, **extra: str) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(chain.standin.kubeconfig),
            "KUBECACHEDIR": str(chain.workdir / "kubecache"), **extra}


def exec_on_a_terminal(chain: Chain, pod: str, rows: int, columns: int, command: str) -> tuple[int, str]:
    """`kubectl exec -t -i pod -- sh -c command` on a pseudo-terminal of that size: (exit code, what it showed)."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    with subprocess.Popen([str(KUBECTL), "exec", "-t", "-i", pod, "--", "sh", "-c", command],
                          stdin=child, stdout=child, stderr=child, env=kubectl_env(chain),
                          start_new_session=True) as kubectl:
        os.close(child)
        seen = b""
        deadline = time.monotonic() + 60
        while kubectl.poll() is None and time.monotonic() < deadline:
            if select.select([main], [], [], 0.5)[0]:
                with contextlib.suppress(OSError):
                    seen += os.read(main, 4096)
        with contextlib.suppress(OSError):
            seen += os.read(main, 4096)
        os.close(main)
        return kubectl.wait(timeout=10), seen.decode(errors="replace")


def background_exec(chain: Chain, pod: str, *command: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(KUBECTL), "exec", pod, "--", *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=kubectl_env(chain))


def running_steps(chain: Chain, job_id: str) -> int:
    """Running steps of the job beyond the batch step: its open exec sessions."""
    listed = subprocess.run(["squeue", "--steps", "--noheader", "--format=%i", "--jobs", job_id],
                            capture_output=True, text=True, env=chain.cluster.env, check=True).stdout.split()
    return len([step for step in listed if step.split(".")[-1].isdigit()])


def session_limit_holds(chain: Chain, pod: str, sessions: int, refusal: str, steps: Callable[[], int]) -> None:
    """`sessions` execs held open are served, one more is refused with `refusal`; once their kubectls are gone
    their steps end, and a new session is served again."""
    before = steps()
    held = [background_exec(chain, pod, "sleep", "120") for _ in range(sessions)]
    try:
        wait_until(lambda: steps() == before + sessions, 90, f"{sessions} exec steps to run")
        refused = chain.kubectl("exec", pod, "--", "echo", "one more", check=False)
        assert refused.returncode != 0 and refusal in refused.stderr, refused
    finally:
        for kubectl in held:
            kubectl.kill()
            kubectl.wait()
    wait_until(lambda: steps() == before, 60, "the exec steps to end")
    wait_until(lambda: chain.kubectl("exec", pod, "--", "echo", "again", check=False).stdout == "again\n", 30,
               "a new session to be taken")
