"""`slurmlink check-config`: every shipped example passes in a site tree prepared as the docs say; each broken
configuration fails naming its key (or SLURMLINK_* variable) and file; `--online` against real servers on
loopback (the Check-in stand-in, the test SLURM's slurmrestd, `slurmlink proxy` and `slurmlink api`, the kube
stand-in)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.deploy.check_config import Result, check_config, example_configs, examples_dir, service_of, stage_site

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="job roots are root-owned")


def test_the_examples_are_found() -> None:
    assert {path.stem for path in example_configs()} >= {"api-dev", "api-mode1", "api-mode2", "api-mode2-checkin",
                                                          "proxy", "vk"}


@pytest.mark.parametrize("example", example_configs(), ids=lambda path: path.stem)
def test_every_example_passes_in_a_prepared_site(example: Path, tmp_path: Path) -> None:
    service = service_of(example)
    assert service is not None
    stage_site(tmp_path, service, example)
    extra = ["--proxy-config", str(examples_dir() / "proxy.yaml")] if example.stem == "api-mode1" else []
    result = check_config(service, example, "--root", str(tmp_path), *extra)
    assert result.code == 0 and not result.errors(), "\n".join(result.lines) + result.stderr
    assert result.lines[0].startswith(f"ok      {example}: a valid {service} configuration")


def _staged(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A copy of example `name` and a site tree in which it passes."""
    example = examples_dir() / f"{name}.yaml"
    config = tmp_path / example.name
    shutil.copy(example, config)
    root = tmp_path / "site"
    service = service_of(example)
    assert service is not None
    stage_site(root, service, config)
    return config, root


def _edit(config: Path, **changes: object) -> None:
    data = yaml.safe_load(config.read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = data
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    config.write_text(yaml.safe_dump(data))


def _fails(result: Result, config: Path, subject: str, words: str) -> None:
    """Exit code 2 and an error line naming the file, `subject` (key or variable) and saying `words`."""
    assert result.code == 2, "\n".join(result.lines)
    wanted = f"{config}: {subject}"
    assert any(line.startswith(f"error   {wanted}") and words in line for line in result.errors()), (
        f"no error about {wanted} saying {words!r} in:\n" + "\n".join(result.lines))


def test_a_misspelt_key(tmp_path: Path) -> None:
    config, root = _staged(tmp_path, "api-mode2")
    config.write_text(config.read_text().replace("poll_interval:", "poll_intervall:"))
    _fails(check_config("api", config, "--root", str(root)), config, "poll_intervall", "Extra inputs")


def test_a_value_of_the_wrong_type(tmp_path: Path) -> None:
    config, root = _staged(tmp_path, "vk")
    _edit(config, kubelet__port="ten-two-fifty")
    _fails(check_config("vk", config, "--root", str(root)), config, "kubelet.port", "integer")


def test_an_environment_variable_with_a_bad_value(tmp_path: Path) -> None:
    config, root = _staged(tmp_path, "api-mode2")
    result = check_config("api", config, "--root", str(root), env={"SLURMLINK_SITE__DEFAULT_CPUS": "0"})
    _fails(result, config, "SLURMLINK_SITE__DEFAULT_CPUS (site.default_cpus)", "greater than or equal to 1")


def test_an_environment_variable_naming_a_missing_file(tmp_path: Path) -> None:
    config, root = _staged(tmp_path, "api-mode2")
    result = check_config("api", config, "--root", str(root),
                          env={"SLURMLINK_AUTH__BEARER_TOKEN_FILE": "/etc/slurmlink/no-such-token"})
    _fails(result, config, "SLURMLINK_AUTH__BEARER_TOKEN_FILE (auth.bearer_token_file)", "does not exist")


def test_a_missing_secret_file(tmp_path: Path) -> None:
    config, root = _staged(tmp_path, "proxy")
    (root / "etc/slurm/jwt_hs256.key").unlink()
    _fails(check_config("proxy", config, "--root", str(root)), config, "jwt_key_file", "does not exist")


@pytest.mark.parametrize(("name", "service", "key", "path"), [
    ("api-mode2", "api", "auth.bearer_token_file", "etc/slurmlink/vk-token"),
    ("vk", "vk", "kube.kubeconfig", "etc/slurmlink/vk.kubeconfig"),
    ("proxy", "proxy", "tls.key_file", "etc/slurmlink/tls.key"),
    ("api-mode2-checkin", "api", "identity.mapping.1.alise.apikey_file", "etc/slurmlink/alise.key"),
])
def test_a_world_readable_secret(tmp_path: Path, name: str, service: str, key: str, path: str) -> None:
    config, root = _staged(tmp_path, name)
    (root / path).chmod(0o644)
    _fails(check_config(service, config, "--root", str(root)), config, key, "world-readable (mode 0644)")


def test_a_world_writable_static_map(tmp_path: Path) -> None:
    config, root = _staged(tmp_path, "api-mode2-checkin")
    (root / "etc/slurmlink/users.txt").chmod(0o666)
    _fails(check_config("api", config, "--root", str(root)), config, "identity.mapping.0.static.path", "writable")


def test_job_root_differs_between_api_and_proxy(tmp_path: Path) -> None:
    config, root = _staged(tmp_path, "api-mode1")
    proxy = tmp_path / "proxy.yaml"
    shutil.copy(examples_dir() / "proxy.yaml", proxy)
    _edit(proxy, files__job_root="/scratch/other")
    result = check_config("api", config, "--root", str(root), "--proxy-config", str(proxy))
    _fails(result, config, "job_root", f"differs from files.job_root /scratch/other in {proxy}")


def test_sbatch_not_found(tmp_path: Path) -> None:
    config, root = _staged(tmp_path, "api-mode2")
    (root / "usr/bin/sbatch").unlink()
    _fails(check_config("api", config, "--root", str(root)), config, "cli.bin_dir", "sbatch not found")


def test_sbatch_not_in_bin_dir(tmp_path: Path) -> None:
    config, root = _staged(tmp_path, "api-mode2")
    (root / "opt/slurm/bin").mkdir(parents=True)
    _edit(config, cli__bin_dir="/opt/slurm/bin")
    _fails(check_config("api", config, "--root", str(root)), config, "cli.bin_dir", "not found in /opt/slurm/bin")


@pytest.mark.parametrize(("name", "service", "key", "mode", "words"), [
    ("api-mode2", "api", "job_root", 0o1777, "writable by others"),
    ("api-mode2", "api", "job_root", 0o700, "not searchable by others"),
    ("proxy", "proxy", "files.job_root", 0o733, "without the sticky bit"),
    ("proxy", "proxy", "files.job_root", 0o711, "writable and searchable by all"),
])
def test_a_job_root_with_the_wrong_mode(tmp_path: Path, name: str, service: str, key: str, mode: int,
                                        words: str) -> None:
    config, root = _staged(tmp_path, name)
    job_root = yaml.safe_load(config.read_text())
    path = job_root["job_root"] if service == "api" else job_root["files"]["job_root"]
    (root / path.lstrip("/")).chmod(mode)
    _fails(check_config(service, config, "--root", str(root)), config, key, words)


def test_a_config_that_is_not_yaml(tmp_path: Path) -> None:
    config = tmp_path / "vk.yaml"
    config.write_text("node: {name: [unclosed\n")
    result = check_config("vk", config)
    assert result.code == 2 and result.errors()[0].startswith(f"error   {config}: not valid YAML")
