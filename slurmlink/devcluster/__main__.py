"""`python -m slurmlink.devcluster up|down|status` (the same as `slurmlink dev-cluster`)."""

from slurmlink.devcluster.commands import app

app(prog_name="slurmlink dev-cluster")
