"""Configuration: YAML plus SLURMLINK_* overrides; errors name the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurmlink import examples
from slurmlink.api.config import ApiConfig
from slurmlink.config import ConfigError, load_config


@pytest.mark.parametrize("name", ["api-mode2", "api-dev", "api-mode2-checkin"])
def test_examples_load(name: str) -> None:
    config = load_config(ApiConfig, examples.config_path(name), environ={})
    assert config.site.to_site().runtime in ("apptainer", "bwrap")


def test_environment_overrides_nested_keys(tmp_path: Path) -> None:
    path = tmp_path / "api.yaml"
    path.write_text("site: {partition: cpu}\n")
    env = {"SLURMLINK_SITE__PARTITION": "gpu", "SLURMLINK_POLL_INTERVAL": "5", "SLURMLINK_API_URL": "ignored"}
    config = load_config(ApiConfig, path, environ=env)
    assert (config.site.partition, config.poll_interval) == ("gpu", 5.0)


def test_misspelt_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "api.yaml"
    path.write_text("site: {partiton: cpu}\n")
    with pytest.raises(ConfigError, match=r"api\.yaml: site\.partiton"):
        load_config(ApiConfig, path, environ={})


def test_bad_value_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "api.yaml"
    path.write_text("site: {default_memory_mb: 1}\n")
    with pytest.raises(ConfigError, match="site.default_memory_mb"):
        load_config(ApiConfig, path, environ={})


def test_proxy_example_loads() -> None:
    from slurmlink.proxy.config import ProxyConfig

    config = load_config(ProxyConfig, examples.config_path("proxy"), environ={})
    assert config.upstream == "http://127.0.0.1:6820" and not config.allow_slurmdb
