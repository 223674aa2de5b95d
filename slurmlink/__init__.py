"""slurmlink: Kubernetes pods as SLURM jobs, authorised by EGI Check-in."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slurmlink")  # one home: pyproject.toml's [project] version
except PackageNotFoundError:  # the source tree on sys.path without an install
    __version__ = "0+unknown"
