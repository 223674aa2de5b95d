"""slurmlink's own additions to the wire: its `/slurmlink/v1` routes, HTTP headers and pod annotations.

Every process that speaks them imports them from here, so that no service imports another's module.
"""

from __future__ import annotations

from collections.abc import Iterable

# --- routes ---------------------------------------------------------------------------------------------

EXTENSIONS = "/slurmlink/v1"  # the proxy's file and capacity extensions live below this prefix
PROJECTED_ROUTE = f"{EXTENSIONS}/projected"  # the API: new token files of a running pod's projected volumes
CHANGES_ROUTE = f"{EXTENSIONS}/changes"  # the API: long poll of the pods whose status changed (wire/changes.py)
# the proxy: long poll of the caller's jobs whose status files changed (wire/statuschanges.py)
STATUS_CHANGES_ROUTE = f"{EXTENSIONS}/status-changes"
# the API: `kubectl exec`/`attach` relayed by the vk, as an SPDY/3.1 upgrade (api/exec.py)
EXEC_ROUTE = f"{EXTENSIONS}/exec"
ATTACH_ROUTE = f"{EXTENSIONS}/attach"
# the API: `kubectl port-forward` relayed by the vk, as an SPDY/3.1 upgrade (steps/portforward.py)
PORTFORWARD_ROUTE = f"{EXTENSIONS}/portforward"
# the proxy (mode 1, when the site enables `interactive`): a step of a job, as an SPDY/3.1 upgrade
# (proxy/interactive.py); the mode-1 API relays the vk's exec and port-forward to these
PROXY_EXEC_ROUTE = EXTENSIONS + "/jobs/{job_id}/exec"
PROXY_PORTFORWARD_ROUTE = EXTENSIONS + "/jobs/{job_id}/portforward"

# --- headers --------------------------------------------------------------------------------------------

# On the API's 404s (unknown pod), so that a caller tells them from a server without the route (upstream).
UNKNOWN_POD_HEADER = "X-Slurmlink-Unknown-Pod"
# The API names the sbatch options it dropped in this header of its `/create` answer (an addition the upstream
# wire ignores); the vk turns it into the pod's Warning event.
DROPPED_FLAGS_HEADER = "X-Slurmlink-Dropped-Flags"
# The API says in this header of its `/create` answer which VO, account and partition the site policy gave the
# pod's job (`VO x, account a, partition p`); the vk puts it in the pod's Submitted event.
PLACEMENT_HEADER = "X-Slurmlink-Placement"
MAX_PLACEMENT = 300  # the receiver keeps at most this much of it (another process's word)
# A pod's choice among its owner's VOs (the annotation), and the same on a submission through the proxy
VO_HEADER = "X-Slurmlink-VO"
# The proxy's log extension: the size of the log file when the answer began.
LOG_SIZE_HEADER = "X-Slurmlink-Log-Size"


def dropped_flags_value(dropped: Iterable[str]) -> str:
    return ",".join(dropped)


def dropped_flags(value: str | None) -> list[str]:
    """The option names in a DROPPED_FLAGS_HEADER (the receiver still checks them: another process's word)."""
    return [name for name in (value or "").split(",") if name]


# --- annotations and labels -----------------------------------------------------------------------------

FLAGS_ANNOTATION = "slurm-job.vk.io/flags"  # interLink's SLURM plugin's: extra sbatch options
PRE_EXEC_ANNOTATION = "slurm-job.vk.io/pre-exec"  # interLink's SLURM plugin's: a shell snippet (if the site allows)
RUNTIME_ANNOTATION = "slurmlink.io/runtime"
VO_ANNOTATION = "slurmlink.io/vo"  # which of its owner's VOs the pod runs under (site policy)
TOKEN_SECRET_ANNOTATION = "slurmlink.io/token-secret"  # noqa: S105 - a name, not a secret
JOB_CONDITION = "slurmlink.io/SlurmJob"  # the pod condition carrying the job's id and state
NODE_LABEL = "slurmlink.io/node"
