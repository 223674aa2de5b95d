"""Configuration of the identity layer, shared by `slurmlink api` (mode 2) and `slurmlink proxy` (mode 1).

    identity:
      issuers:
        - preset: egi-production          # or issuer: https://...
          audience: null                  # required `aud`, if any
      policy:                             # who may use the site (AARC-G002 entitlements)
        vos: [vo.example.org]
      mapping:                            # tried in order, first match wins
        - static: {path: /etc/slurmlink/users.yaml}
        - alise: {url: https://alise.example.org, site: hpc, apikey_file: /etc/slurmlink/alise.key}
        - pool: {prefix: egi, digits: 3, first: 1, last: 100, url: "sqlite:////var/lib/slurmlink/pool.sqlite"}
        - template: {template: "{preferred_username}"}
        - service_account: {default: egi-service}
      accounts: {min_uid: 1000, slurm_user: slurm}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slurmlink.identity import mapping as strategies
from slurmlink.identity.entitlements import EntitlementPolicy
from slurmlink.identity.oidc import IssuerConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssuerSection(Strict):
    preset: str | None = None  # egi-production | egi-demo | egi-development
    issuer: str | None = None
    audience: str | None = None
    client_id: str | None = None  # with client_secret_file: introspection instead of userinfo
    client_secret_file: str | None = None
    leeway_seconds: int = 30
    min_lifetime_seconds: int = 0
    user_key_claim: str = "voperson_id"

    @model_validator(mode="after")
    def _one_issuer(self) -> IssuerSection:
        if (self.preset is None) == (self.issuer is None):
            raise ValueError("give exactly one of preset and issuer")
        return self

    def build(self) -> IssuerConfig:
        options: dict[str, Any] = {
            "audience": self.audience, "leeway_seconds": self.leeway_seconds,
            "min_lifetime_seconds": self.min_lifetime_seconds, "user_key_claim": self.user_key_claim,
        }
        if self.client_id:
            options["client_id"] = self.client_id
            options["client_secret"] = Path(self.client_secret_file or "").read_text().strip()
        if self.preset:
            return IssuerConfig.preset(self.preset, **options)
        return IssuerConfig(issuer=str(self.issuer), **options)


class AccountsSection(Strict):
    min_uid: int = 1000
    slurm_user: str = "slurm"
    deny_users: list[str] = Field(default_factory=lambda: ["nobody", "nfsnobody"])


class IdentityConfig(Strict):
    issuers: list[IssuerSection]
    policy: dict[str, Any]  # see slurmlink.identity.entitlements.EntitlementPolicy.from_dict
    mapping: list[dict[str, dict[str, Any]]]  # one {strategy: options} per step
    accounts: AccountsSection = Field(default_factory=AccountsSection)

    def build_policy(self) -> EntitlementPolicy:
        return EntitlementPolicy.from_dict(self.policy)

    def build_mapper(self) -> strategies.Mapper:
        chain: list[strategies.Strategy] = [_strategy(step) for step in self.mapping]
        accounts = strategies.AccountPolicy(min_uid=self.accounts.min_uid, slurm_user=self.accounts.slurm_user,
                                         deny_users=frozenset(self.accounts.deny_users))
        return strategies.Mapper(chain, accounts)


def _strategy(step: dict[str, dict[str, Any]]) -> strategies.Strategy:
    if len(step) != 1:
        raise ValueError(f"mapping step {step!r}: give one strategy per step")
    [(kind, options)] = step.items()
    options = dict(options or {})
    if kind == "static":
        return strategies.StaticMap(options.pop("path"), **options)
    if kind == "alise":
        apikey = Path(options.pop("apikey_file")).read_text().strip()
        client = strategies.AliseClient(options.pop("url"), options.pop("site"), apikey, **options)
        return strategies.Alise(client)
    if kind == "pool":
        return strategies.Pool(**options)
    if kind == "template":
        return strategies.ClaimTemplate(**options)
    if kind == "service_account":
        return strategies.ServiceAccount(**options)
    raise ValueError(f"mapping strategy {kind!r} is not one of static, alise, pool, template, service_account")
