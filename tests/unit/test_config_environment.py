"""SLURMLINK_* overrides are read by the type of the key they set (Helm, compose and systemd pass strings), and
every error names the variable, with or without a configuration file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slurmlink.api.config import ApiConfig
from slurmlink.config import ConfigError, load_config
from slurmlink.proxy.config import ProxyConfig
from slurmlink.vk.config import VkConfig

IDENTITY = "{issuers: [{preset: egi-production}], policy: {vos: [vo.example.org]}, mapping: [{pool: {digits: 3}}]}"


def error(model: type[Any], environ: dict[str, str], path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(model, path, environ=environ)
    return str(caught.value)


def test_text_keys_keep_the_value_as_it_is() -> None:
    config = load_config(ApiConfig, None, environ={
        "SLURMLINK_SITE__PARTITION": "2024", "SLURMLINK_USERS__DEFAULT": "007", "SLURMLINK_SITE__PATH": "a: b",
        "SLURMLINK_USERS__NAMESPACES__TEAM": "[x]", "SLURMLINK_SITE__RUNTIME": "bwrap"})
    assert (config.site.partition, config.users.default, config.site.path) == ("2024", "007", "a: b")
    assert (config.users.namespaces, config.site.runtime) == ({"team": "[x]"}, "bwrap")
    vk = load_config(VkConfig, None, environ={"SLURMLINK_NODE__NAME": "007", "SLURMLINK_NODE__LABELS": "{a: 007}"})
    assert (vk.node.name, vk.node.labels) == ("007", {"a": "007"})


def test_other_keys_still_take_numbers_booleans_lists_and_mappings() -> None:
    config = load_config(ApiConfig, None, environ={
        "SLURMLINK_POLL_INTERVAL": "5", "SLURMLINK_SITE__ALLOW_PRE_EXEC": "true", "SLURMLINK_SITE__DEFAULT_CPUS": "4",
        "SLURMLINK_SITE__ALLOWED_OPTIONS": "[--qos, 007]", "SLURMLINK_SITE__GRES": "{nvidia.com/gpu: gpu}"})
    assert (config.poll_interval, config.site.allow_pre_exec, config.site.default_cpus) == (5.0, True, 4)
    assert config.site.allowed_options == ["--qos", "007"]  # a list of names: its items stay text
    assert config.site.gres == {"nvidia.com/gpu": "gpu"}
    proxy = load_config(ProxyConfig, None, environ={"SLURMLINK_IDENTITY": IDENTITY, "SLURMLINK_TOKEN_FILE": "t"})
    assert proxy.identity.mapping[0].kind == "pool" and proxy.identity.mapping[0].digits == 3  # type: ignore[union-attr]


def test_an_empty_value_or_null_unsets_a_key_that_may_be_unset() -> None:
    env = {"SLURMLINK_SITE__DEFAULT_TIME_MINUTES": "", "SLURMLINK_SITE__PARTITION": "null"}
    config = load_config(ApiConfig, None, environ=env)
    assert (config.site.default_time_minutes, config.site.partition) == (None, None)
    assert load_config(ApiConfig, None, environ={"SLURMLINK_SITE__PATH": ""}).site.path == ""  # text, not optional


def test_a_bad_value_names_the_variable_and_never_defaults(tmp_path: Path) -> None:
    for path in (None, tmp_path / "absent.yaml"):
        if path is not None:
            path.write_text("site: {partition: cpu}\n")
        message = error(ApiConfig, {"SLURMLINK_POLL_INTERVAL": "fast"}, path)
        assert "SLURMLINK_POLL_INTERVAL (poll_interval)" in message and "defaults" not in message
    message = error(ApiConfig, {"SLURMLINK_SITE__ALLOW_PRE_EXEC": "maybe"})
    assert message.startswith("SLURMLINK_SITE__ALLOW_PRE_EXEC (site.allow_pre_exec): Input should be a valid boolean")


def test_a_missing_key_without_a_file_is_named_without_defaults() -> None:
    assert error(ProxyConfig, {}) == "identity: Field required"


def test_an_unknown_key_under_a_known_section_names_the_variable() -> None:
    message = error(ApiConfig, {"SLURMLINK_SITE__PARTITON": "gpu"})
    assert message.startswith("SLURMLINK_SITE__PARTITON: site has no key 'partiton' (known: allow_pre_exec")
    message = error(VkConfig, {"SLURMLINK_KUBELET__CSR__STATEFILE": "/x"})
    assert message.startswith("SLURMLINK_KUBELET__CSR__STATEFILE: kubelet.csr has no key 'statefile'")


def test_below_a_list_or_a_value_is_not_a_section() -> None:
    message = error(ApiConfig, {"SLURMLINK_SITE__ALLOWED_OPTIONS__0": "--qos"})
    assert message == ("SLURMLINK_SITE__ALLOWED_OPTIONS__0: site.allowed_options is not a section; set it whole "
                       "(SLURMLINK_SITE__ALLOWED_OPTIONS=...)")
    assert error(ApiConfig, {"SLURMLINK_POLL_INTERVAL__X": "1"}).startswith("SLURMLINK_POLL_INTERVAL__X: poll_interval")


def test_variables_of_other_commands_are_left_alone() -> None:
    env = {"SLURMLINK_API_URL": "http://x", "SLURMLINK_LOG_FORMAT": "json", "SLURMLINK_TEST_STATE_DIR": "/x"}
    assert load_config(ApiConfig, None, environ=env).listen.port == 3000


def test_a_section_level_problem_lists_the_variables_that_took_part() -> None:
    message = error(ProxyConfig, {"SLURMLINK_IDENTITY": IDENTITY, "SLURMLINK_JWT_KEY_FILE": "k",
                                  "SLURMLINK_TOKEN_FILE": "t"})
    assert message.startswith("give exactly one of jwt_key_file and token_file")
    assert "set from the environment: SLURMLINK_IDENTITY, SLURMLINK_JWT_KEY_FILE, SLURMLINK_TOKEN_FILE" in message


def test_malformed_yaml_in_a_variable_names_it() -> None:
    assert error(ApiConfig, {"SLURMLINK_SITE__GRES": "{a: [b"}).startswith("SLURMLINK_SITE__GRES: not valid YAML")


def test_a_variable_cannot_go_below_a_value_the_file_sets(tmp_path: Path) -> None:
    path = tmp_path / "api.yaml"
    path.write_text("users: x\n")
    assert error(ApiConfig, {"SLURMLINK_USERS__DEFAULT": "y"}, path) == (
        "SLURMLINK_USERS__DEFAULT: users is set to a value, not a section")
