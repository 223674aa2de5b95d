"""The one error translation raises: a pod slurmlink cannot run, with the reason for its status."""


class PodRejected(ValueError):
    """The pod cannot become a job. `reason` is a CamelCase word for the pod status, `message` for people."""

    def __init__(self, message: str, reason: str = "InvalidPod") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
