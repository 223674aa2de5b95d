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
        - pool: {prefix: egi, digits: 3, first: 1, last: 100}   # url: default <state_dir>/pool.sqlite
        - template: {template: "{preferred_username}"}
        - service_account: {default: egi-service}
      accounts: {min_uid: 1000, slurm_user: slurm}

Everything here is checked when the file is loaded; what needs files or databases (secrets, maps, the pool) is
read when the service starts (slurmlink.identity.build).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from slurmlink.config import Strict
from slurmlink.identity.entitlements import PolicySection
from slurmlink.identity.mapping import MappingStep, PoolOptions
from slurmlink.identity.mapping.pool import default_url
from slurmlink.identity.oidc import CHECKIN_PRESETS, IssuerConfig


class IssuerSection(Strict):
    preset: str | None = Field(default=None, description=(
        "a Check-in issuer by name: `egi-production`, `egi-demo` or `egi-development` (or give `issuer`)"))
    issuer: str | None = Field(default=None, description=(
        "the issuer's exact URL; discovery and keys are fetched only from pinned issuers, never from a token's "
        "own `iss`"))
    audience: str | None = Field(default=None, description="require this `aud`")
    client_id: str | None = Field(default=None, description=(
        "with `client_secret_file`: token introspection (a confidential client) instead of userinfo"))
    client_secret_file: str | None = Field(default=None, description="the file holding `client_id`'s secret")
    leeway_seconds: int = Field(default=30, description="clock skew allowed on `exp`/`nbf`/`iat`")
    min_lifetime_seconds: int = Field(default=0, description="refuse tokens that expire sooner than this")
    max_token_lifetime_seconds: int | None = Field(default=86400, gt=0, description=(
        "refuse tokens issued for longer than this (`exp - iat`; Check-in's access tokens live 3600 s); null: "
        "any lifetime"))
    cache_ttl_seconds: float = Field(default=300.0, ge=0, description=(
        "how long a validated token's identity and claims (entitlements) are reused without asking the issuer; "
        "never past the token's expiry. Shorter: a revoked token or a left VO is noticed sooner, at one "
        "userinfo/introspection call per token per TTL"))
    user_key_claim: str = Field(default="voperson_id", description=(
        "the user's key within the issuer (falls back to `sub`)"))

    @model_validator(mode="after")
    def _valid(self) -> IssuerSection:
        if (self.preset is None) == (self.issuer is None):
            raise ValueError("give exactly one of preset and issuer")
        if self.preset is not None and self.preset not in CHECKIN_PRESETS:
            raise ValueError(f"unknown Check-in preset {self.preset!r}; known: {', '.join(CHECKIN_PRESETS)}")
        if (self.client_id is None) != (self.client_secret_file is None):
            raise ValueError("give both client_id and client_secret_file (introspection) or neither")
        self.build("(checked when read)" if self.client_id else None)  # the issuer's own checks, secret aside
        return self

    @property
    def url(self) -> str:
        return self.issuer or CHECKIN_PRESETS[self.preset or ""]

    def build(self, client_secret: str | None) -> IssuerConfig:
        return IssuerConfig(issuer=self.url, audience=self.audience, leeway_seconds=self.leeway_seconds,
                            min_lifetime_seconds=self.min_lifetime_seconds, user_key_claim=self.user_key_claim,
                            max_lifetime_seconds=self.max_token_lifetime_seconds,
                            claims_cache_ttl_seconds=self.cache_ttl_seconds,
                            client_id=self.client_id, client_secret=client_secret)


class AccountsSection(Strict):
    """Checks on every mapping result: root and unknown accounts are always refused."""

    min_uid: int = Field(default=1000, description="mapped accounts below this uid are refused")
    slurm_user: str = Field(default="slurm", description="the SlurmUser is never a mapping result")
    deny_users: list[str] = Field(default_factory=lambda: ["nobody", "nfsnobody"], description=(
        "accounts that are never a mapping result"))


class IdentityConfig(Strict):
    issuers: list[IssuerSection] = Field(min_length=1, description="the pinned token issuers")
    policy: PolicySection = Field(description="who may use the site (AARC-G002 entitlements)")
    mapping: list[MappingStep] = Field(min_length=1, description=(
        "ordered strategies, first match wins; each step is `{strategy: {options}}`"))
    accounts: AccountsSection = Field(default_factory=AccountsSection)

    @model_validator(mode="after")
    def _distinct(self) -> IdentityConfig:
        issuers = [section.url for section in self.issuers]
        twice = sorted({i for i in issuers if issuers.count(i) > 1})
        if twice:
            raise ValueError(f"issuer {twice[0]} is configured twice")
        names = [step.name for step in self.mapping]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"mapping steps need distinct names; {twice[0]!r} is used twice (set `name:`)")
        return self

    def keep_pools_in(self, state_dir: str) -> None:
        """Pool steps without a `url` keep their database in the service's state directory."""
        for step in self.mapping:
            if isinstance(step, PoolOptions) and step.url is None:
                step.url = default_url(state_dir)
