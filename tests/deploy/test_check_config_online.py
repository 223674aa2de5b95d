"""`slurmlink check-config --online` against real servers on loopback: the Check-in stand-in, the test SLURM's
slurmrestd behind a real `slurmlink proxy`, a real `slurmlink api` (mode 1, in front of the proxy), and the kube
stand-in (SelfSubjectReview, as a real apiserver answers it)."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurmlink.devcluster import DevCluster
from standins.checkin import CheckinStandin
from standins.kube import KubeStandin
from tests.deploy.check_config import Result, check_config, examples_dir, stage_site
from tests.harness.pods import NODE
from tests.harness.services import node_kubeconfig, vk_config
from tests.integration.mode1 import Mode1, start_mode1

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="job roots are root-owned; SLURM needs root")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def _line(result: Result, level: str, subject: str, words: str) -> None:
    assert any(line.startswith(f"{level:<8}") and subject in line and words in line for line in result.lines), (
        f"no {level} about {subject} saying {words!r} in:\n" + "\n".join(result.lines) + result.stderr)


def test_issuer_discovery_of_each_configured_issuer(tmp_path: Path) -> None:
    example = examples_dir() / "api-mode2-checkin.yaml"
    config = yaml.safe_load(example.read_text())
    with CheckinStandin() as checkin:
        config["identity"]["issuers"] = [{"issuer": checkin.issuer}]
        path = _write(tmp_path / "api.yaml", config)
        stage_site(tmp_path / "site", "api", path)
        result = check_config("api", path, "--root", str(tmp_path / "site"), "--online")
        assert result.code == 0, "\n".join(result.lines)
        _line(result, "ok", "identity.issuers.0", f"{checkin.issuer}: discovery document and signing keys fetched")
    result = check_config("api", path, "--root", str(tmp_path / "site"), "--online")  # the issuer is gone
    assert result.code == 1, "\n".join(result.lines)  # the configuration is right; the network is not
    _line(result, "error", f"{path}: identity.issuers.0", "could not be reached")


@pytest.fixture(scope="module")
def mode1(slurm_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mode1]:
    stack = start_mode1(slurm_cluster, tmp_path_factory.mktemp("mode1"))
    yield stack
    stack.stop()


@pytest.mark.slurm
def test_the_proxy_reaches_its_issuer_and_slurmrestd(mode1: Mode1) -> None:
    result = check_config("proxy", mode1.proxy.config_path, "--online")
    assert result.code == 0, "\n".join(result.lines)
    _line(result, "ok", "identity.issuers.0", "discovery document and signing keys fetched")
    _line(result, "ok", "upstream", "answers a SlurmUser ping")
    _line(result, "ok", "jwt_key_file", "slurmctld accepts the SlurmUser token")


@pytest.mark.slurm
def test_a_proxy_with_the_wrong_jwt_key_or_no_slurmrestd(mode1: Mode1, tmp_path: Path) -> None:
    config = yaml.safe_load(mode1.proxy.config_path.read_text())
    key = tmp_path / "other.key"
    key.write_bytes(secrets.token_bytes(32))
    key.chmod(0o600)
    wrong_key = _write(tmp_path / "proxy-key.yaml", {**config, "jwt_key_file": str(key)})
    result = check_config("proxy", wrong_key, "--online")
    assert result.code == 1, "\n".join(result.lines)
    # 24.11 pings with any token but refuses diag (511); 22.05 refuses the ping (500): either way the key is named
    assert any("jwt_key_file" in line for line in result.errors()), "\n".join(result.lines)
    no_rest = _write(tmp_path / "proxy-rest.yaml", {**config, "upstream": f"http://127.0.0.1:{_closed_port()}"})
    result = check_config("proxy", no_rest, "--online")
    assert result.code == 1, "\n".join(result.lines)
    _line(result, "error", f"{no_rest}: upstream", "slurmrestd at http://127.0.0.1:")


@pytest.mark.slurm
def test_the_api_reaches_its_proxy_and_refresh_issuers(mode1: Mode1, tmp_path: Path) -> None:
    result = check_config("api", mode1.api.config_path, "--online", "--proxy-config", str(mode1.proxy.config_path))
    assert result.code == 0, "\n".join(result.lines)
    _line(result, "ok", "rest.url", f"the proxy at {mode1.proxy.url} answers /healthz: 200")
    _line(result, "ok", "rest.refresh_issuers.0", "signing keys fetched")
    _line(result, "ok", "job_root", "the same as files.job_root")
    config = yaml.safe_load(mode1.api.config_path.read_text())
    config["rest"]["url"] = f"http://127.0.0.1:{_closed_port()}"
    gone = _write(tmp_path / "api.yaml", config)
    result = check_config("api", gone, "--online")
    assert result.code == 1
    _line(result, "error", f"{gone}: rest.url", "cannot be reached")


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeStandin]:
    with KubeStandin(tmp_path_factory.mktemp("kube")) as standin:
        yield standin


def _vk(kube: KubeStandin, mode1: Mode1, tmp_path: Path, kubeconfig: Path, name: str = NODE) -> Path:
    kubeconfig.chmod(0o600)
    config = vk_config(kube, kubeconfig, mode1.api.url)
    config["node"]["name"] = name
    return _write(tmp_path / "vk.yaml", config)


@pytest.mark.slurm
def test_the_vk_reaches_its_api_and_is_the_node(kube: KubeStandin, mode1: Mode1, tmp_path: Path) -> None:
    config = _vk(kube, mode1, tmp_path, node_kubeconfig(kube, tmp_path / "node.kubeconfig", NODE))
    result = check_config("vk", config, "--online")
    assert result.code == 0, "\n".join(result.lines)
    _line(result, "ok", "api.url", f"the API at {mode1.api.url} answers /healthz: 200")
    _line(result, "ok", "api.url", "/pinglink")
    _line(result, "ok", "kube.kubeconfig", f"knows the vk as system:node:{NODE} (the node identity)")


@pytest.mark.slurm
def test_the_vk_with_another_identity(kube: KubeStandin, mode1: Mode1, tmp_path: Path) -> None:
    admin = _vk(kube, mode1, tmp_path, kube.write_kubeconfig(tmp_path / "admin.kubeconfig"))
    result = check_config("vk", admin, "--online")
    assert result.code == 0, "\n".join(result.lines)  # allowed (a ServiceAccount with RBAC), but said
    _line(result, "warning", "kube.kubeconfig", "knows the vk as kubernetes-admin")
    other = _vk(kube, mode1, tmp_path, node_kubeconfig(kube, tmp_path / "other.kubeconfig", "another-node"))
    result = check_config("vk", other, "--online")
    assert result.code == 1, "\n".join(result.lines)
    _line(result, "error", "kube.kubeconfig", "system:node:another-node, the identity of another node")
