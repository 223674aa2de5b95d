"""The `identity:` section: typed `mapping:` steps and `policy:`, checked when the file is loaded, and the one
builder of the authorizer, which reads files and checks VO settings when the service starts."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurmlink.api.config import ApiConfig
from slurmlink.config import ConfigError, load_config
from slurmlink.identity.build import build_authorizer, build_issuers
from slurmlink.identity.config import IdentityConfig
from slurmlink.identity.mapping import ClaimTemplate, Pool, ServiceAccount, StaticMap
from slurmlink.logs import RedactQueryParameter
from slurmlink.proxy.config import ProxyConfig

VO = "vo.example.org"
ISSUER = "https://aai.egi.eu/auth/realms/egi"


def identity(**overrides: Any) -> dict[str, Any]:
    section: dict[str, Any] = {"issuers": [{"preset": "egi-production"}], "policy": {"vos": [VO]},
                               "mapping": [{"service_account": {"default": "svc"}}]}
    section.update(overrides)
    return section


def load_api(tmp_path: Path, section: dict[str, Any], environ: dict[str, str] | None = None) -> ApiConfig:
    path = tmp_path / "api.yaml"
    path.write_text(yaml.safe_dump({"identity": section}))
    return load_config(ApiConfig, path, environ=environ or {})


def load_proxy(tmp_path: Path, section: dict[str, Any]) -> ProxyConfig:
    path = tmp_path / "proxy.yaml"
    path.write_text(yaml.safe_dump({"identity": section, "token_file": "/run/slurm.token"}))
    return load_config(ProxyConfig, path, environ={})


def load_error(tmp_path: Path, section: dict[str, Any]) -> str:
    """The error both services give for one `identity:` section (the same one: they share the model)."""
    with pytest.raises(ConfigError) as api:
        load_api(tmp_path, section)
    with pytest.raises(ConfigError) as proxy:
        load_proxy(tmp_path, section)
    assert str(api.value).replace("api.yaml", "FILE") == str(proxy.value).replace("proxy.yaml", "FILE")
    return str(api.value)


ALL_STEPS = [
    {"static": {"path": "/etc/slurmlink/users.yaml"}},
    {"alise": {"url": "https://alise.example.org", "site": "hpc", "apikey_file": "/etc/slurmlink/alise.key"}},
    {"pool": {"prefix": "egi", "digits": 3, "first": 1, "last": 100, "url": "sqlite:////tmp/pool.sqlite"}},
    {"template": {"template": "egi_{voperson_id:.8}"}},
    {"service_account": {"default": "egi-service"}},
]


def test_every_strategy_loads_and_dumps_back_to_the_same_shape(tmp_path: Path) -> None:
    config = load_api(tmp_path, identity(mapping=ALL_STEPS))
    assert config.identity is not None
    assert [step.kind for step in config.identity.mapping] == ["static", "alise", "pool", "template",
                                                              "service_account"]
    dumped = config.identity.model_dump(mode="json", exclude_none=True)
    for step, original in zip(dumped["mapping"], ALL_STEPS, strict=True):
        [(kind, options)] = step.items()
        assert kind in original and options.items() >= original[kind].items()
    assert IdentityConfig.model_validate(dumped) == config.identity


@pytest.mark.parametrize(("mapping", "expected"), [
    ([{"ldap": {"url": "x"}}], r"identity\.mapping\.0: unknown mapping strategy 'ldap'; known: static, alise"),
    ([{"static": {"path": "/x"}, "pool": {}}], r"identity\.mapping\.0: give one strategy per step"),
    (["static"], r"identity\.mapping\.0: "),
    ([{"pool": {"prefx": "egi"}}], r"identity\.mapping\.0\.pool\.prefx: Extra inputs"),
    ([{"pool": {"first": 5, "last": 2}}], r"identity\.mapping\.0\.pool: pool egi: need 1 <= first <= last"),
    ([{"static": {}}], r"identity\.mapping\.0\.static\.path: Field required"),
    ([{"static": {"path": "/x", "file_format": "csv"}}], r"identity\.mapping\.0\.static\.file_format"),
    ([{"template": {"template": "fixed"}}], r"identity\.mapping\.0\.template: .*uses no claim"),
    ([{"template": {"template": "{claims[0]}"}}], r"must be a plain claim name"),
    ([{"alise": {"url": "ftp://a", "site": "hpc", "apikey_file": "/k"}}], r"identity\.mapping\.0\.alise\.url"),
    ([{"pool": {}}, {"pool": {"prefix": "vo"}}], r"'pool' is used twice"),
    ([], r"identity\.mapping: List should have at least 1 item"),
])
def test_a_bad_mapping_step_fails_at_load_naming_its_key(tmp_path: Path, mapping: list[Any], expected: str) -> None:
    message = load_error(tmp_path, identity(mapping=mapping))
    assert message.startswith(str(tmp_path / "api.yaml") + ": ")
    assert re.search(expected, message), message


@pytest.mark.parametrize(("policy", "expected"), [
    ({"vos": [VO], "match": "sometimes"}, r"identity\.policy\.match: Input should be 'any' or 'all'"),
    ({"vos": [VO], "role": ["manager"]}, r"identity\.policy\.role: Extra inputs"),
    ({"vos": []}, r"identity\.policy: the entitlement policy needs at least one VO"),
    ({"vos": [VO, VO]}, r"VO listed twice"),
    ({"vos": ["urn:mace:egi.eu:group:vo"]}, r"is not a bare group name"),
    ({"vos": [{"roles": ["member"]}]}, r"identity\.policy\.vos\.0\..*name"),
    ({"vos": [{"name": VO, "roles": []}]}, r"roles cannot be an empty list"),
    ({}, r"identity\.policy\.vos: Field required"),
])
def test_a_bad_policy_fails_at_load_naming_its_key(tmp_path: Path, policy: dict[str, Any], expected: str) -> None:
    message = load_error(tmp_path, identity(policy=policy))
    assert re.search(expected, message), message


@pytest.mark.parametrize(("issuers", "expected"), [
    (None, r"identity\.issuers: Field required"),
    ([], r"identity\.issuers: List should have at least 1 item"),
    ([{"preset": "egi-staging"}], r"identity\.issuers\.0: unknown Check-in preset 'egi-staging'"),
    ([{"issuer": "http://aai.example.org"}], r"identity\.issuers\.0: issuer .* must be an https:// URL"),
    ([{"issuer": ISSUER, "client_id": "me"}], r"give both client_id and client_secret_file"),
    ([{"issuer": ISSUER, "leeway_seconds": 3600}], r"leeway_seconds must be within 0\.\.300"),
    ([{"preset": "egi-production"}, {"issuer": ISSUER}], r"identity: .*configured twice"),
    ([{"issuer": ISSUER, "max_token_lifetime_seconds": 0}], r"max_token_lifetime_seconds: .*greater than 0"),
    ([{"issuer": ISSUER, "cache_ttl_seconds": -1}], r"cache_ttl_seconds: .*greater than or equal to 0"),
])
def test_a_bad_issuer_fails_at_load_naming_its_key(tmp_path: Path, issuers: Any, expected: str) -> None:
    section = identity(issuers=issuers)
    if issuers is None:
        del section["issuers"]
    message = load_error(tmp_path, section)
    assert re.search(expected, message), message


def test_the_policy_is_built_as_configured(tmp_path: Path) -> None:
    policy = {"vos": [VO, {"name": "vo.other.org", "roles": "manager", "settings": {"service_account": "o"}}],
              "match": "any", "roles": ["member"], "assurance": "https://refeds.org/assurance/IAP/medium"}
    config = load_api(tmp_path, identity(policy=policy))
    assert config.identity is not None
    built = config.identity.policy.build()
    assert [(rule.name, rule.roles, dict(rule.settings)) for rule in built.vos] == [
        (VO, None, {}), ("vo.other.org", ("manager",), {"service_account": "o"})]
    assert (built.roles, built.assurance) == (("member",), ("https://refeds.org/assurance/IAP/medium",))


def test_the_authorizer_is_built_from_the_section(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text(f"{ISSUER} abc@egi.eu sltest1\n")
    mapping = [{"static": {"path": str(users)}}, {"pool": {"url": f"sqlite:///{tmp_path}/pool.sqlite"}},
               {"template": {"template": "{voperson_id}"}}, {"service_account": {}}]
    config = load_api(tmp_path, identity(mapping=mapping))
    assert config.identity is not None
    authorizer = build_authorizer(config.identity)
    kinds = [type(s) for s in authorizer.mapper.strategies]
    assert kinds == [StaticMap, Pool, ClaimTemplate, ServiceAccount]
    assert [i.issuer for i in authorizer.validator.issuers] == [ISSUER]
    assert authorizer.policy.vos[0].name == VO
    asyncio.run(authorizer.aclose())


def test_vo_settings_naming_an_unconfigured_strategy_fail_at_start(tmp_path: Path) -> None:
    policy = {"vos": [VO, {"name": "vo.other.org", "settings": {"strategies": ["alise"]}}]}
    config = load_api(tmp_path, identity(policy=policy))
    assert config.identity is not None
    with pytest.raises(ConfigError, match=r"^identity\.policy\.vos\.1\.settings\.strategies: VO vo\.other\.org "
                                          r"names mapping strategies \['alise'\] that are not configured"):
        build_authorizer(config.identity)


def test_files_that_cannot_be_read_at_start_name_their_key(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    steps = {"static": {"path": missing},
             "alise": {"url": "https://alise.example.org", "site": "hpc", "apikey_file": missing}}
    for kind, options in steps.items():
        config = load_api(tmp_path, identity(mapping=[{kind: options}]))
        assert config.identity is not None
        with pytest.raises(ConfigError, match=rf"^identity\.mapping\.0\.{kind}: .*{missing}.*No such file"):
            build_authorizer(config.identity)
    config = load_api(tmp_path, identity(issuers=[{"issuer": ISSUER, "client_id": "me",
                                                   "client_secret_file": missing}]))
    assert config.identity is not None
    with pytest.raises(ConfigError, match=r"^identity\.issuers\.0\.client_secret_file: cannot read"):
        build_authorizer(config.identity)


def test_client_secret_is_read_at_start(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    config = load_api(tmp_path, identity(issuers=[{"issuer": ISSUER, "client_id": "me",
                                                   "client_secret_file": str(secret)}]))
    assert config.identity is not None
    [issuer] = build_issuers(config.identity.issuers, "identity.issuers")
    assert (issuer.client_id, issuer.client_secret, issuer.introspects) == ("me", "s3cret", True)


def test_a_value_from_the_environment_names_its_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SLURMLINK_POLL_INTERVAL \(poll_interval\): Input should be greater"):
        load_api(tmp_path, identity(), environ={"SLURMLINK_POLL_INTERVAL": "-1"})
    with pytest.raises(ConfigError, match=r"^SLURMLINK_SITE: not valid YAML"):
        load_api(tmp_path, identity(), environ={"SLURMLINK_SITE": "[a"})


def test_the_alise_apikey_is_masked_in_logged_urls() -> None:
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s", (
        "GET", "https://alise.example.org/api/v1/x?apikey=s3cret&b=1"), None)
    assert RedactQueryParameter("apikey").filter(record)
    assert record.getMessage() == "HTTP Request: GET https://alise.example.org/api/v1/x?apikey=***&b=1"


def test_token_lifetime_and_cache_ttl_reach_the_validator(tmp_path: Path) -> None:
    default, = build_issuers(load_proxy(tmp_path, identity()).identity.issuers, "identity.issuers")
    assert (default.max_lifetime_seconds, default.claims_cache_ttl_seconds) == (86400, 300)
    section = identity(issuers=[{"preset": "egi-production", "max_token_lifetime_seconds": None,
                                 "cache_ttl_seconds": 30}])
    configured, = build_issuers(load_proxy(tmp_path, section).identity.issuers, "identity.issuers")
    assert (configured.max_lifetime_seconds, configured.claims_cache_ttl_seconds) == (None, 30)
