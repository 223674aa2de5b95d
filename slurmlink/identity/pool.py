"""Persistent pool-account assignment (e.g. `egi001`..`egi100`), shared safely between replicas.

An assignment is a row (pool, username, issuer, subject). Two unique constraints carry the safety: the username
is the primary key (one account never serves two people, even across pools) and (pool, issuer, subject) is
unique (one person gets one account per pool). Two replicas racing for the same free account both try to
insert; the database lets exactly one win and the loser retries with a fresh view. Any SQLAlchemy URL works:
SQLite for one host, PostgreSQL when replicas share the pool.

Assignments never expire on their own: files and jobs of the previous holder would otherwise become the next
holder's. `release()` is for an administrator who has cleaned the account.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    insert,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from slurmlink.core.errors import SlurmlinkError

log = logging.getLogger(__name__)

_metadata = MetaData()
assignments = Table(
    "slurmlink_pool_assignments",
    _metadata,
    Column("username", String(32), primary_key=True),
    Column("pool", String(64), nullable=False),
    Column("issuer", String(1024), nullable=False),
    Column("subject", String(1024), nullable=False),
    Column("assigned_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("pool", "issuer", "subject", name="uq_slurmlink_pool_owner"),
)


class PoolExhausted(SlurmlinkError):
    """Every usable account of the pool is taken."""


class PoolStore:
    """Assignments in one database. Methods block (they do database I/O): call them from a worker thread."""

    def __init__(self, url: str | None = None, *, engine: Engine | None = None, max_attempts: int = 8) -> None:
        if engine is None and url is None:
            raise ValueError("the pool needs a database url (a service's default is <state_dir>/pool.sqlite)")
        self.engine = engine if engine is not None else make_engine(url or "")
        self.max_attempts = max_attempts
        _metadata.create_all(self.engine)  # idempotent; safe to run from every replica at start

    def lookup(self, pool: str, issuer: str, subject: str) -> str | None:
        with self.engine.connect() as conn:
            return self._owned(conn, pool, issuer, subject)

    def assign(self, pool: str, issuer: str, subject: str, candidates: Iterable[str],
               usable: Callable[[str], bool] = lambda _name: True) -> str:
        """The account this person holds in `pool`, assigning the first free usable candidate if none yet."""
        names = list(candidates)
        for attempt in range(self.max_attempts):
            try:
                with self.engine.begin() as conn:
                    held = self._owned(conn, pool, issuer, subject)
                    if held is not None:
                        return held
                    # All names, not just this pool's: the username is unique across pools (and no IN-list limit).
                    taken = set(conn.scalars(select(assignments.c.username)))
                    free = next((n for n in names if n not in taken and usable(n)), None)
                    if free is None:
                        raise PoolExhausted(pool)
                    conn.execute(insert(assignments).values(
                        username=free, pool=pool, issuer=issuer, subject=subject, assigned_at=datetime.now(UTC)))
                    log.info("pool %s: assigned %s", pool, free)
                    return free
            except IntegrityError:
                # Another replica (or request) took this account, or assigned this person, first: look again.
                log.debug("pool %s: assignment race lost (attempt %d), retrying", pool, attempt + 1)
            except OperationalError as exc:
                # SQLite "database is locked" after its busy timeout: transient under contention.
                if "locked" not in str(exc).lower() or attempt + 1 == self.max_attempts:
                    raise
            time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))  # noqa: S311 - jitter, not a secret
        raise RuntimeError(f"pool {pool}: could not assign an account after {self.max_attempts} attempts")

    def release(self, pool: str, issuer: str, subject: str) -> str | None:
        """Forget this person's account in `pool` (administrative: clean the account first). Returns it."""
        with self.engine.begin() as conn:
            held = self._owned(conn, pool, issuer, subject)
            if held is not None:
                conn.execute(delete(assignments).where(assignments.c.username == held))
            return held

    def all(self, pool: str) -> dict[str, tuple[str, str]]:
        """username -> (issuer, subject), for inspection and tests."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(assignments.c.username, assignments.c.issuer, assignments.c.subject)
                                .where(assignments.c.pool == pool))
            return {r.username: (r.issuer, r.subject) for r in rows}

    def dispose(self) -> None:
        self.engine.dispose()

    @staticmethod
    def _owned(conn: Any, pool: str, issuer: str, subject: str) -> str | None:
        return conn.scalar(select(assignments.c.username).where(
            assignments.c.pool == pool, assignments.c.issuer == issuer, assignments.c.subject == subject))


def make_engine(url: str) -> Engine:
    """An engine for `url`; for SQLite, the parent directory is created and writers take the lock up front."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    # pysqlite opens transactions lazily (deferred): two writers that both read first then deadlock on the
    # write and one fails at once with "database is locked". BEGIN IMMEDIATE takes the write lock at the start
    # so the second writer waits (busy timeout) and then sees the first one's row.
    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
