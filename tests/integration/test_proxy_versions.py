"""The proxy follows the site's slurmrestd when it comes back with other API versions (a SLURM upgrade
under a running proxy), live on SLURM 24.11: v0.0.40-v0.0.42, then only v0.0.40, then all three again.
Needs the 24.11 root (`SLURMLINK_SLURM_VERSIONS=22.05,24.11 bash scripts/install.sh`); skipped without it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slurmlink.devcluster import DevCluster
from standins.checkin import CheckinStandin
from tests.harness.waiting import wait_until
from tests.integration.proxy_fixtures import ProxyServer, bearer, proxy_config


@pytest.fixture(scope="module")
def proxy(slurm_cluster_2411: DevCluster, checkin: CheckinStandin, people: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    users = tmp_path_factory.mktemp("versions") / "users.txt"
    users.write_text(f"{checkin.issuer} {people['alice']} {slurm_cluster_2411.users[0]}\n")
    server = ProxyServer(proxy_config(slurm_cluster_2411, checkin, Path(users), api_version="auto",
                                      api_version_recheck_seconds=2)).start()
    yield server
    server.stop()


def health(proxy: ProxyServer, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The proxy's health when it is healthy, else {} (the unhealthy answer, with its reason, goes to `seen`)."""
    try:
        answer = httpx.get(f"{proxy.admin_url}/healthz", timeout=10)
        body = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        answer, body = None, {"error": repr(exc)}
    if seen is not None:
        seen[:] = [body]
    return body if answer is not None and answer.status_code == 200 else {}


def wait_for_version(proxy: ProxyServer, expected: str, what: str) -> None:
    seen: list[dict[str, Any]] = []
    try:  # slurmrestd on 24.11 under a loaded machine may take a while to answer its first ping
        wait_until(lambda: health(proxy, seen).get("api_version") == expected, 60, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the proxy's last health answer: {seen}") from None


def test_the_proxy_follows_slurmrestd_restarted_with_other_versions(
        proxy: ProxyServer, slurm_cluster_2411: DevCluster, checkin: CheckinStandin, people: dict[str, str]) -> None:
    cluster = slurm_cluster_2411
    try:
        wait_for_version(proxy, "v0.0.42", "a healthy proxy using v0.0.42")
        assert health(proxy)["offered"] == ["v0.0.40", "v0.0.41", "v0.0.42"]
        for versions, expected in ((["v0.0.40"], "v0.0.40"), (None, "v0.0.42")):
            cluster.restart_rest(versions)
            wait_for_version(proxy, expected, f"the proxy to use {expected}")
            # its own job lookups follow too: a capacity answer needs the node list in that version
            capacity = httpx.get(f"{proxy.url}/slurmlink/v1/capacity", timeout=30,
                                 headers=bearer(checkin.mint(people["alice"])))
            assert capacity.status_code == 200, capacity.text
    finally:
        cluster.restart_rest()
