"""`POST /slurmlink/v1/jobs/{id}/signal?signal=TERM`: signal only a job's batch script, as its owner.

A pod is stopped gracefully by signalling its job script, which passes SIGTERM to each container's main
process and waits for the grace period. slurmrestd before v0.0.40 can only signal every process of a job
(and then ends it after KillWait), so the proxy runs `scancel --batch` itself, authenticated as the job's
owner with a short SLURM JWT (the proxy has already checked that the caller may act on the job).
"""

from __future__ import annotations

from collections.abc import Callable

from slurmlink.proxy.config import SignalsSection
from slurmlink.proxy.errors import Refusal
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.commands import scancel
from slurmlink.slurm.runner import Runner


class BatchSignaller:
    def __init__(self, section: SignalsSection, token_as: Callable[[str], str]) -> None:
        self.section = section
        self.token_as = token_as  # user -> a SLURM JWT acting as that user
        env = {"SLURM_CONF": section.slurm_conf} if section.slurm_conf else {}
        self.runner = Runner(env=env, timeout=section.timeout_seconds)

    async def signal(self, job_id: str, owner: str, signal: str) -> None:
        """Signal the batch script of a running job (nothing for a job in another state); Refusal on errors."""
        try:
            argv = scancel.argv(job_id, signal, self.section.scancel, only_state="RUNNING")
        except SlurmError as exc:
            raise Refusal(400, "BadRequest", exc.message) from None
        # With SLURM_JWT set, scancel authenticates with the token, even when the proxy runs as root.
        env = {"SLURM_JWT": self.token_as(owner)}
        try:
            scancel.parse(await self.runner.run(argv, env=env))
        except SlurmError as exc:
            status = 503 if exc.transient else 502
            raise Refusal(status, "SignalFailed", f"scancel could not signal job {job_id}: {exc.message}") from None
