"""`slurmlink vk-node-delete`'s failures, each one line with its exit code (its success is tested against the
Kubernetes stand-in in tests/deploy/test_helm_chart.py)."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from slurmlink.cli import app
from tests.harness.ports import free_port


def _run(config: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["vk-node-delete", "-c", str(config)], env={"COLUMNS": "200"})
    return result.exit_code, " ".join(result.output.split())


def test_a_bad_configuration_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "vk.yaml"
    config.write_text(yaml.safe_dump({"node": {"name": "n", "nmae": "typo"}}))
    code, output = _run(config)
    assert code == 2 and "node.nmae" in output, output


def test_an_unreachable_apiserver_is_exit_1_naming_the_node(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    config = tmp_path / "vk.yaml"
    config.write_text(yaml.safe_dump({"node": {"name": "hpc-site-a"}, "kube": {"kubeconfig": str(kubeconfig)}}))
    code, output = _run(config)
    assert code == 1 and output.startswith("error: deleting node hpc-site-a:"), output
