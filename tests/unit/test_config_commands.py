"""`slurmlink --version` and `slurmlink config example|schema|reference`, run as the real CLI in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from slurmlink import configref, examples


def slurmlink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slurmlink.cli", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_version_comes_from_the_package_metadata() -> None:
    result = slurmlink("--version")
    assert (result.returncode, result.stdout) == (0, f"slurmlink {version('slurmlink')}\n")


def test_config_example_prints_a_shipped_file_and_lists_them() -> None:
    listed = slurmlink("config", "example")
    assert listed.stdout.split() == examples.config_names()
    assert {"vk", "proxy", "api-mode1", "api-mode2", "api-mode2-checkin", "api-dev"} <= set(examples.config_names())
    assert slurmlink("config", "example", "vk").stdout == examples.config_path("vk").read_text()


@pytest.mark.parametrize("name", ["nope", "../pyproject", "hello-pod"])
def test_unknown_example_is_refused_naming_the_examples(name: str) -> None:
    result = slurmlink("config", "example", name)
    assert result.returncode == 2 and result.stdout == ""
    assert f"no example named {name!r}; the examples are: {', '.join(examples.config_names())}" in result.stderr


def test_config_schema_prints_the_models_schema() -> None:
    result = slurmlink("config", "schema", "vk")
    assert result.returncode == 0 and json.loads(result.stdout) == configref.json_schema("vk")
    assert slurmlink("config", "schema", "kubelet").returncode == 2


def test_config_reference_updates_a_stale_document(tmp_path: Path) -> None:
    doc = tmp_path / "configuration.md"
    doc.write_text("intro\n<!-- BEGIN config reference proxy -->\nold\n<!-- END config reference proxy -->\n")
    result = slurmlink("config", "reference", "--update", str(doc))
    assert result.returncode == 0 and "updated" in result.stderr
    assert doc.read_text() == "intro\n<!-- BEGIN config reference proxy -->\n" + configref.table("proxy") + \
        "<!-- END config reference proxy -->\n"
    assert "already up to date" in slurmlink("config", "reference", "--update", str(doc)).stderr
