"""Strategy `service_account`: one shared account per VO."""

from __future__ import annotations

from typing import Literal

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
    kind: Literal["service_account"] = "service_account"
    name: str = "service"
    default: str | None = None
    setting: str = "service_account"

    def build(self) -> ServiceAccount:
        return ServiceAccount(self.default, setting=self.setting, name=self.name)
