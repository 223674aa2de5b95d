"""Fixtures of the integration tests: `slurmlink api` (mode 2) as a real process on loopback in front of the
test SLURM, the vk chain in front of it, the mode-1 stack, and the Check-in people of the identity tests (the
helpers they are built from are in tests/harness and beside this file)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slurmlink.devcluster import DevCluster
from standins.checkin import CheckinStandin
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, api_config
from tests.integration.mode1 import Mode1, start_mode1
from tests.integration.vk_harness import Chain, open_chain


@pytest.fixture(scope="session")
def api(slurm_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    process = ApiProcess(api_config(slurm_cluster, free_port()), tmp_path_factory.mktemp("api"))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def chain(slurm_cluster: DevCluster, api: ApiProcess, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Chain]:
    with open_chain(slurm_cluster, api, tmp_path_factory.mktemp("vk")) as opened:
        yield opened


@pytest.fixture(scope="module")
def mode1(slurm_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mode1]:
    """The mode-1 stack (Check-in stand-in, `slurmlink proxy`, `slurmlink api --backend rest`), per module."""
    stack = start_mode1(slurm_cluster, tmp_path_factory.mktemp("mode1"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def checkin() -> Iterator[CheckinStandin]:
    """A Check-in stand-in of the test module's own."""
    with CheckinStandin() as server:
        yield server


@pytest.fixture(scope="module")
def people(checkin: CheckinStandin) -> dict[str, str]:
    """Check-in subjects: two members of the VO, one of another VO, one member nobody mapped."""
    subjects = {name: checkin.new_subject() for name in ("alice", "bob", "eve", "nomap")}
    checkin.set_user(subjects["eve"], eduperson_entitlement=[
        "urn:mace:egi.eu:group:vo.other.org:role=member#aai.egi.eu"])
    return subjects
