"""Strategy `service_account`: one shared account per VO."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import MappingError, MappingRequest, Strategy, StrategyOptions


class ServiceAccount(Strategy):
    """One shared account per VO: the VO's `service_account` setting, else `default` (None: no match)."""

    def __init__(self, default: str | None = None, *, setting: str = "service_account",
                 name: str = "service") -> None:
        self.name = name
        self.default = default
        self.setting = setting
        self.description = "VO service account"

    async def resolve(self, request: MappingRequest) -> str | None:
        account = request.decision.vo_settings.get(self.setting, self.default)
        if account is not None and not isinstance(account, str):
            raise MappingError(f"VO {request.decision.vo}: setting {self.setting} must be a user name")
        return account or None


class ServiceAccountOptions(StrategyOptions):
    """One shared account per VO: the VO's setting, else `default`."""

    kind: Literal["service_account"] = "service_account"
    name: str = Field(default="service", description=(
        "the step's name, which a VO's `settings.strategies: [...]` refers to; names must be distinct"))
    default: str | None = Field(default=None, description="the account when the VO names none")
    setting: str = Field(default="service_account", description="the VO setting that names the account")

    def build(self) -> ServiceAccount:
        return ServiceAccount(self.default, setting=self.setting, name=self.name)
