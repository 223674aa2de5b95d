"""Audit trail: one JSON line per authorisation/mapping decision, on the logger `slurmlink.audit`.

EGI's Traceability and Logging Policy asks who did what, as whom, when and why. The service decides where the
lines go (file, journald, syslog) by configuring that logger. Only a prefix of the token's sha256 is recorded,
enough to correlate with the token validator's logs, never the token: a bearer token in a log is a credential.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Protocol

AUDIT_LOGGER = "slurmlink.audit"
TOKEN_HASH_PREFIX = 16  # 64 bits: enough to correlate, too little to be worth anything
MAX_FIELD = 512  # claims and reasons are partly caller-controlled: bound what reaches the log

log = logging.getLogger(AUDIT_LOGGER)
_HEX = re.compile(r"[0-9a-f]+")


class Caller(Protocol):
    """The parts of a validated identity (`slurmlink.identity.oidc.Identity`) that the audit line uses."""

    @property
    def issuer(self) -> str: ...

    @property
    def subject(self) -> str: ...

    @property
    def token_hash(self) -> str: ...


def record(*, action: str, allowed: bool, reason: str, client: str | None = None, issuer: str | None = None,
           subject: str | None = None, vo: str | None = None, mapped_user: str | None = None,
           job_id: str | int | None = None, token_hash: str | None = None,
           **extra: str | int | float | bool | None) -> dict[str, Any]:
    """Write one audit line and return it as a dict. `extra` adds flat fields (method, path, strategy...)."""
    entry: dict[str, Any] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "event": "decision",
        "client": client,
        "issuer": issuer,
        "subject": subject,
        "vo": vo,
        "mapped_user": mapped_user,
        "action": action,
        "job_id": None if job_id is None else str(job_id),
        "decision": "allow" if allowed else "deny",
        "reason": reason,
        "token": _token_prefix(token_hash),
    }
    for key, value in extra.items():
        if key not in entry:
            entry[key] = value
    entry = {k: _bounded(v) for k, v in entry.items()}
    # json.dumps escapes newlines and control characters, so a hostile claim cannot forge a second line.
    line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
    log.log(logging.INFO if allowed else logging.WARNING, "%s", line, extra={"audit": entry})
    return entry


def record_for(caller: Caller, **fields: Any) -> dict[str, Any]:
    """`record()` with issuer, subject and token hash taken from a validated identity."""
    return record(issuer=caller.issuer, subject=caller.subject, token_hash=caller.token_hash, **fields)


def _token_prefix(token_hash: str | None) -> str | None:
    # Only a hex digest is accepted, so a raw token passed here by mistake is dropped rather than logged.
    if not token_hash:
        return None
    digest = token_hash.lower()
    if not _HEX.fullmatch(digest) or len(digest) < TOKEN_HASH_PREFIX:
        return "(not a hash: dropped)"
    return digest[:TOKEN_HASH_PREFIX]


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD:
        return value[:MAX_FIELD] + "...(cut)"
    return value
