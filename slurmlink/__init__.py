"""slurmlink: Kubernetes pods as SLURM jobs, authorised by EGI Check-in."""

__version__ = "0.1.0"

