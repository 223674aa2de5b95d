"""From the `identity:` section to working objects, when a service starts: the one place an `Authorizer` (token
validator + entitlement policy + account mapper) is built, for `slurmlink api` and `slurmlink proxy` alike.

Building reads what loading could not: secret files, static maps, the pool database. Any failure is a
`ConfigError` naming the key, so every command reports it the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from slurmlink.config import ConfigError
from slurmlink.identity.authorizer import Authorizer
from slurmlink.identity.config import IdentityConfig, IssuerSection
from slurmlink.identity.entitlements import EntitlementPolicy
from slurmlink.identity.mapping import AccountPolicy, Mapper, MappingError, Strategy
from slurmlink.identity.oidc import IssuerConfig, TokenValidator


def build_authorizer(config: IdentityConfig, key: str = "identity") -> Authorizer:
    issuers = build_issuers(config.issuers, f"{key}.issuers")
    policy = config.policy.build()
    mapper = build_mapper(config, key)
    check_vo_settings(mapper, policy, f"{key}.policy.vos")
    return Authorizer(TokenValidator(issuers), policy, mapper)


def build_issuers(sections: Sequence[IssuerSection], key: str) -> list[IssuerConfig]:
    issuers = []
    for i, section in enumerate(sections):
        secret = None
        if section.client_secret_file is not None:
            secret = _read_secret(section.client_secret_file, f"{key}.{i}.client_secret_file")
        issuers.append(section.build(secret))
    return issuers


def build_mapper(config: IdentityConfig, key: str = "identity") -> Mapper:
    chain: list[Strategy] = []
    for i, step in enumerate(config.mapping):
        try:
            chain.append(step.build())
        except (OSError, ValueError, MappingError) as exc:
            raise ConfigError(f"{key}.mapping.{i}.{step.kind}: {_why(exc)}") from exc
        except Exception as exc:  # e.g. the pool's database: whatever the driver raises, it is set-up that failed
            raise ConfigError(f"{key}.mapping.{i}.{step.kind}: cannot be set up ({type(exc).__name__}: {exc})") from exc
    accounts = AccountPolicy(min_uid=config.accounts.min_uid, slurm_user=config.accounts.slurm_user,
                             deny_users=frozenset(config.accounts.deny_users))
    return Mapper(chain, accounts)


def check_vo_settings(mapper: Mapper, policy: EntitlementPolicy, key: str) -> None:
    """A VO whose settings name an unconfigured strategy would refuse every member: say so at start instead."""
    for i, rule in enumerate(policy.vos):
        try:
            mapper.check_vo_settings(rule.name, rule.settings)
        except ValueError as exc:
            raise ConfigError(f"{key}.{i}.settings.strategies: {exc}") from exc


def _read_secret(path: str, key: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from exc


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"cannot read {exc.filename}: {exc.strerror}"
    return str(exc)
