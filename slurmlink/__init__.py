"""slurmlink: Kubernetes pods as SLURM jobs, authorised by EGI Check-in."""

__version__ = "0.1.0"

# Job names carry the pod UID so that SLURM alone tells which job belongs to which pod.
JOB_NAME_PREFIX = "slurmlink-"
