"""The answer of the proxy's file watch, `GET /slurmlink/v1/status-changes?jobs=<id>,...&since=<cursor>&wait=<s>`
(mode 1: how the API learns that a job wrote its pod's `status/` files without asking SLURM).

The cursor is `<epoch>:<revision>`: a new epoch at every proxy start, the revision bumped whenever a watched job's
`status/` directory changes. `jobs` are the ids of the caller's jobs that changed after `since` (the caller then
reads their files, e.g. with `/slurmlink/v1/statuses`); `reset` means `since` was absent or of another epoch, and
`jobs` are then all the jobs named that are watched, to be read at once. `refused` names the jobs named that the
proxy does not watch for this caller, and why (SLURM's polls still tell their state).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from slurmlink.wire.gojson import POINTER, WireModel

DEFAULT_WAIT_SECONDS = 30
MAX_WAIT_SECONDS = 60
MAX_JOBS_PER_CALL = 500  # the query's length: the job ids of one request


class StatusChanges(WireModel):
    cursor: str = ""
    reset: bool = False
    jobs: Annotated[list[str], POINTER] = Field(default_factory=list)  # [] on the wire, not null
    refused: dict[str, str] = Field(default_factory=dict)
