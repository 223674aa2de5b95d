"""A real single-node SLURM on this machine, for trying slurmlink out and for the tests."""

from slurmlink.devcluster.cluster import DevCluster, DevClusterError, hs256_jwt

__all__ = ["DevCluster", "DevClusterError", "hs256_jwt"]
