"""Every command reports a configuration error the same way: exit code 2 and one line on stderr naming the file
(or the variable) and the key, whether the error is found when the file is loaded or when the service starts.

The real `slurmlink` CLI runs as a subprocess; each case exits before serving anything (no SLURM needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

VO = "vo.example.org"


def identity(**overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"issuers": [{"preset": "egi-production"}], "policy": {"vos": [VO]},
                               "mapping": [{"service_account": {"default": "svc"}}]}
    section.update(overrides)
    return {key: value for key, value in section.items() if value is not None}


def config_file(tmp_path: Path, command: str, section: dict[str, Any]) -> Path:
    if command == "api":
        data: dict[str, Any] = {"job_root": str(tmp_path / "jobs"), "auth": {"allow_unauthenticated": True},
                                "listen": {"port": 0}}
    else:
        token = tmp_path / "slurm.token"
        token.write_text("not-a-real-token\n")
        data = {"token_file": str(token), "listen": {"port": 0}}
    path = tmp_path / f"{command}.yaml"
    data["state_dir"] = str(tmp_path / "state")  # never the machine's /var/lib/slurmlink/<command>
    path.write_text(yaml.safe_dump({**data, "identity": section}))
    return path


def slurmlink(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slurmlink.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("configuration error: "), result.stderr
    for part in expected:
        assert part in lines[0], lines[0]


FAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown mapping strategy": (identity(mapping=[{"ldap": {"url": "ldaps://ldap.example.org"}}]),
                                 "identity.mapping.0: unknown mapping strategy 'ldap'"),
    "misspelt pool option": (identity(mapping=[{"pool": {"prefx": "egi"}}]), "identity.mapping.0.pool.prefx"),
    "bad policy": (identity(policy={"vos": [VO], "match": "sometimes"}), "identity.policy.match"),
    "empty policy": (identity(policy={"vos": []}), "identity.policy: the entitlement policy needs at least one VO"),
    "missing issuer": (identity(issuers=None), "identity.issuers: Field required"),
    "unknown preset": (identity(issuers=[{"preset": "egi-staging"}]), "identity.issuers.0: unknown Check-in preset"),
    "unreadable static map (at start)": (identity(mapping=[{"static": {"path": "/nonexistent/users.txt"}}]),
                                         "identity.mapping.0.static: static map /nonexistent/users.txt cannot be "
                                         "read"),
    "VO settings name an unconfigured strategy (at start)": (
        identity(policy={"vos": [{"name": VO, "settings": {"strategies": ["alise"]}}]}),
        "identity.policy.vos.0.settings.strategies: VO vo.example.org names mapping strategies ['alise']"),
}


@pytest.mark.parametrize("command", ["api", "proxy"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_identity_errors_exit_2_with_one_line_in_api_and_proxy(tmp_path: Path, command: str, fault: str) -> None:
    section, key = FAULTS[fault]
    path = config_file(tmp_path, command, section)
    assert_one_line_error(slurmlink(command, "-c", str(path), "--log-level", "warning"), f"{path}: ", key)


def test_a_bad_variable_is_named(tmp_path: Path) -> None:
    import os
    path = config_file(tmp_path, "api", identity())
    env = {**os.environ, "SLURMLINK_POLL_INTERVAL": "-1"}
    assert_one_line_error(slurmlink("api", "-c", str(path), env=env), "SLURMLINK_POLL_INTERVAL (poll_interval)")


def test_unparsable_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text("identity: {issuers: [\n")
    assert_one_line_error(slurmlink("proxy", "-c", str(path)), f"{path}: not valid YAML")


def test_vk_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "vk.yaml"
    path.write_text("nodee: {name: x}\n")
    assert_one_line_error(slurmlink("vk", "-c", str(path)), f"{path}: ", "nodee")


def test_client_commands_name_an_unreadable_token_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.token"
    assert_one_line_error(slurmlink("get", "some-uid", "--token-file", str(missing)),
                          "--token-file (SLURMLINK_API_TOKEN_FILE)", str(missing))


def test_vk_names_an_unusable_kubeconfig(tmp_path: Path) -> None:
    missing = tmp_path / "missing-kubeconfig"
    path = tmp_path / "vk.yaml"
    path.write_text(yaml.safe_dump({"kube": {"kubeconfig": str(missing)}}))
    assert_one_line_error(slurmlink("vk", "-c", str(path)), f"{path}: kube.kubeconfig", str(missing))
