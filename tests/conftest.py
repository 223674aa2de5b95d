"""Shared fixtures. `slurm_cluster` is a real single-node SLURM, started once per test session.

It runs the machine's own SLURM (22.05), or with SLURMLINK_TEST_SLURM=24.11 that release from its Debian root
(built by `SLURMLINK_SLURM_VERSIONS=22.05,24.11 bash scripts/install.sh`), so that a whole suite runs against
either: give such a session its own SLURMLINK_TEST_STATE_DIR and SLURMLINK_TEST_PORTS. SLURMLINK_TEST_REST_VERSION
picks the REST API version the tests speak (default: the release's newest); tests/harness/cluster.py reads
them. `slurm_cluster_2411` is a 24.11 cluster beside it in the same session, for tests that need both (skipped
when no 24.11 root was built). `slurm_accounting_cluster` is one of the release under test with slurmdbd
(SLURMLINK_TEST_ACCT_STATE_DIR, SLURMLINK_TEST_ACCT_PORTS; skipped when MariaDB or slurmdbd is not installed).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from slurmlink.devcluster import DevCluster, DevClusterError
from slurmlink.devcluster.accounting import missing_packages
from slurmlink.devcluster.cluster import SYSTEM_PATH
from slurmlink.devcluster.rootfs import RootMissing, find_root
from tests.harness.cluster import (
    ACCT_MIN_JOB_AGE,
    ACCT_PORTS,
    ACCT_STATE_DIR,
    CTLD_PORT,
    PORTS_2411,
    REST_PORT,
    SLURMD_PORT,
    STATE_DIR_2411,
    TEST_SLURM,
    TEST_STATE_DIR,
)


def _session_cluster(cluster: DevCluster) -> Iterator[DevCluster]:
    was_up = all(cluster.status().values())
    try:
        cluster.up()
    except DevClusterError as exc:
        if not was_up:
            cluster.down()  # what did start would otherwise outlive the session
        tails = "\n".join(f"--- {name} log ---\n{tail}" for name, tail in exc.logs.items())
        pytest.fail(f"the test SLURM {cluster.slurm} did not come up: {exc}\n{tails}", pytrace=False)
    yield cluster
    if not was_up:  # leave a cluster someone else started running
        cluster.down()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[DevCluster]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the SLURM tests start a real SLURM")
    try:
        cluster = DevCluster(TEST_STATE_DIR, rest_port=REST_PORT, ctld_port=CTLD_PORT, slurmd_port=SLURMD_PORT,
                             slurm=TEST_SLURM)
    except DevClusterError as exc:
        pytest.fail(f"SLURMLINK_TEST_SLURM={TEST_SLURM}: {exc}", pytrace=False)
    yield from _session_cluster(cluster)


@pytest.fixture(scope="session")
def slurm_cluster_2411() -> Iterator[DevCluster]:
    """SLURM 24.11 from its Debian root, beside `slurm_cluster` (its own state dir and ports)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the SLURM tests start a real SLURM")
    try:
        find_root("24.11")
    except RootMissing as exc:
        pytest.skip(str(exc))
    rest, ctld, slurmd = PORTS_2411
    yield from _session_cluster(DevCluster(STATE_DIR_2411, rest_port=rest, ctld_port=ctld, slurmd_port=slurmd,
                                           slurm="24.11"))


@pytest.fixture(scope="session")
def slurm_accounting_cluster() -> Iterator[DevCluster]:
    """A cluster of the release under test with accounting (slurmdbd, MariaDB, associations for the test
    users) whose finished jobs leave slurmctld's memory after ACCT_MIN_JOB_AGE; beside `slurm_cluster`."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the SLURM tests start a real SLURM")
    rest, ctld, slurmd, dbd, db = ACCT_PORTS
    try:
        cluster = DevCluster(ACCT_STATE_DIR, rest_port=rest, ctld_port=ctld, slurmd_port=slurmd, slurm=TEST_SLURM,
                             accounting=True, dbd_port=dbd, db_port=db, min_job_age=ACCT_MIN_JOB_AGE)
    except DevClusterError as exc:
        pytest.fail(f"SLURMLINK_TEST_SLURM={TEST_SLURM}: {exc}", pytrace=False)
    missing = missing_packages(release_has_slurmdbd=cluster.root is not None, path=SYSTEM_PATH)
    if missing:
        pytest.skip(missing)
    yield from _session_cluster(cluster)


@pytest.fixture(scope="session")
def test_users() -> tuple[str, ...]:
    """The test users (sltest1..3, uid >= 1000), made as `slurmlink dev-cluster up` makes them, so tests
    that map identities to them run on a fresh machine without a SLURM."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the test users are created with useradd")
    try:
        cluster = DevCluster(TEST_STATE_DIR)
        cluster.ensure_users()
    except DevClusterError as exc:
        pytest.fail(f"the test users: {exc}", pytrace=False)
    return cluster.users


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"slurm_cluster", "slurm_cluster_2411", "slurm_accounting_cluster"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slurm)
