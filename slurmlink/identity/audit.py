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
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # one for all lines
_MARKS = ("\0time", "\0client", "\0action")  # where Prepared's lines differ


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
    entry = record_entry(action=action, allowed=allowed, reason=reason, client=client, issuer=issuer,
                         subject=subject, vo=vo, mapped_user=mapped_user, job_id=job_id, token_hash=token_hash,
                         time=_now(), **extra)
    # json.dumps escapes newlines and control characters, so a hostile claim cannot forge a second line.
    line = _ENCODER.encode(entry)
    log.log(logging.INFO if allowed else logging.WARNING, "%s", line, extra={"audit": entry})
    return entry


def record_entry(*, action: str, allowed: bool, reason: str, client: str | None = None, issuer: str | None = None,
                 subject: str | None = None, vo: str | None = None, mapped_user: str | None = None,
                 job_id: str | int | None = None, token_hash: str | None = None, time: str,
                 **extra: str | int | float | bool | None) -> dict[str, Any]:
    """The fields of an audit line, in their order, each bounded. Pure."""
    entry: dict[str, Any] = {
        "time": time,
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
    return {k: _bounded(v) for k, v in entry.items()}


class Prepared:
    """The audit line of one caller's requests with the same decision, prepared once: its fixed fields are
    bounded and encoded here, and `record(action, client)` adds only the time, the client and the action. A
    line is the same as `record_for()` would write (the proxy writes one per request of a caller seen recently)."""

    def __init__(self, caller: Caller, **fields: Any) -> None:
        self.caller, self.fields = caller, fields
        self.level = logging.INFO if fields["allowed"] else logging.WARNING
        # record()'s entry and line with a mark in place of each field that changes (JSON escapes their NUL)
        self.entry = record_entry(issuer=caller.issuer, subject=caller.subject, token_hash=caller.token_hash,
                                  time=_MARKS[0], client=_MARKS[1], action=_MARKS[2], **fields)
        self.parts = _split_at_marks(_ENCODER.encode(self.entry))

    def record(self, *, action: str, client: str | None) -> None:
        if self.parts is None:  # a claim holds a mark: written the long way
            record_for(self.caller, action=action, client=client, **self.fields)
            return
        if not log.isEnabledFor(self.level):
            return
        time, action, client = _now(), _bounded(action), _bounded(client)
        before_time, before_client, before_action, rest = self.parts
        line = "".join((before_time, '"', time, '"', before_client, _ENCODER.encode(client), before_action,
                        _ENCODER.encode(action), rest))
        entry = {**self.entry, "time": time, "client": client, "action": action}
        log.log(self.level, "%s", line, extra={"audit": entry})


def _split_at_marks(line: str) -> tuple[str, ...] | None:
    """The line's text around the marks (time, client, action: in that order in every line), or None unless
    each is there exactly once. Pure."""
    encoded = [_ENCODER.encode(mark) for mark in _MARKS]
    if any(line.count(mark) != 1 for mark in encoded):
        return None
    parts: list[str] = []
    for mark in encoded:
        before, _, line = line.partition(mark)
        parts.append(before)
    return (*parts, line)


def record_for(caller: Caller, **fields: Any) -> dict[str, Any]:
    """`record()` with issuer, subject and token hash taken from a validated identity."""
    return record(issuer=caller.issuer, subject=caller.subject, token_hash=caller.token_hash, **fields)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
