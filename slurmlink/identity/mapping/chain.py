"""The chain of strategies: first match wins, an error stops it, the result passes the account safety check."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from slurmlink.identity.entitlements import Decision

from .accounts import AccountPolicy
from .base import MappingError, MappingRequest, MappingResult, Strategy

log = logging.getLogger(__name__)


class Mapper:
    """The chain. VO settings may narrow it: `strategies: [static, service]` keeps only those, in chain order."""

    def __init__(self, strategies: Sequence[Strategy], accounts: AccountPolicy | None = None) -> None:
        names = [s.name for s in strategies]
        if not strategies:
            raise ValueError("the mapping chain needs at least one strategy")
        if len(set(names)) != len(names):
            raise ValueError(f"mapping strategy names must be unique, got {names}")
        self.strategies = tuple(strategies)
        self.accounts = accounts or AccountPolicy()

    def check_vo_settings(self, vo: str, settings: Mapping[str, Any]) -> None:
        """Raise ValueError if a VO's settings name strategies that are not configured (call at start)."""
        self._chain_for(vo, settings, error=ValueError)

    async def map(self, issuer: str, subject: str, claims: Mapping[str, Any], decision: Decision) -> MappingResult:
        if not decision.allowed:
            raise MappingError(f"not authorised: {decision.reason}")
        chain = self._chain_for(decision.vo, decision.vo_settings, error=MappingError)
        request = MappingRequest(issuer, subject, claims, decision, self.accounts.allows)
        for strategy in chain:
            try:
                username = await strategy.resolve(request)
            except MappingError:
                raise
            except Exception as exc:
                # A bug or an unexpected library error must refuse, not fall through to the next strategy.
                log.exception("mapping strategy %s failed", strategy.name)
                raise MappingError(f"mapping strategy {strategy.name} failed ({type(exc).__name__})") from exc
            if username is None:
                continue
            await asyncio.to_thread(self.accounts.check, username, subject)  # NSS may block (LDAP)
            reason = f"{strategy.description or strategy.name} mapped {subject} to {username}"
            return MappingResult(username, strategy.name, reason)
        tried = ", ".join(s.name for s in chain)
        raise MappingError(f"no local account for {subject} from {issuer} (tried {tried})")

    async def aclose(self) -> None:
        for strategy in self.strategies:
            await strategy.aclose()

    def _chain_for(self, vo: str | None, settings: Mapping[str, Any],
                   error: type[Exception]) -> tuple[Strategy, ...]:
        wanted = settings.get("strategies")
        if wanted is None:
            return self.strategies
        if isinstance(wanted, str):
            wanted = [wanted]
        if not isinstance(wanted, Sequence) or not all(isinstance(w, str) for w in wanted):
            raise error(f"VO {vo}: setting 'strategies' must be a list of strategy names")
        unknown = sorted(set(wanted) - {s.name for s in self.strategies})
        if unknown:
            raise error(f"VO {vo} names mapping strategies {unknown} that are not configured "
                        f"(configured: {', '.join(s.name for s in self.strategies)})")
        return tuple(s for s in self.strategies if s.name in wanted)
