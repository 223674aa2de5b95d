"""Which test SLURM a session runs against (tests/conftest.py starts it as the `slurm_cluster` fixture).

SLURMLINK_TEST_STATE_DIR and SLURMLINK_TEST_PORTS ("rest,ctld,slurmd") let two sessions on one machine each
have their own; SLURMLINK_TEST_SLURM picks the release (the machine's own 22.05, or 24.11 from its Debian
root) and SLURMLINK_TEST_REST_VERSION the REST API version the tests speak (default: the release's newest).
"""

from __future__ import annotations

import os
from pathlib import Path

from slurmlink.devcluster.cluster import HOST_RELEASE, PORT_OFFSET, REST_VERSIONS_OF

# Ports apart from the default dev cluster (6817/6818/6820), so both can run at once.
TEST_STATE_DIR = Path(os.environ.get("SLURMLINK_TEST_STATE_DIR", "/var/lib/slurmlink/test-cluster"))
_PORTS = os.environ.get("SLURMLINK_TEST_PORTS", "6821,6917,6918")
REST_PORT, CTLD_PORT, SLURMD_PORT = (int(port) for port in _PORTS.split(","))
TEST_SLURM = os.environ.get("SLURMLINK_TEST_SLURM", HOST_RELEASE)
TEST_REST_VERSION = os.environ.get("SLURMLINK_TEST_REST_VERSION") or REST_VERSIONS_OF[TEST_SLURM][0]
STATE_DIR_2411 = Path(os.environ.get("SLURMLINK_TEST_2411_STATE_DIR", "/var/lib/slurmlink/test-cluster-24.11"))
PORTS_2411 = tuple(int(p) for p in os.environ.get("SLURMLINK_TEST_2411_PORTS", "6831,6927,6928").split(","))
# With accounting (slurmdbd and MariaDB), of the release under test: "rest,ctld,slurmd,slurmdbd,mariadb". Each
# release's default ports are its own, so that a cluster one run left up cannot hold another release's ports.
ACCT_STATE_DIR = Path(os.environ.get("SLURMLINK_TEST_ACCT_STATE_DIR") or f"{TEST_STATE_DIR}-acct")
_ACCT_DEFAULT = ",".join(str(port + PORT_OFFSET[TEST_SLURM]) for port in (6841, 6937, 6938, 6939, 6940))
ACCT_PORTS = tuple(int(p) for p in os.environ.get("SLURMLINK_TEST_ACCT_PORTS", _ACCT_DEFAULT).split(","))
ACCT_MIN_JOB_AGE = 2  # seconds: finished jobs leave slurmctld's memory soon (its purge pass runs each minute)
