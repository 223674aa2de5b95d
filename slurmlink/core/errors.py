"""The root of every error slurmlink raises, so that any layer can report any error the same way."""

from __future__ import annotations


class SlurmlinkError(Exception):
    """`reason` is a short CamelCase word (for a pod status, a log field or an HTTP error body), `message` a
    sentence a person can act on, `transient` whether trying again later may succeed."""

    default_reason = "Error"
    default_transient = False

    def __init__(self, message: str, reason: str = "", *, transient: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.transient = self.default_transient if transient is None else transient


class PodRejected(SlurmlinkError, ValueError):
    """The pod cannot become a job. `reason` is a CamelCase word for the pod status, `message` for people."""

    default_reason = "InvalidPod"

    def __init__(self, message: str, reason: str = "InvalidPod") -> None:
        super().__init__(message, reason)
