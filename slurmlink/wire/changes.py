"""The answer of slurmlink's change feed, `GET /slurmlink/v1/changes?since=<cursor>&wait=<seconds>` (an
extension: upstream interLink has no such route, and the vk then keeps to its periodic `/status`).

The cursor is `<epoch>:<revision>`: a new epoch at every API start, the revision bumped on every change of a
pod's status or a pod's removal. `reset` means the cursor asked for is from another epoch or older than the
history the API keeps: `pods` is then a snapshot of every pod the API knows.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from slurmlink.wire.gojson import POINTER, WireModel
from slurmlink.wire.interlink import PodStatus

DEFAULT_WAIT_SECONDS = 30
MAX_WAIT_SECONDS = 60


class RemovedPod(WireModel):
    """A pod the API no longer has (deleted): no PodStatus can describe it."""

    namespace: str = ""
    name: str = ""
    uid: str = ""


class Changes(WireModel):
    cursor: str = ""
    reset: bool = False
    # POINTER: an empty list goes out as [] (Go's nil slice would be null), as the contract spells it
    pods: Annotated[list[PodStatus], POINTER] = Field(default_factory=list)
    removed: Annotated[list[RemovedPod], POINTER] = Field(default_factory=list)

