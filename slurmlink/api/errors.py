"""The API's own refusals (the HTTP layer maps each to its status: 503, 404, 400, 409)."""

from __future__ import annotations

from slurmlink.core.errors import SlurmlinkError


class NotReady(SlurmlinkError):
    """The API cannot act yet (SLURM unreachable or state not recovered): the caller should retry."""

    default_reason, default_transient = "NotReady", True


class NotFound(SlurmlinkError):
    default_reason = "NotFound"


class BadRequest(SlurmlinkError):
    """A request that cannot be answered as asked (e.g. the previous log of a container never restarted): 400."""

    default_reason = "BadRequest"


class Conflict(SlurmlinkError):
    """The pod is known but not in a state for this request (e.g. its job does not run): 409."""

    default_reason = "Conflict"
