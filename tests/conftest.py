"""Shared fixtures. `slurm_cluster` is a real single-node SLURM, started once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurmlink.devcluster import DevCluster, DevClusterError

# Ports apart from the default dev cluster (6817/6818/6820), so both can run at once.
TEST_STATE_DIR = Path(os.environ.get("SLURMLINK_TEST_STATE_DIR", "/var/lib/slurmlink/test-cluster"))
# "rest,ctld,slurmd": lets two test sessions (say, two developers on one machine) each have their own SLURM.
_PORTS = os.environ.get("SLURMLINK_TEST_PORTS", "6821,6917,6918")
REST_PORT, CTLD_PORT, SLURMD_PORT = (int(port) for port in _PORTS.split(","))


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[DevCluster]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the SLURM tests start a real SLURM")
    cluster = DevCluster(TEST_STATE_DIR, rest_port=REST_PORT, ctld_port=CTLD_PORT, slurmd_port=SLURMD_PORT)
    was_up = all(cluster.status().values())
    try:
        cluster.up()
    except DevClusterError as exc:
        if not was_up:
            cluster.down()  # what did start would otherwise outlive the session
        tails = "\n".join(f"--- {name} log ---\n{tail}" for name, tail in exc.logs.items())
        pytest.fail(f"the test SLURM did not come up: {exc}\n{tails}", pytrace=False)
    yield cluster
    if not was_up:  # leave a cluster someone else started running
        cluster.down()


@pytest.fixture(scope="session")
def test_users() -> tuple[str, ...]:
    """The test users (sltest1..3, uid >= 1000), made as `slurmlink dev-cluster up` makes them, so tests
    that map identities to them run on a fresh machine without a SLURM."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the test users are created with useradd")
    cluster = DevCluster(TEST_STATE_DIR)
    try:
        cluster.ensure_users()
    except DevClusterError as exc:
        pytest.fail(f"the test users: {exc}", pytrace=False)
    return cluster.users


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "slurm_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slurm)
