"""The configuration's exports from its models: docs/configuration.md's key tables and the JSON Schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from slurmlink import configref, examples

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_md_tables_are_generated_from_the_models() -> None:
    text = DOC.read_text()
    for name in configref.TABLES:
        assert f"<!-- BEGIN config reference {name} -->" in text, f"docs/configuration.md lost the {name} table"
    assert configref.update_markdown(text) == text, (
        f"docs/configuration.md's key tables differ from the models: run `.venv/bin/{configref.UPDATE_COMMAND}` "
        "and commit the result")


def test_every_key_is_described() -> None:
    silent = [f"{name}: {row.key}" for name in configref.TABLES for row in configref.rows(*configref.TABLES[name])
              if not row.meaning]
    assert silent == [], "add Field(description=...) (or a section docstring) for these keys"


def test_rows_show_type_bounds_default_and_meaning() -> None:
    proxy = {row.key: row for row in configref.rows(configref.MODELS["proxy"])}
    assert proxy["listen.port"] == configref.Row("listen.port", "integer ≥ 0, ≤ 65535", "`8443`", "port to serve on")
    assert proxy["identity"].meaning.endswith("its keys are listed as `identity.*`")  # not repeated per file
    assert proxy["files.job_root"].default == "required" and proxy["files"].default == "unset"
    api = {row.key: row for row in configref.rows(configref.MODELS["api"])}
    assert api["site.gres"].default == "`{nvidia.com/gpu: gpu, amd.com/gpu: gpu}`"
    assert api["rest.refresh_issuers"].type == "list of sections" and "rest.refresh_issuers[].preset" not in api
    identity = {row.key: row for row in configref.rows(*configref.TABLES["identity"])}
    assert identity["identity.mapping[].pool.prefix"].default == "`egi`"  # steps as written: `- pool: {prefix}`
    assert "identity.mapping[].pool.kind" not in identity
    assert identity["identity.policy.vos"].type == "list of (string or section)"


def test_update_markdown_rewrites_only_the_marked_tables() -> None:
    text = "before\n<!-- BEGIN config reference vk -->\nstale\n<!-- END config reference vk -->\nafter\n"
    new = configref.update_markdown(text)
    assert new.startswith("before\n<!-- BEGIN config reference vk -->\n<!-- generated")
    assert "| `node.name` | string | `slurmlink` |" in new and "stale" not in new
    assert new.endswith("<!-- END config reference vk -->\nafter\n")
    with pytest.raises(KeyError):
        configref.update_markdown("<!-- BEGIN config reference nope -->\n<!-- END config reference nope -->")


def _validator(service: str) -> Draft202012Validator:
    schema = configref.json_schema(service)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _service(example: str) -> str:
    return example.split("-")[0]


@pytest.mark.parametrize("name", examples.config_names())
def test_each_example_is_valid_under_its_schema(name: str) -> None:
    data = yaml.safe_load(examples.config_path(name).read_text())
    errors = _validator(_service(name)).iter_errors(data)
    assert [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors] == []


@pytest.mark.parametrize(("service", "data", "where"), [
    ("api", {"site": {"partiton": "gpu"}}, "site"),  # misspelt key
    ("api", {"poll_interval": 0}, "poll_interval"),  # bound
    ("proxy", {"token_file": "/t", "identity": {"issuers": [{"preset": "egi-production"}], "policy": {"vos": ["v"]},
                                                "mapping": [{"kind": "pool"}]}}, "identity.mapping.0"),
    ("vk", {"kubelet": {"tls": "letsencrypt"}}, "kubelet.tls"),
])
def test_the_schema_refuses_what_the_model_refuses(service: str, data: dict[str, Any], where: str) -> None:
    errors = list(_validator(service).iter_errors(data))
    assert errors and any(".".join(map(str, e.absolute_path)) == where for e in errors), errors


def test_mapping_steps_in_the_schema_are_written_as_in_yaml() -> None:
    base = {"token_file": "/t", "identity": {"issuers": [{"preset": "egi-production"}], "policy": {"vos": ["v"]}}}
    validator = _validator("proxy")
    for steps in ([{"pool": {"prefix": "x"}}], [{"pool": None}], [{"static": {"path": "/m"}}, {"template": {
            "template": "{sub}"}}]):
        data = {**base, "identity": {**base["identity"], "mapping": steps}}
        assert list(validator.iter_errors(data)) == [], steps
    for steps in ([{"pool": {"prefix": "x"}, "static": {"path": "/m"}}], [{"ldap": {}}], [{"pool": {"kind": "pool"}}]):
        data = {**base, "identity": {**base["identity"], "mapping": steps}}
        assert list(validator.iter_errors(data)) != [], steps
