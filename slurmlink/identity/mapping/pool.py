"""Strategy `pool`: persistent pool accounts (`egi001`..`egi100`), assigned once and kept (see identity/pool.py)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Literal

from pydantic import Field, model_validator

from slurmlink.identity.pool import PoolExhausted, PoolStore

from .base import USERNAME_RE, MappingError, MappingRequest, Strategy, StrategyOptions

log = logging.getLogger(__name__)


def default_url(state_dir: str) -> str:
    """The pool database of a service that names none: SQLite in its state directory (one per service)."""
    return f"sqlite:///{os.path.join(state_dir, 'pool.sqlite')}"


def pool_accounts(prefix: str, digits: int, first: int, last: int) -> list[str]:
    """The pool's account names in order; ValueError if the range or a name is not valid."""
    if not 1 <= first <= last < 10 ** digits:
        raise ValueError(f"pool {prefix}: need 1 <= first <= last < 10**digits")
    candidates = [f"{prefix}{i:0{digits}d}" for i in range(first, last + 1)]
    bad = [c for c in (candidates[0], candidates[-1]) if not USERNAME_RE.fullmatch(c)]
    if bad:
        raise ValueError(f"pool {prefix}: {bad[0]!r} is not a valid user name")
    return candidates


class Pool(Strategy):
    """Pool accounts `prefix` + zero-padded number (`egi001`..`egi100`), assigned once and kept (see pool.py).

    Candidates that fail the safety check (not created yet, uid too low, ...) are skipped, so a partly created
    pool hands out the accounts that exist. Keyed by (issuer, subject).
    """

    def __init__(self, prefix: str = "egi", digits: int = 3, first: int = 1, last: int = 100, *,
                 store: PoolStore | None = None, url: str | None = None, name: str = "pool") -> None:
        self.candidates = pool_accounts(prefix, digits, first, last)
        self.name = name
        self.pool = prefix
        self.store = store if store is not None else PoolStore(url)
        self.description = f"pool {self.candidates[0]}..{self.candidates[-1]}"

    async def resolve(self, request: MappingRequest) -> str | None:
        try:
            return await asyncio.to_thread(self.store.assign, self.pool, request.issuer, request.subject,
                                           self.candidates, request.account_ok)
        except PoolExhausted:
            raise MappingError(f"no free pool account ({self.description})") from None
        except MappingError:
            raise
        except Exception as exc:
            log.exception("pool %s: database error", self.pool)
            raise MappingError(f"pool account database unavailable ({type(exc).__name__})") from exc

    async def aclose(self) -> None:
        self.store.dispose()


class PoolOptions(StrategyOptions):
    """Pool accounts `<prefix><number>`, each assigned to one user once and kept."""

    kind: Literal["pool"] = "pool"
    name: str = Field(default="pool", description=(
        "the step's name, which a VO's `settings.strategies: [...]` refers to; names must be distinct"))
    prefix: str = Field(default="egi", description="pool accounts are named `<prefix><number>`")
    digits: int = Field(default=3, description="the number's digits, zero-padded (`egi001`)")
    first: int = Field(default=1, description="the first account's number")
    last: int = Field(default=100, description="the last account's number")
    url: str | None = Field(default=None, description=(
        "the database of assignments (any SQLAlchemy URL); unset: `pool.sqlite` in the service's `state_dir`"))

    @model_validator(mode="after")
    def _valid_range(self) -> PoolOptions:
        pool_accounts(self.prefix, self.digits, self.first, self.last)
        return self

    def build(self) -> Pool:
        return Pool(self.prefix, self.digits, self.first, self.last, url=self.url, name=self.name)
