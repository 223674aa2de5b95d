"""The argv that starts a command as a new step of a running job, on the job's node, as the job's account.

`srun --overlap` shares the CPUs the batch step holds, `--mem=0` its memory; `--unbuffered` passes output on
as it comes (slurmstepd otherwise passes it a line at a time), which port-forward needs. The command's argv
follows `--` word for word: srun execs it on the node, no shell reads it.

`as_account` switches to the account with setpriv, which needs only CAP_SETUID and CAP_SETGID (not root, as
runuser does): what the proxy's interactive extension uses. It clears the inheritable and ambient capability
sets, so srun and the step run with no capability of the caller's. Pure: builds lists, runs nothing.
"""

from __future__ import annotations

import pwd
from collections.abc import Sequence

from slurmlink.core.errors import SlurmlinkError


class StepRefused(SlurmlinkError):
    """No step for this: not a job id, not a local account, or root."""

    default_reason = "StepRefused"


def step_argv(srun: str, job_id: str, workdir: str, argv: Sequence[str], *, pty: bool,
              unbuffered: bool = False) -> list[str]:
    if not (job_id.isascii() and job_id.isdigit()):
        raise StepRefused(f"not a job id: {job_id[:30]!r}")
    return [srun, "--overlap", f"--jobid={job_id}", "--nodes=1", "--ntasks=1", "--mem=0", "--quiet",
            f"--chdir={workdir}", *(["--pty"] if pty else []), *(["--unbuffered"] if unbuffered else []), "--",
            *argv]


def local_account(user: str, runs: str = "steps") -> pwd.struct_passwd:
    """The local account `user`, which must exist and is never root (StepRefused says which)."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise StepRefused(f"no local user {user!r}") from None
    if account.pw_uid == 0:
        raise StepRefused(f"slurmlink never runs {runs} as root")
    return account


def as_account(argv: Sequence[str], user: str, *, setpriv: str = "setpriv") -> list[str]:
    """`argv` run as local account `user` (never root), its supplementary groups included."""
    account = local_account(user)
    return [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups",
            "--inh-caps=-all", "--ambient-caps=-all", "--", *argv]


def account_env(user: str, base: dict[str, str]) -> dict[str, str]:
    """What runuser would add to `base` for the account (setpriv changes ids only)."""
    account = pwd.getpwnam(user)
    return {**base, "HOME": account.pw_dir, "USER": user, "LOGNAME": user, "SHELL": account.pw_shell}
