"""Which local account a pod's job runs as: one resolver, chosen once at start-up from the configuration.

- mode 1 (`backend: rest`): the account the site's proxy maps the pod's own Check-in token to;
- mode 2 with `identity:` configured: the pod's own Check-in identity, mapped by the authorizer;
- mode 2 without: the namespace's account from `users:` (or its default).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from slurmlink.api.config import ApiConfig, UsersConfig
from slurmlink.api.errors import NotReady
from slurmlink.core.errors import PodRejected
from slurmlink.identity.authorizer import AccessDenied, Authorizer
from slurmlink.identity.build import build_authorizer
from slurmlink.identity.pod_token import ACCESS_TOKEN_KEY, access_token, token_secret
from slurmlink.identity.refresh import Credentials
from slurmlink.slurm.base import PodTokenVisibility, SchedulerBackend, SlurmError
from slurmlink.wire.interlink import CreateRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodAccount:
    """Who a pod's job runs as, and the VOs its owner is an admitted member of, in the site's order (None:
    not known here; mode 1's proxy decides them, and `users:` knows none)."""

    user: str
    vos: tuple[str, ...] | None = None
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # roles held per group path (Decision.groups)


class AccountResolver(Protocol):
    async def account_for(self, request: CreateRequest) -> PodAccount:
        """The pod's account; PodRejected when it has none, NotReady when it cannot be known right now."""

    async def sent_again(self, request: CreateRequest) -> None:
        """A pod that already has a job was sent again (it may carry a new token)."""

    async def aclose(self) -> None:
        """Release connections."""


class NamespaceAccounts:
    """The account `users:` configures for the pod's namespace."""

    def __init__(self, users: UsersConfig) -> None:
        self.users = users

    async def account_for(self, request: CreateRequest) -> PodAccount:
        user = self.users.namespaces.get(request.namespace) or self.users.default
        if not user:
            raise PodRejected(f"no local account is configured for namespace {request.namespace}",
                              "NoAccountMapping")
        return PodAccount(user)

    async def sent_again(self, request: CreateRequest) -> None:
        return None

    async def aclose(self) -> None:
        return None


class CheckinAccounts:
    """The account the authorizer maps the pod's own Check-in token to."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    async def account_for(self, request: CreateRequest) -> PodAccount:
        token = access_token(request.pod, request.secrets)
        try:
            grant = await self.authorizer.authorize(token, action="create",
                                                    client=f"pod {request.namespace}/{request.name}")
        except AccessDenied as exc:
            if exc.transient:
                raise NotReady(exc.message) from exc
            raise PodRejected(exc.message, exc.reason) from exc
        return PodAccount(grant.username, grant.decision.vos, grant.decision.groups)

    async def sent_again(self, request: CreateRequest) -> None:
        return None

    async def aclose(self) -> None:
        await self.authorizer.aclose()


class SiteProxyAccounts:
    """Mode 1: the account the site's proxy maps the pod's token to; the backend keeps the token for it."""

    def __init__(self, pod_tokens: PodTokenVisibility) -> None:
        self.pod_tokens = pod_tokens

    async def account_for(self, request: CreateRequest) -> PodAccount:
        credentials = Credentials.from_secret(token_secret(request.pod, request.secrets))
        if not credentials.access_token:
            raise PodRejected(f"the token Secret has no key {ACCESS_TOKEN_KEY!r}", "NoToken")
        try:
            user = await self.pod_tokens.user_for_token(credentials)
        except SlurmError as exc:
            if exc.transient:
                raise NotReady(f"the site's proxy is unavailable: {exc.message}") from exc
            raise PodRejected(f"the site refused the pod's token: {exc.message}", "TokenRefused") from exc
        if not user:
            raise PodRejected("the backend does not map tokens to accounts", "NoAccountMapping")
        return PodAccount(user)

    async def sent_again(self, request: CreateRequest) -> None:
        """A pod sent again may carry an updated token Secret (the way a user revives an expired token)."""
        try:
            await self.account_for(request)
        except (PodRejected, NotReady) as exc:
            log.info("pod %s/%s sent again with a token that cannot be used: %s", request.namespace,
                     request.name, exc)

    async def aclose(self) -> None:
        return None


def choose_resolver(config: ApiConfig, backend: SchedulerBackend) -> AccountResolver:
    if isinstance(backend, PodTokenVisibility):
        return SiteProxyAccounts(backend)
    if config.identity is not None:
        return CheckinAccounts(build_authorizer(config.identity))
    return NamespaceAccounts(config.users)
